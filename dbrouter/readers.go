// The reader set and its choice: the readers, their demand and usability, picking one for a read
// (waiting for one to apply a position if need be) and excluding one that failed.

package dbrouter

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// endpointDB is one endpoint with its pool.
type endpointDB struct {
	spec  endpointSpec
	db    *sql.DB
	local bool // in the router's region
}

// reader is one reader with its monitor state. The monitor goroutine
// (run) is the only writer of the watermark fields; reads of the routing
// path use atomics only.
type reader struct {
	endpointDB
	idx  int
	cand int          // index in the writer candidates (see Router.cands)
	tel  *telEndpoint // telemetry attributes

	wm          atomic.Pointer[position] // applied position as last polled; nil until the first poll
	healthy     atomic.Bool              // last poll succeeded
	removed     atomic.Bool              // gone from the Aurora topology (topology.go)
	noBeatTable atomic.Bool              // a poll found no heartbeat table (logged once; see poll)
	lagNanos    atomic.Int64             // latest lag measurement
	recentLag   atomic.Int64             // smoothed lag, for wait bounds
	freshAsOf   atomic.Int64             // UnixNano: the reader had all the writer had then
	polls       atomic.Int64             // monitor queries sent to this reader
	sample      sampler                  // position reads, for bounding what the reader served
	rtt         rttEstimate              // round trip of its position polls (see readWaitBudget)

	lastSample atomic.Pointer[parsedSample] // the last sample of a combined read (see readconn.go)

	// told counts what tells the router r's position without the watch
	// (see Router.monitor): combined reads sent with a sample or a guard,
	// and reads that wait in process. guarding counts guarded reads in
	// flight.
	told, guarding atomic.Int64

	kick chan struct{} // wakes the monitor; capacity 1

	shared sharedSched // the shared store's schedule; the monitor goroutine's own

	mu           sync.Mutex // protects the demand fields below
	pending      *position  // highest position a waiting read needs
	pendingSince time.Time  // when pending was first not covered by wm
	pendingFresh time.Time  // when the writer was at pending (freshness chase), or zero
	waiters      int        // reads waiting on this reader
	wantFresh    int        // waiting bounded-staleness reads
	// The post-write watch (see Router.monitor): the highest position a
	// write of this router returned that r is not known to have, the wait
	// queries sent for it, and r's watermark when a watch last gave up
	// (no new watch until the watermark moves).
	watch      *position
	watchTries int
	watchStuck *position
	stuck      bool
	// watchSince is when the write that started the watch returned;
	// watchMissed that a wait of the watch found r without the position.
	watchSince  time.Time
	watchMissed bool
}

// usable reports whether the reader may take reads at all.
func (r *reader) usable(maxLag time.Duration) bool {
	return r.healthy.Load() && !r.removed.Load() && time.Duration(r.lagNanos.Load()) <= maxLag
}

