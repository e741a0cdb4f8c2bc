// The route and its reasons: where a statement goes (writer, a local reader, a fallback) and why,
// the routing options a context carries, and the route/reason/fallback kinds telemetry records.

package dbrouter

import (
	"context"
	"database/sql"
	"time"
)

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

// telRoute is the role that served a statement.
type telRoute uint8

const (
	telRouteWriter telRoute = iota
	telRouteReader
	telRouteCount
)

func (r telRoute) String() string {
	if r == telRouteReader {
		return "reader"
	}
	return "writer"
}

// telReason says why a statement went to the endpoint that served it.
type telReason uint8

const (
	// telReasonWrite: the statement is not provably read-only (or is in a
	// read-write transaction), so it needs the writer.
	telReasonWrite telReason = iota
	// telReasonFreshReader: a reader known to be fresh enough served it at once.
	telReasonFreshReader
	// telReasonTokenWait: the read waited for a reader to apply its token.
	telReasonTokenWait
	// telReasonStaleness: a reader within the read's staleness budget served it.
	telReasonStaleness
	// telReasonFallback: no reader was usable (all behind, dead or excluded,
	// or the token wait ran out): the writer served a read.
	telReasonFallback
	// telReasonForced: the caller forced the writer through the context.
	telReasonForced
	// telReasonRetry: a read failed on a reader before returning rows and
	// was retried once on another fresh endpoint.
	telReasonRetry
	telReasonCount
)

var telReasonNames = [telReasonCount]string{
	telReasonWrite:       "write",
	telReasonFreshReader: "fresh_reader",
	telReasonTokenWait:   "token_wait",
	telReasonStaleness:   "staleness_budget",
	telReasonFallback:    "writer_fallback",
	telReasonForced:      "forced_writer",
	telReasonRetry:       "retry",
}

func (r telReason) String() string {
	if r < telReasonCount {
		return telReasonNames[r]
	}
	return "unknown"
}

// telFallback says why a read fell back to the writer.
type telFallback uint8

const (
	// telFallbackNoReader: no reader was usable (dead, stalled, excluded or
	// too far behind).
	telFallbackNoReader telFallback = iota
	// telFallbackTokenTimeout: no reader applied the read's token within the
	// wait.
	telFallbackTokenTimeout
	// telFallbackReaderFailed: the read failed on every fresh reader.
	telFallbackReaderFailed
	telFallbackCount
)

var telFallbackNames = [telFallbackCount]string{
	telFallbackNoReader:     "no_usable_reader",
	telFallbackTokenTimeout: "token_wait_timeout",
	telFallbackReaderFailed: "reader_failed",
}

// target is where routing sends one statement: the pool, its telemetry
// attributes, the role, and why.
type target struct {
	err    error // not nil: the statement cannot run anywhere (see Router.unavailable)
	db     *sql.DB
	ep     *telEndpoint
	w      *writerTarget // the writer target, for the writer role
	route  telRoute
	reason telReason
	dir    *readDirective // a reader's read in one round trip (see readconn.go), or nil
}

// runCtx returns the context a statement on t runs with: ctx, carrying t's
// read directive if any.
func (t target) runCtx(ctx context.Context) context.Context {
	if t.dir == nil {
		return ctx
	}
	// The directive is the statement's context (one allocation for both).
	t.dir.Context = ctx
	return t.dir
}

// readerTarget returns reader r as the target of a read.
func readerTarget(r *reader, reason telReason) target {
	return target{db: r.db, ep: r.tel, route: telRouteReader, reason: reason}
}

// route returns where query (or, with readOnlyTx, a read-only transaction)
// runs. It never fails: when it cannot wait any longer it returns the
// writer, and the pool reports ctx's error.
//
// A read of a read-your-writes scope is recorded in the scope (see
// [tracker.served]). When it goes to another source than the scope's
// earlier reads, what those served is first bounded and required
// ([Router.settle]), so that this read cannot show older data.
func (rt *Router) route(ctx context.Context, query string, readOnlyTx bool) target {
	if !readOnlyTx && !rt.classes.readOnly(query) {
		rt.stats.writes.Add(1)
		return rt.toWriter(telReasonWrite)
	}
	o, _ := ctx.Value(routeKey{}).(routeOpts)
	t := trackerFrom(ctx)
	if o.writer || len(rt.rdrs()) == 0 {
		rt.stats.readsForced.Add(1)
		if t != nil {
			t.served(servedBy{rt: rt})
		}
		return rt.toWriter(telReasonForced)
	}
	req, _ := ctx.Value(requireKey{}).(*requirement)
	tg, r := rt.routeRead(ctx, o, t, req, readOnlyTx)
	if o.maxStaleness > 0 || t == nil || tg.err != nil {
		// Bounded-staleness reads opt out of the scope's guarantees.
		rt.countRead(r)
		return tg
	}
	if r != nil && t.touchedOther(rt, r) {
		rt.settle(ctx, t)
		if t.writerOnly.Load() || (!rt.has(r, t.need.Load()) && tg.dir == nil) {
			// r may be behind what the scope's reads showed (or what
			// they showed could not be bounded): route again.
			if tg, r = rt.routeRead(ctx, o, t, req, readOnlyTx); tg.err != nil {
				return tg
			}
		} else if tg.dir != nil {
			// The guard must cover what settling added.
			tg.dir.need = merge(tg.dir.need, t.need.Load())
		}
	}
	rt.countRead(r)
	if r != nil && !readOnlyTx && rt.combines(r) {
		// The read's text also reads what r served (see readconn.go).
		if tg.dir == nil {
			tg.dir = &readDirective{rt: rt, r: r}
		}
		tg.dir.t = t
		t.lastServed(servedBy{rt: rt, r: r})
		return tg
	}
	t.served(servedBy{rt: rt, r: r})
	return tg
}

