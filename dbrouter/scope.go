// The read-your-writes scope: the tracker a context carries, the positions a scope requires, and
// the Token/WithToken round trip, including the cache package's ReadScope contract.

package dbrouter

import (
	"context"
	"fmt"
	"log/slog"
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

// lastServed records that the latest read of the scope went to s, whose
// served position the read's own sample brings into the scope (so s is not
// touched: see tracker.served).
func (t *tracker) lastServed(s servedBy) {
	if t == nil {
		return
	}
	t.mu.Lock()
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

// requirement is set by [Router.RequirePosition].
type requirement struct {
	pos *position // nil: the position could not be parsed
	ok  atomic.Bool
}

type requireKey struct{}

// Token returns the signed read-your-writes token of ctx's scope: what a
// later request of the same user (in any region) must observe: the scope's
// writes, the token(s) it started from, and everything its reads showed. It
// returns "" when ctx has no scope or the scope requires nothing. Tokens are
// under 100 bytes, URL- and cookie-safe.
//
// The token is returned as long as the scope requires anything, even when
// every reader this router monitors has applied it: readers this router does
// not monitor (another region's, when each region's router knows only its
// own) may not have. It ends with [Config.TokenMaxAge].
//
// Before encoding, Token bounds what the scope's reads were served at (a
// reader may have been ahead of the position its monitor last saw): for
// each source that served reads of the scope since the last bound, it takes
// a position of that source read after Token was called, one local query
// shared by the concurrent requests that need one (see [Router.settle]).
// Reads still running when Token is called are not covered.
func (rt *Router) Token(ctx context.Context) string {
	t := trackerFrom(ctx)
	if t == nil {
		return ""
	}
	rt.settle(ctx, t)
	need := t.need.Load()
	if need.empty() {
		return ""
	}
	s, err := rt.tokens.encode(need, time.Now())
	if err != nil {
		// More streams than a token holds (many GTID domains or source
		// UUIDs): the token cannot say it, so the scope's reads fall
		// back to the writer rather than risk a stale read elsewhere.
		rt.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: position does not fit in a token",
			slog.Int("streams", len(need.parts)))
		return ""
	}
	return s
}

// settle makes what the scope's reads were served at a requirement of the
// scope (monotonic reads). A reader's watermark is only a lower bound of
// what it served, so for each source that served reads of t since the last
// settle, settle reads a position of that source taken after settle
// started: positions only grow, so that source had then applied at least
// what it served. A position read by the monitor, or for another request,
// after that time is used instead of a new query. A reader that does not
// answer is bounded by the writer's position; when neither answers, the
// scope's later reads go to the writer.
func (rt *Router) settle(ctx context.Context, t *tracker) {
	t.mu.Lock()
	list := t.touched
	t.touched = nil
	t.mu.Unlock()
	if len(list) == 0 {
		return
	}
	after := time.Now()
	for _, s := range list {
		p, err := s.rt.upperBound(ctx, s.r, after)
		if err != nil && s.r != nil {
			p, err = s.rt.upperBound(ctx, nil, after)
		}
		if err != nil {
			t.writerOnly.Store(true)
			continue
		}
		t.advance(p, false)
	}
}

// upperBound returns a position of r (the writer when r is nil) read by a
// query that started at or after after. With the heartbeat dialect the
// source may show writes made after the beat it shows, so the bound is the
// next beat.
func (rt *Router) upperBound(ctx context.Context, r *reader, after time.Time) (*position, error) {
	var p *position
	var err error
	if r == nil {
		p, err = rt.wsample.after(ctx, after, func(ctx context.Context) (*position, error) {
			return rt.queryPosition(ctx, rt.wdb(), rt.dialect.writerQuery(), rt.dialect.parseWriter)
		})
	} else {
		p, err = r.sample.after(ctx, after, func(ctx context.Context) (*position, error) {
			r.polls.Add(1)
			rt.monitorQueries.Add(1)
			p, err := rt.queryPosition(ctx, r.db, rt.dialect.readerQuery(), rt.dialect.parseReader)
			if err == nil && !p.empty() {
				r.raise(p)
				rt.changed.broadcast()
			}
			return p, err
		})
	}
	if err != nil {
		return nil, err
	}
	if _, ok := rt.dialect.(heartbeatDialect); ok && !p.empty() {
		p = newPosition([]posPart{{key: p.parts[0].key, seq: p.parts[0].seq + 1}})
	}
	return p, nil
}

// WithToken returns a context whose read-your-writes scope starts from token
// (a value of [Router.Token], possibly made by another process or region),
// adding a scope to ctx if it has none. An empty token only adds the scope.
// A corrupt, forged or expired token is ignored and counted; the error then
// matches [ErrInvalidToken], and the returned context is still usable.
func (rt *Router) WithToken(ctx context.Context, token string) (context.Context, error) {
	t := trackerFrom(ctx)
	if t == nil {
		t = &tracker{}
		ctx = context.WithValue(ctx, trackerKey{}, t)
	}
	if token == "" {
		return ctx, nil
	}
	p, err := rt.tokens.decode(token, time.Now())
	if err != nil {
		rt.stats.tokensRejected.Add(1)
		return ctx, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if err := rt.checkDialect(p); err != nil {
		// Signed with our key, but by a fleet of another dialect: what
		// the user must see cannot be checked on a reader.
		rt.stats.tokensRejected.Add(1)
		rt.stats.positionsRejected.Add(1)
		t.writerOnly.Store(true)
		return ctx, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	t.mu.Lock()
	t.restored = merge(t.restored, p)
	t.mu.Unlock()
	t.advance(p, false)
	return ctx, nil
}

// WrittenPosition returns the writer position of the writes made through
// ctx's read-your-writes scope (opaque, non-empty), or "" if there were none
// or ctx has no scope. It implements the cache package's Consistency
// contract.
func (rt *Router) WrittenPosition(ctx context.Context) string {
	t := trackerFrom(ctx)
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.written.String()
}

// RequirePosition returns a context whose reads observe pos (a value of
// [Router.WrittenPosition] or [Router.MergePositions]) or later, and a
// function that, called after those reads, reports whether every read made
// through the returned context was served by a source that had applied pos
// (the writer always has). A pos that does not parse for the router's
// dialect sends the reads to the writer and is counted in
// [Stats.PositionsRejected]. An empty pos requires nothing.
func (rt *Router) RequirePosition(ctx context.Context, pos string) (context.Context, func() bool) {
	req := &requirement{}
	if p, err := rt.parsePosition(pos); err == nil {
		req.pos = p
	}
	req.ok.Store(true)
	return context.WithValue(ctx, requireKey{}, req), req.ok.Load
}

// MergePositions returns the least position at or after both a and b; ""
// counts as nothing. An argument that does not parse for the router's
// dialect counts as nothing too (and in [Stats.PositionsRejected]).
func (rt *Router) MergePositions(a, b string) string {
	pa, err := rt.parsePosition(a)
	if err != nil {
		pa = nil
	}
	pb, err := rt.parsePosition(b)
	if err != nil {
		pb = nil
	}
	return merge(pa, pb).String()
}

// RequiredPosition returns the writer position that data served to ctx must
// reflect: the writes of ctx's read-your-writes scope, including those of
// the token(s) it was restored from, or "" if ctx has no scope or requires
// nothing. The positions the scope's reads were served at are left out, so
// that a cache hit is refused only for what the user wrote. With
// [Router.CoversPosition] it implements the cache package's ReadScope.
func (rt *Router) RequiredPosition(ctx context.Context) string {
	t := trackerFrom(ctx)
	if t == nil {
		return ""
	}
	t.mu.Lock()
	p := merge(t.written, t.restored)
	t.mu.Unlock()
	if p.empty() {
		return ""
	}
	return p.String()
}

// CoversPosition reports whether data that reflects position a also
// reflects everything position b describes (a and b are values of
// [Router.WrittenPosition] or [Router.RequiredPosition]). Every a covers
// b = ""; a position that does not parse for the router's dialect covers
// nothing and is covered by nothing.
func (rt *Router) CoversPosition(a, b string) bool {
	if b == "" {
		return true
	}
	pb, err := rt.parsePosition(b)
	if err != nil {
		return false
	}
	pa, err := rt.parsePosition(a)
	if err != nil {
		return false
	}
	return pa.covers(pb)
}
