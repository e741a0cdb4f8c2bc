package dbrouter

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

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
