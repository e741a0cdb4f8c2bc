package dbrouter

import (
	"context"
	"slices"
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
	restored *position  // position of the token(s) the scope started with
	// touched are the sources that served reads of this scope whose
	// served position is not yet in need (see [Router.settle]); last is
	// the reader of the scope's latest read, which its next read prefers.
	touched []servedBy
	last    servedBy
}

// servedBy is a source that served a read of a scope: a reader of rt, or
// rt's writer when r is nil.
type servedBy struct {
	rt *Router
	r  *reader
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

// served records that a read of the scope was served by s. What s served
// is not known yet (a reader may be ahead of the position its monitor last
// saw); [Router.settle] bounds it from above before the scope's position
// leaves the scope or its next read goes to another source.
func (t *tracker) served(s servedBy) {
	t.mu.Lock()
	if !slices.Contains(t.touched, s) {
		t.touched = append(t.touched, s)
	}
	t.last = s
	t.mu.Unlock()
}

// sticky returns the reader of the scope's latest read if its later reads
// may stay on it without settling (rt's reader, still touched).
func (t *tracker) sticky(rt *Router) *reader {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last.rt != rt || t.last.r == nil || !slices.Contains(t.touched, t.last) {
		return nil
	}
	return t.last.r
}

// touchedOther reports whether reads of the scope were served by another
// source than rt's reader r, whose served position is not in need yet.
func (t *tracker) touchedOther(rt *Router, r *reader) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.touched {
		if s.rt != rt || s.r != r {
			return true
		}
	}
	return false
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