// demand registers a read waiting for p (or, with fresh, for a freshness
// check) and wakes the monitor. release must be called when the wait ends.
func (r *reader) demand(p *position, fresh bool, now time.Time) {
	r.told.Add(1)
	r.mu.Lock()
	r.waiters++
	if fresh {
		r.wantFresh++
	}
	if !p.empty() {
		if !r.wm.Load().covers(p) && (r.pending.empty() || r.wm.Load().covers(r.pending)) {
			r.pendingSince = now
		}
		r.pending = merge(r.pending, p)
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// watchFor sets (or raises) r's post-write watch to p, unless r is known
// to have p or the last watch of r gave up and r's watermark has not moved
// since. It reports whether a watch started (r had none): the monitor,
// which follows a watch it has seen until it ends, must then be woken.
func (r *reader) watchFor(p *position) bool {
	wm := r.wm.Load()
	if wm.covers(p) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stuck && wm == r.watchStuck {
		return false
	}
	r.stuck = false
	started := r.watch.empty()
	if started {
		r.watchTries, r.watchSince, r.watchMissed = 0, time.Now(), false
	}
	r.watch = merge(r.watch, p)
	return started
}

// watched returns r's watched position if r is not known to have it (else
// it ends the watch and returns nil), the wait queries sent for it, and
// whether reads wait for r in process (the monitor's demand serves them).
func (r *reader) watched() (p *position, tries int, waiters bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.watch.empty() && r.wm.Load().covers(r.watch) {
		r.watch = nil
	}
	return r.watch, r.watchTries, r.waiters > 0
}

// watchMiss records that a wait of r's watch for p timed out.
func (r *reader) watchMiss(p *position) {
	r.mu.Lock()
	if !r.watch.empty() && r.watch.covers(p) {
		r.watchMissed = true
	}
	r.mu.Unlock()
}

// watchBehind returns how long r is known to have lacked need: since the
// write that started r's watch, when need covers the watched position and
// a wait of the watch timed out, and r is not known to have it since (0:
// not known).
func (r *reader) watchBehind(need *position, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watch.empty() || !r.watchMissed || !need.covers(r.watch) || r.wm.Load().covers(r.watch) {
		return 0
	}
	return now.Sub(r.watchSince)
}

// watchTry counts a wait query of the watch.
func (r *reader) watchTry() {
	r.mu.Lock()
	r.watchTries++
	r.mu.Unlock()
}

// endWatch ends r's watch; with stuck, no new one starts until r's
// watermark moves.
func (r *reader) endWatch(stuck bool) {
	r.mu.Lock()
	r.watch = nil
	if stuck {
		r.watchStuck, r.stuck = r.wm.Load(), true
	}
	r.mu.Unlock()
}

func (r *reader) release(fresh bool) {
	r.mu.Lock()
	r.waiters--
	if fresh {
		r.wantFresh--
	}
	r.mu.Unlock()
}

// unmet reports whether a position is pending that r is not known to have
// (a read waits for it, or a freshness check found r behind), how long it has
// been pending, and whether a bounded-staleness read waits for a freshness
// check.
func (r *reader) unmet(now time.Time) (need bool, age time.Duration, fresh bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fresh = r.wantFresh > 0
	if !r.pending.empty() && !r.wm.Load().covers(r.pending) {
		return true, now.Sub(r.pendingSince), fresh
	}
	return fresh, 0, fresh
}

// raise records that r has applied p and returns r's new watermark. Safe
// for concurrent use (the monitor and settling reads both raise).
func (r *reader) raise(p *position) *position {
	for {
		old := r.wm.Load()
		n := merge(old, p)
		if n == old || r.wm.CompareAndSwap(old, n) {
			return n
		}
	}
}

func (r *reader) wantFreshNow() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wantFresh
}

// readerSet is the router's readers: local ones first (all[:nLocal]), then
// the others. A set is never changed once stored; OpenAurora's topology
// refresh stores a new one with the instances added to the cluster.
type readerSet struct {
	all    []*reader
	nLocal int
}

// rdrs returns the current readers, local first.
func (rt *Router) rdrs() []*reader { return rt.rset.Load().all }

// pick returns a usable reader that has applied need (which may be empty):
// a local one (round robin) or, with remote, one of another region.
func (rt *Router) pick(need *position, remote bool) *reader {
	maxLag := rt.cfg.MaxLag
	set := rt.rset.Load()
	if n := set.nLocal; n > 0 {
		start := int(rt.rr.Add(1))
		for i := range n {
			if r := set.all[(start+i)%n]; r.usable(maxLag) && rt.has(r, need) {
				return r
			}
		}
	}
	if remote {
		for _, r := range set.all[set.nLocal:] {
			if r.usable(maxLag) && rt.has(r, need) {
				return r
			}
		}
	}
	return nil
}

// isWriter reports whether r is the endpoint the router currently writes to
// (a reader that was promoted).
func (rt *Router) isWriter(r *reader) bool {
	return rt.wcur.Load().cand == r.cand && !rt.cfg.unguardedPromotedWait
}

// has reports whether r can serve a read that must observe need: r is known
// to have applied it, or r is the current writer, which has every write
// acknowledged since it became the writer (a read that no reader can serve
// goes to the writer anyway, so serving it on the writer's reader pool
// shows the same data, without a position wait).
func (rt *Router) has(r *reader, need *position) bool {
	return need.empty() || r.wm.Load().covers(need) || rt.isWriter(r)
}

// pickStale returns a reader (local first) known to be at most d behind.
func (rt *Router) pickStale(d time.Duration) *reader {
	limit := time.Now().Add(-d).UnixNano()
	for _, r := range rt.rdrs() {
		if r.usable(rt.cfg.MaxLag) && (r.freshAsOf.Load() >= limit || rt.isWriter(r)) {
			return r
		}
	}
	return nil
}

// waitAndPick is the slow path: no reader qualifies now. It registers the
// demand with the monitors, waits a bounded time for one to qualify, then
// falls back (another region's reader, then the writer).
func (rt *Router) waitAndPick(ctx context.Context, need *position, req *requirement, stale time.Duration) (target, *reader) {
	var cands []*reader
	var bound time.Duration
	for _, r := range rt.rdrs() {
		if r.usable(rt.cfg.MaxLag) {
			cands = append(cands, r)
			bound = max(bound, rt.waitBound(r, need, stale))
		}
	}
	bound = min(bound, rt.cfg.MaxWait)
	pickNow := func(remote bool) *reader {
		if stale > 0 {
			return rt.pickStale(stale)
		}
		return rt.pick(need, remote && !rt.cfg.PreferWriter)
	}
	if since, serr := rt.search.gone(); serr != nil {
		// The writer is gone, and no fallback to it. Readers may still
		// apply what they received before it went: reads wait for that
		// as long as the readers' lag said when the first read found the
		// writer gone (not longer: the lag of a reader waited on grows
		// with the wait), and after that fail at once.
		if r := pickNow(true); r != nil {
			return readerTarget(r, telReasonFreshReader), r
		}
		bound = min(bound, time.Until(rt.goneDeadline(since, bound)))
		if len(cands) == 0 || bound <= 0 {
			return rt.unavailable(serr), nil
		}
	}
	if len(cands) == 0 || bound <= 0 {
		if r := pickNow(true); r != nil {
			return readerTarget(r, telReasonFreshReader), r
		}
		return rt.fallback(ctx, telFallbackNoReader), nil
	}
	rt.stats.waits.Add(1)
	now := time.Now()
	for _, r := range cands {
		r.demand(need, stale > 0, now)
	}
	defer func() {
		for _, r := range cands {
			r.release(stale > 0)
		}
	}()
	// Local readers get a bound of their own recent lag; readers of other
	// regions are tried after it.
	var localBound time.Duration
	for _, r := range cands {
		if r.local {
			localBound = max(localBound, rt.waitBound(r, need, stale))
		}
	}
	localDeadline := now.Add(min(localBound, bound))
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		ch := rt.changed.wait()
		if r := pickNow(!time.Now().Before(localDeadline)); r != nil {
			rt.tel.recordTokenWait(ctx, time.Since(now))
			return readerTarget(r, telReasonTokenWait), r
		}
		select {
		case <-ch:
		case <-timer.C:
			rt.tel.recordTokenWait(ctx, time.Since(now))
			if r := pickNow(true); r != nil {
				return readerTarget(r, telReasonTokenWait), r
			}
			if _, serr := rt.search.gone(); serr != nil {
				return rt.unavailable(serr), nil
			}
			return rt.fallback(ctx, telFallbackTokenTimeout), nil
		case <-ctx.Done():
			return rt.fallback(ctx, telFallbackTokenTimeout), nil
		}
	}
}

