package dbrouter

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Token returns the signed read-your-writes token of ctx's scope: what a
// later request of the same user (in any region) must observe. It returns ""
// when ctx has no scope, when the scope needs nothing, or when every reader
// has already applied what it needs (so the token need not travel any more).
// Tokens are under 100 bytes, URL- and cookie-safe.
func (rt *Router) Token(ctx context.Context) string {
	t := trackerFrom(ctx)
	if t == nil {
		return ""
	}
	need := t.need.Load()
	if need.empty() || rt.passedByAll(need) {
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
	t.restored = p
	t.mu.Unlock()
	t.advance(p, false)
	rt.observeWriter(p)
	return ctx, nil
}

// passedByAll reports whether every configured reader is known to have
// applied p.
func (rt *Router) passedByAll(p *position) bool {
	for _, r := range rt.readers {
		if !r.wm.Load().covers(p) {
			return false
		}
	}
	return true
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
