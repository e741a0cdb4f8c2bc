// The writer role: the current writer and its pool, the pools per candidate, and what a failed
// write does (failover to the writer the search finds).

package dbrouter

import (
	"context"
	"database/sql"
)

// writerTarget is the writer-role pool of one writer candidate (the
// configured writer, or a reader that was promoted). The router's current
// writer is one of them; a failover switches to another.
type writerTarget struct {
	endpointDB
	cand int          // index in the writer search's candidates
	tel  *telEndpoint // telemetry attributes
}

// curWriter returns the current writer target.
func (rt *Router) curWriter() *writerTarget { return rt.wcur.Load() }

// wdb returns the current writer's pool.
func (rt *Router) wdb() *sql.DB { return rt.wcur.Load().db }

// writerFor returns the writer-role pool of candidate i, opening it on first
// use (after a failover to a reader that was promoted).
func (rt *Router) writerFor(i int) *writerTarget {
	rt.wmu.Lock()
	defer rt.wmu.Unlock()
	if w := rt.wpools[i]; w != nil {
		return w
	}
	spec := rt.cands[i]
	w := &writerTarget{
		endpointDB: endpointDB{spec: spec, local: true,
			db: sql.OpenDB(&writeConnector{inner: failureConnector{spec.connector, &rt.stats.connsOpened, rt.candRTT[i]}, rt: rt, name: spec.Name,
				comb: rt.combining(spec), schema: specSchema(spec)})},
		cand: i,
		tel:  rt.candTel[i],
	}
	rt.cfg.WriterPool.apply(w.db)
	rt.wpools[i] = w
	return w
}

// writerChanged is the writer search's onChange hook: it runs in the
// search's goroutine when a search found a writer other than the current one.
func (rt *Router) writerChanged(_, to int) {
	w := rt.writerFor(to)
	rt.wcur.Store(w)
	for _, r := range rt.rdrs() {
		if r.cand == to {
			// Now the writer: not behind anything (see Router.has).
			r.lagNanos.Store(0)
			r.recentLag.Store(0)
		}
	}
	rt.stats.failovers.Add(1)
	rt.tel.recordFailover(rt.ctx, w.tel)
	rt.changed.broadcast()
}

// writerFailed handles err of a statement that t's writer returned (a write,
// or a read the writer served). With retry it returns the writer to try once
// more: the statement provably did not run (no connection, or rejected as
// read-only) and a writer search found a writer. Otherwise it returns the
// error for the caller: unchanged for the caller's own cancellation and for
// ordinary SQL errors; matching ErrOutcomeUnknown for a write whose
// connection broke after it was sent; the search's error (ErrNoWriter) when
// no writer could be found. A read whose connection broke is retried once
// when the search found another writer (after a failover), and gets the
// search's error when it found none.
func (rt *Router) writerFailed(ctx context.Context, t target, write bool, err error) (next target, retry bool, _ error) {
	k := classifyFailure(ctx, err)
	switch k {
	case failReadOnly, failNotSent:
		i, serr := rt.search.find(ctx)
		if serr != nil {
			if ctx.Err() != nil {
				return t, false, unwrapConnectError(err)
			}
			return t, false, serr
		}
		w := rt.writerFor(i)
		if w == t.w && k == failReadOnly {
			// The same endpoint answers as writer again (a cluster
			// endpoint whose DNS name moved): drop its idle connections,
			// which still talk to the demoted server.
			purgeIdle(w.db, rt.cfg.WriterPool)
		}
		return target{db: w.db, ep: w.tel, w: w, route: telRouteWriter, reason: t.reason}, true, nil
	case failLost, failServerGone:
		if write {
			rt.search.kick()
			return t, false, newOutcomeUnknown(t.w.spec.Name, false, err)
		}
		// A read lost with its connection may run again, but only on
		// another writer (a failover): on the same server it may be the
		// read itself that broke it (a timeout), and it would run twice.
		if i, serr := rt.search.find(ctx); serr == nil {
			if w := rt.writerFor(i); w != t.w {
				return target{db: w.db, ep: w.tel, w: w, route: telRouteWriter, reason: t.reason}, true, nil
			}
		} else if ctx.Err() == nil {
			return t, false, serr
		}
	case failOverloaded:
		return t, false, &overloadedError{endpoint: t.w.spec.Name, err: unwrapConnectError(err)}
	}
	return t, false, unwrapConnectError(err)
}

// writerFailedFinal is writerFailed for a statement that has used its retry:
// it only shapes the error.
func (rt *Router) writerFailedFinal(ctx context.Context, t target, write bool, err error) (target, bool, error) {
	switch k := classifyFailure(ctx, err); k {
	case failLost, failServerGone:
		rt.search.kick()
		if write {
			return t, false, newOutcomeUnknown(t.w.spec.Name, false, err)
		}
	case failReadOnly, failNotSent:
		rt.search.kick()
	case failOverloaded:
		return t, false, &overloadedError{endpoint: t.w.spec.Name, err: unwrapConnectError(err)}
	}
	return t, false, unwrapConnectError(err)
}

// purgeIdle closes db's idle connections and restores its idle limit.
func purgeIdle(db *sql.DB, p PoolConfig) {
	db.SetMaxIdleConns(-1)
	db.SetMaxIdleConns(p.withDefaults().MaxIdleConns)
}