// waitApplied runs the dialect's server-side wait for r's pending position.
// It returns true when r has applied it (and updates r), false when the
// dialect has no wait, the wait timed out or failed (the caller then polls).
func (rt *Router) waitApplied(ctx context.Context, r *reader) bool {
	r.mu.Lock()
	target := r.pending
	r.mu.Unlock()
	if target.empty() {
		return false
	}
	q := rt.dialect.waitQuery(target, rt.cfg.MonitorTimeout/2)
	if q == "" {
		return false
	}
	start := time.Now()
	r.polls.Add(1)
	rt.monitorQueries.Add(1)
	qctx, cancel := context.WithTimeout(ctx, rt.cfg.MonitorTimeout)
	var res sql.NullInt64
	err := r.db.QueryRowContext(qctx, q).Scan(&res)
	cancel()
	if err != nil || !res.Valid || res.Int64 != 0 {
		return false
	}
	rt.update(ctx, r, target, nil, time.Time{}, time.Time{}, start)
	return true
}

// excludeReader is the failure hook of reads: if db is a reader's pool and
// err says the reader (not the caller, not the statement) failed, the reader
// is excluded from reads until its monitor sees it answer again (checked
// within a second), and excludeReader returns true so that the caller may
// retry the read once. The caller's own cancellation never excludes a
// reader.
func (rt *Router) excludeReader(ctx context.Context, db *sql.DB, err error) bool {
	if !classifyFailure(ctx, err).serverFailure() {
		return false
	}
	for _, r := range rt.rdrs() {
		if r.db != db {
			continue
		}
		if r.healthy.Swap(false) {
			rt.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: reader excluded: read failed",
				slog.String("reader", r.spec.Name), slog.String("error", err.Error()))
			rt.changed.broadcast()
		}
		select {
		case r.kick <- struct{}{}:
		default:
		}
		return true
	}
	return false
}