// routeCall returns where the call runs without write forwarding.
func (rt *Router) routeCall(ctx context.Context, c stmtCall) target {
	switch c.op {
	case opExec:
		rt.stats.writes.Add(1)
		return rt.toWriter(telReasonWrite)
	case opBegin:
		if !c.ro {
			rt.stats.writes.Add(1)
			return rt.toWriter(telReasonWrite)
		}
		return rt.route(ctx, "", true)
	}
	return rt.route(ctx, c.query, c.ro)
}

// countRead counts a read served by r (nil: the writer, counted by
// [Router.fallback]).
func (rt *Router) countRead(r *reader) {
	switch {
	case r == nil:
	case r.local:
		rt.stats.readsReader.Add(1)
	default:
		rt.stats.readsRemote.Add(1)
	}
}

// routeRead chooses the source of a read: a reader (returned too), or the
// writer (nil reader).
//
// A read (not a read-only transaction) that needs a position no usable
// local reader is known to have goes to a local reader with the guard in
// its text (see readconn.go) rather than waiting here, when the reader's
// pool combines statements.
func (rt *Router) routeRead(ctx context.Context, o routeOpts, t *tracker, req *requirement, readOnlyTx bool) (target, *reader) {
	var need *position
	if t != nil {
		need = t.need.Load()
	}
	if req != nil {
		if req.pos == nil {
			return rt.writerOrUnavailable(ctx), nil
		}
		need = merge(need, req.pos)
	}
	if o.maxStaleness > 0 {
		if r := rt.pickStale(o.maxStaleness); r != nil {
			if req != nil && !rt.has(r, req.pos) {
				req.ok.Store(false)
			}
			return readerTarget(r, telReasonStaleness), r
		}
	} else if t == nil || !t.writerOnly.Load() {
		// The reader of the scope's previous read needs no bound of what
		// it served; a remote one is kept only while no local one
		// qualifies.
		if r := t.sticky(rt); r != nil && r.local && r.usable(rt.cfg.MaxLag) && rt.has(r, need) {
			return readerTarget(r, telReasonFreshReader), r
		}
		if r := rt.pick(need, need.empty() && !rt.cfg.PreferWriter); r != nil {
			return readerTarget(r, telReasonFreshReader), r
		}
		if need.empty() {
			// Eventual read and no usable reader: nothing to wait for.
			return rt.fallback(ctx, telFallbackNoReader), nil
		}
		if !readOnlyTx {
			if tg, r := rt.guardedRead(t, need); r != nil {
				return tg, r
			}
		}
	} else {
		return rt.writerOrUnavailable(ctx), nil
	}
	return rt.waitAndPick(ctx, need, req, o.maxStaleness)
}

// guardedRead returns a local reader target for a read that needs need
// with the guard in the same round trip, or a target with a nil db when
// the read should take the in-process path instead: no combining local
// reader is usable, the writer is gone (no fallback after a failed
// guard), or the wait budget is zero.
func (rt *Router) guardedRead(t *tracker, need *position) (target, *reader) {
	if _, serr := rt.search.gone(); serr != nil || rt.comb == nil {
		return target{}, nil
	}
	r := t.sticky(rt)
	if r == nil || !r.local || !r.usable(rt.cfg.MaxLag) || !rt.combines(r) {
		r = nil
		if set := rt.rset.Load(); set.nLocal > 0 {
			n := set.nLocal
			start := int(rt.rr.Add(1))
			for i := range n {
				if c := set.all[(start+i)%n]; c.usable(rt.cfg.MaxLag) && rt.combines(c) {
					r = c
					break
				}
			}
		}
	}
	if r == nil {
		return target{}, nil
	}
	wait := rt.readWaitBudget(r, need)
	if wait <= 0 {
		return target{}, nil
	}
	tg := readerTarget(r, telReasonTokenWait)
	tg.dir = &readDirective{rt: rt, r: r, need: need, wait: wait}
	return tg, r
}

// combines reports whether reads on r can carry their guard and sample in
// the same round trip.
func (rt *Router) combines(r *reader) bool { return rt.comb != nil && r.spec.combine }

