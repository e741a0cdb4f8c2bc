package dbrouter

import (
	"context"
	"database/sql"
	"net"
	"time"

	"github.com/go-sql-driver/mysql"
)

// writerTarget is the writer-role pool of one writer candidate (the
// configured writer, or a reader that was promoted). The router's current
// writer is one of them; a failover switches to another.
type writerTarget struct {
	endpointDB
	cand int          // index in the writer search's candidates
	tel  *telEndpoint // telemetry attributes
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

// curWriter returns the current writer target.
func (rt *Router) curWriter() *writerTarget { return rt.wcur.Load() }

// wdb returns the current writer's pool.
func (rt *Router) wdb() *sql.DB { return rt.wcur.Load().db }

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
			db: sql.OpenDB(&writeConnector{inner: failureConnector{spec.connector, &rt.stats.connsOpened, &rt.candRTT[i]}, rt: rt, name: spec.Name,
				comb: rt.combining(spec)})},
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

// writeFailed handles err of a statement that t's writer returned (a write,
// or a read the writer served). With retry it returns the writer to try once
// more: the statement provably did not run (no connection, or rejected as
// read-only) and a writer search found a writer. Otherwise it returns the
// error for the caller: unchanged for the caller's own cancellation and for
// ordinary SQL errors; matching ErrOutcomeUnknown for a write whose
// connection broke after it was sent; the search's error (ErrNoWriter) when
// no writer could be found. A read whose connection broke is retried once
// when the search found another writer (after a failover), and gets the
// search's error when it found none.
func (rt *Router) writeFailed(ctx context.Context, t target, write bool, err error) (next target, retry bool, _ error) {
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

// writeFailedFinal is writeFailed for a statement that has used its retry:
// it only shapes the error.
func (rt *Router) writeFailedFinal(ctx context.Context, t target, write bool, err error) (target, bool, error) {
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

// readerTarget returns reader r as the target of a read.
func readerTarget(r *reader, reason telReason) target {
	return target{db: r.db, ep: r.tel, route: telRouteReader, reason: reason}
}

// endpointTel builds the telemetry attributes of an endpoint from its DSN
// (address and database; for a Connector endpoint only its name).
func endpointTel(dbSystem string, spec endpointSpec) *telEndpoint {
	addr, database := spec.Name, ""
	if spec.DSN != "" {
		if mc, err := mysql.ParseDSN(spec.DSN); err == nil {
			addr, database = mc.Addr, mc.DBName
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = spec.Name
			}
		}
	}
	return newTelEndpoint(dbSystem, spec.Name, spec.Region, addr, database)
}

// telReaders feeds the reader gauges: each reader's lag and the age of the
// position it is known to have applied (now minus the last time it had all
// the writer had).
func (rt *Router) telReaders(yield func(telReaderStat) bool) {
	now := time.Now()
	for _, r := range rt.rdrs() {
		st := telReaderStat{ep: r.tel, known: r.healthy.Load() && r.wm.Load() != nil}
		st.lag = time.Duration(r.lagNanos.Load())
		if f := r.freshAsOf.Load(); f > 0 {
			st.positionAge = now.Sub(time.Unix(0, f))
		} else {
			st.positionAge = now.Sub(rt.opened)
		}
		if !yield(st) {
			return
		}
	}
}

// telPools feeds the connection metrics from each pool's sql.DBStats.
func (rt *Router) telPools(yield func(telPoolStat) bool) {
	rt.wmu.Lock()
	ws := make([]*writerTarget, 0, len(rt.wpools))
	for _, w := range rt.wpools {
		if w != nil {
			ws = append(ws, w)
		}
	}
	rt.wmu.Unlock()
	for _, w := range ws {
		if !yield(telPoolStat{ep: w.tel, route: telRouteWriter, stats: w.db.Stats()}) {
			return
		}
	}
	for _, r := range rt.rdrs() {
		if !yield(telPoolStat{ep: r.tel, route: telRouteReader, stats: r.db.Stats()}) {
			return
		}
	}
}
