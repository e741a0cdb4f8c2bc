package dbrouter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// tracker is the mutable read-your-writes state of one request (or any
// scope made by [NewContext]): what the request's user must see and what
// the request wrote. Safe for concurrent use.
type tracker struct {
	// need is the least position a reader must have applied to serve this
	// scope's reads: the restored token, this scope's writes and the
	// positions its reads were served at (monotonic reads).
	need atomic.Pointer[position]
	// writerOnly is set when a write's position could not be read: the
	// scope's later reads go to the writer.
	writerOnly atomic.Bool

	mu       sync.Mutex // protects the fields below and updates of need
	written  *position  // writes made through this scope
	restored *position  // position of the token the scope started with
}

type trackerKey struct{}

// NewContext returns a context carrying a fresh read-your-writes scope:
// writes made through it (or contexts derived from it) advance the scope's
// position, and its reads observe them. [Router.Middleware] makes one per
// request; use NewContext for work outside HTTP (jobs, consumers). Without
// a scope, writes are still routed correctly but later reads do not wait for
// them.
func NewContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, trackerKey{}, &tracker{})
}

func trackerFrom(ctx context.Context) *tracker {
	t, _ := ctx.Value(trackerKey{}).(*tracker)
	return t
}

// advance merges p into what the scope must see; written also into its
// writes.
func (t *tracker) advance(p *position, written bool) {
	if p.empty() {
		return
	}
	t.mu.Lock()
	if written {
		t.written = merge(t.written, p)
	}
	t.need.Store(merge(t.need.Load(), p))
	t.mu.Unlock()
}

// served records that a read was served by a reader at p: later reads must
// not go back before p. p covers need (the reader was chosen for that), so
// this does not allocate.
func (t *tracker) served(p *position) {
	if p.empty() {
		return
	}
	for {
		cur := t.need.Load()
		if cur.covers(p) || !p.covers(cur) {
			return
		}
		if t.need.CompareAndSwap(cur, p) {
			return
		}
	}
}

// routeOpts are per-call routing overrides.
type routeOpts struct {
	writer       bool
	maxStaleness time.Duration // > 0: bounded-staleness read
}

type routeKey struct{}

// WithWriter returns a context whose statements all go to the writer
// (strong consistency: the read sees every committed write).
func WithWriter(ctx context.Context) context.Context {
	o, _ := ctx.Value(routeKey{}).(routeOpts)
	o.writer = true
	return context.WithValue(ctx, routeKey{}, o)
}

// WithMaxStaleness returns a context whose reads may be served by any
// reader known to be at most d behind the writer, ignoring the scope's
// read-your-writes position (for feeds, counts and other reads that need
// no freshness). A d <= 0 removes the allowance.
func WithMaxStaleness(ctx context.Context, d time.Duration) context.Context {
	o, _ := ctx.Value(routeKey{}).(routeOpts)
	o.maxStaleness = max(d, 0)
	return context.WithValue(ctx, routeKey{}, o)
}

// requirement is set by [Router.RequirePosition].
type requirement struct {
	pos *position // nil: the position could not be parsed
	ok  atomic.Bool
}

type requireKey struct{}