// afterGuard returns where a read whose guard failed on d.r goes: a reader
// known to have applied d.need; else, once: with a writer at most two polls
// away, d.r again with the guard waiting the rest of MaxWait; or another
// region's reader with the guard in its text when its round trip is
// shorter than the writer's and the wait-or-go policy gives it a budget
// (its read then costs at most about the writer's round trip); else the
// writer.
func (rt *Router) afterGuard(ctx context.Context, d *readDirective) target {
	rt.stats.guardTimeouts.Add(1)
	// d.r did not serve the read after all.
	if d.r.local {
		rt.stats.readsReader.Add(-1)
	} else {
		rt.stats.readsRemote.Add(-1)
	}
	if r := rt.pick(d.need, !rt.cfg.PreferWriter); r != nil && r != d.r {
		tg := readerTarget(r, telReasonRetry)
		if !r.local {
			rt.stats.guardRetriesRemote.Add(1)
		}
		if d.t != nil && rt.combines(r) {
			tg.dir = &readDirective{rt: rt, r: r, t: d.t}
			d.t.lastServed(servedBy{rt: rt, r: r})
		} else if d.t != nil {
			d.t.served(servedBy{rt: rt, r: r})
		}
		rt.countRead(r)
		return tg
	}
	if _, serr := rt.search.gone(); serr != nil {
		return rt.unavailable(serr)
	}
	if !d.retry && !rt.cfg.PreferWriter && rt.comb != nil {
		wrtt := rt.writerRTT.get()
		if rest := rt.cfg.MaxWait - d.wait; d.r.local && wrtt <= 2*rt.cfg.PollInterval && rest > 0 && d.r.usable(rt.cfg.MaxLag) {
			// A writer this near saves no latency worth the writer's
			// load (the wait-or-go policy: the readers come first): the
			// read waits for d.r, in its text again, for the rest of
			// MaxWait, as an in-process wait would have.
			tg := readerTarget(d.r, telReasonRetry)
			tg.dir = &readDirective{rt: rt, r: d.r, need: d.need, wait: rest, t: d.t, retry: true}
			if d.t != nil {
				d.t.lastServed(servedBy{rt: rt, r: d.r})
			}
			rt.countRead(d.r)
			return tg
		}
		set := rt.rset.Load()
		for _, r := range set.all[set.nLocal:] {
			rrtt := r.rtt.get()
			if r == d.r || rrtt <= 0 || rrtt >= wrtt || !rt.combines(r) {
				continue
			}
			wait := rt.readWaitBudget(r, d.need)
			if wait <= 0 {
				continue
			}
			rt.stats.guardRetriesRemote.Add(1)
			tg := readerTarget(r, telReasonRetry)
			tg.dir = &readDirective{rt: rt, r: r, need: d.need, wait: wait, t: d.t, retry: true}
			if d.t != nil {
				d.t.lastServed(servedBy{rt: rt, r: r})
			}
			rt.countRead(r)
			return tg
		}
	}
	if d.t != nil {
		d.t.served(servedBy{rt: rt})
	}
	return rt.fallback(ctx, telFallbackTokenTimeout)
}

// goneDeadline returns until when reads wait for readers after the writer
// was found gone at since: since plus bound as the first read that asked
// for this since computed it.
func (rt *Router) goneDeadline(since time.Time, bound time.Duration) time.Time {
	rt.goneMu.Lock()
	defer rt.goneMu.Unlock()
	if !rt.goneSince.Equal(since) {
		rt.goneSince, rt.goneUntil = since, since.Add(bound)
	}
	return rt.goneUntil
}

// writerOrUnavailable returns the writer as the fallback of a read that only
// the writer can serve, or, while the writer is known gone, the target that
// fails the read with ErrPositionUnavailable.
func (rt *Router) writerOrUnavailable(ctx context.Context) target {
	if _, serr := rt.search.gone(); serr != nil {
		return rt.unavailable(serr)
	}
	return rt.fallback(ctx, telFallbackNoReader)
}

// toWriter returns the current writer as the target of a statement.
func (rt *Router) toWriter(reason telReason) target {
	w := rt.wcur.Load()
	return target{db: w.db, ep: w.tel, w: w, route: telRouteWriter, reason: reason}
}

// fallback counts a read sent to the writer because no reader could serve
// it, and returns the writer.
func (rt *Router) fallback(ctx context.Context, why telFallback) target {
	rt.stats.readsWriter.Add(1)
	rt.tel.recordFallback(ctx, why)
	return rt.toWriter(telReasonFallback)
}

// unavailable returns the target of a read that no usable reader can serve
// while the writer is known gone (serr is the last writer search's error):
// it fails with an error matching ErrPositionUnavailable without being
// sent, and kicks a writer search so that a promoted server is found even
// when no write asks for one.
func (rt *Router) unavailable(serr error) target {
	rt.search.kick()
	// The span names the writer (the read's last resort) with the error;
	// no writer fallback is counted: nothing is sent.
	t := rt.toWriter(telReasonFallback)
	t.err = &positionUnavailableError{search: serr}
	return t
}
