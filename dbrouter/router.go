package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Router sends each statement to the writer or to a reader: writes and
// anything not provably read-only to the writer, reads to a reader of the
// local region that is known to have applied what the caller must see. Its
// methods have the signatures of [*sql.DB]'s, so it can replace one.
//
// A Router is safe for concurrent use by multiple goroutines. It owns one
// [*sql.DB] pool per endpoint and one monitor goroutine per reader;
// [Router.Close] stops the monitors and closes the pools.
type Router struct {
	cfg     Config
	dialect dialect
	tokens  tokenCodec

	wcur    atomic.Pointer[writerTarget] // the current writer
	wmu     sync.Mutex                   // protects wpools
	wpools  []*writerTarget              // writer-role pools by candidate, opened on first use
	cands   []endpointSpec               // writer candidates: the writer, then the readers in Config order
	candTel []*telEndpoint               // their telemetry attributes
	candRTT []rttStat                    // their measured connect times (probe timeouts)
	search  *writerSearch
	fwd     *writerTarget // the write forwarding pool of Region, or nil (forward.go)
	aurora  *auroraState  // OpenAurora's topology refresh, or nil (topology.go)
	tel     *telemetry    // nil: uninstrumented (only the overhead benchmark does that)

	sqldb    *sql.DB      // the routing pool (see DB)
	sessions sessionCache // which statements pin a connection (see sessionStmt)

	rset atomic.Pointer[readerSet] // the readers; replaced (never changed) by OpenAurora's topology refresh
	rr   atomic.Uint32

	wsample sampler  // writer position reads, for bounding what the writer served
	changed notifier // monitor state changes

	writerRTT rttEstimate // round trip to the writer (see readWaitBudget)
	writes    writeClock  // when recent writes returned their positions (see readWaitBudget)

	goneMu               sync.Mutex // protects goneSince, goneUntil
	goneSince, goneUntil time.Time  // see goneDeadline
	opened               time.Time

	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup // monitor goroutines
	closed   atomic.Bool
	once     sync.Once
	closeErr error

	classes        classCache
	stmts          stmtCache   // one-statement checks of combining pools
	comb           *combineSQL // the dialect's one-round-trip path, or nil
	monitorQueries atomic.Int64
	stats          counters
}

// counters are the router's statistics; see [Stats].
type counters struct {
	readsReader, readsRemote, readsWriter, readsForced, writes atomic.Int64
	fallbacks, waits, tokensRejected, writePosFailures         atomic.Int64
	failovers, connsOpened                                     atomic.Int64
	positionsRejected                                          atomic.Int64
	storeFallbacks                                             atomic.Int64
	forwarded                                                  atomic.Int64
	guardTimeouts, guardRetriesRemote                          atomic.Int64
}

// Stats are cumulative counts since [Open].
type Stats struct {
	// ReadsLocal and ReadsRemote count reads served by readers of the local
	// region and of other regions.
	ReadsLocal, ReadsRemote int64
	// ReadsWriter counts read-only statements served by the writer because
	// no reader had what they needed in time, or no reader was usable.
	ReadsWriter int64
	// ReadsForced counts reads sent to the writer by [WithWriter], or
	// because no reader is configured.
	ReadsForced int64
	// Writes counts statements and transactions sent to the writer because
	// they may write.
	Writes int64
	// Waits counts reads that waited in the process for a reader to catch
	// up.
	Waits int64
	// GuardTimeouts counts reads whose wait in the reader's own text (see
	// "One round trip per statement") timed out: the statement did not
	// run there, and went to a reader known to have the position, to the
	// same reader again with the rest of MaxWait (a near writer), to
	// another region's reader with a wait of its own, or to the writer.
	// GuardRetriesRemote counts those that went to another region's
	// reader.
	GuardTimeouts, GuardRetriesRemote int64
	// TokensRejected counts corrupt, forged and expired tokens ignored.
	TokensRejected int64
	// PositionsRejected counts positions that did not parse for the
	// router's dialect (from RequirePosition, MergePositions or a token;
	// reads that needed one went to the writer) and malformed values of the
	// shared WatermarkStore (ignored: the monitor queried the reader).
	PositionsRejected int64
	// WritePositionFailures counts writes whose replication position could
	// not be read (the request's later reads then go to the writer).
	WritePositionFailures int64
	// MonitorQueries counts position queries sent to readers: by the
	// monitors, and to bound what reads showed (monotonic reads).
	MonitorQueries int64
	// LocalReaders is the number of configured readers in the local region.
	LocalReaders int
	// Failovers counts writer changes: times a writer search found another
	// endpoint writable than the current writer.
	Failovers int64
	// Writer is the name of the endpoint the router currently sends writes
	// to (the configured writer until a failover).
	Writer string
	// ConnectionsOpened counts the physical connections the router's pools
	// opened to all endpoints. Under steady load it should grow only by the
	// pools' size every ConnMaxLifetime; a faster growth means the pools
	// churn (see [PoolConfig]).
	ConnectionsOpened int64
	// WriterSearches counts writer searches started (after the writer
	// failed to answer or answered read-only). A search probes every
	// endpoint with a new connection.
	WriterSearches int64
	// StoreFallbacks counts monitor checks that queried a reader without
	// the shared WatermarkStore because a store call failed or was too
	// slow (see [Config].Watermarks).
	StoreFallbacks int64
	// WritesForwarded counts statements and transactions sent to the write
	// forwarding endpoint ([Config].WriteForwarding) instead of the writer.
	WritesForwarded int64
}

// Stats returns the router's counters.
func (rt *Router) Stats() Stats {
	c := &rt.stats
	s := Stats{
		ReadsLocal: c.readsReader.Load(), ReadsRemote: c.readsRemote.Load(),
		ReadsWriter: c.readsWriter.Load(), ReadsForced: c.readsForced.Load(), Writes: c.writes.Load(),
		Waits: c.waits.Load(), TokensRejected: c.tokensRejected.Load(),
		PositionsRejected:     c.positionsRejected.Load(),
		WritePositionFailures: c.writePosFailures.Load(),
		MonitorQueries:        rt.monitorQueries.Load(), LocalReaders: rt.rset.Load().nLocal,
		Failovers: c.failovers.Load(), Writer: rt.curWriter().spec.Name,
		ConnectionsOpened: c.connsOpened.Load(), WriterSearches: rt.search.started.Load(),
		StoreFallbacks:  c.storeFallbacks.Load(),
		WritesForwarded: c.forwarded.Load(),
		GuardTimeouts:   c.guardTimeouts.Load(), GuardRetriesRemote: c.guardRetriesRemote.Load(),
	}
	return s
}

// Open validates cfg, opens a pool per endpoint and starts one monitor
// goroutine per reader. Like [sql.Open] it does not connect: the monitors
// connect in the background; use [Router.PingContext] to check the servers.
// The error is a [*ConfigError] for an invalid cfg.
func Open(cfg Config) (*Router, error) {
	n, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	d, _ := newDialect(n.Dialect, n.HeartbeatTable)
	if md, ok := d.(mariaDialect); ok && n.unguardedPromotedWait {
		md.unguarded = true
		d = md
	}
	rt := &Router{
		cfg:     n.Config,
		dialect: d,
		comb:    d.combine(),
		tokens:  tokenCodec{keys: n.tokenKeys, maxAge: n.TokenMaxAge},
		opened:  time.Now(),
	}
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	dbSystem := "mariadb"
	if n.Dialect != DialectMariaDB {
		dbSystem = "mysql"
	}
	// Writer candidates: the writer, then every reader (one may be promoted).
	rt.cands = append([]endpointSpec{n.writer}, n.readers...)
	rt.candTel = make([]*telEndpoint, len(rt.cands))
	probes := make([]writerCandidate, len(rt.cands))
	rt.candRTT = make([]rttStat, len(rt.cands))
	for i, spec := range rt.cands {
		rt.candTel[i] = endpointTel(dbSystem, spec)
		probes[i] = writerCandidate{name: spec.Name, connector: spec.connector, rtt: &rt.candRTT[i]}
	}
	rt.wpools = make([]*writerTarget, len(rt.cands))
	rt.wcur.Store(rt.writerFor(0))
	rt.fwd = rt.openForwarding(n.forward, dbSystem)
	rt.search = newWriterSearch(writerSearchConfig{
		probeTimeout: n.WriterProbeTimeout, interval: n.WriterSearchInterval,
		aurora: n.Aurora, logger: rt.cfg.Logger, onChange: rt.writerChanged, onSearch: rt.kickTopology,
		shared: n.Watermarks, sharedKey: sharedWriterKey(probes),
	}, probes, 0)
	rt.aurora = n.auroraState
	set := &readerSet{}
	for pass := range 2 {
		for i, spec := range n.readers {
			local := spec.Region == n.Region
			if local != (pass == 0) {
				continue
			}
			rc := &readConnector{inner: failureConnector{spec.connector, &rt.stats.connsOpened, &rt.candRTT[i+1]}, rt: rt, comb: rt.combining(spec)}
			r := &reader{endpointDB: endpointDB{spec: spec, db: sql.OpenDB(rc), local: local},
				kick: make(chan struct{}, 1), cand: i + 1, tel: rt.candTel[i+1]}
			rc.r = r
			n.ReaderPool.apply(r.db)
			r.idx = len(set.all)
			r.healthy.Store(true)
			set.all = append(set.all, r)
			if local {
				set.nLocal++
			}
		}
	}
	rt.rset.Store(set)
	rt.tel = newTelemetry(telemetryConfig{
		tracerProvider: n.TracerProvider, meterProvider: n.MeterProvider,
		dbSystem: dbSystem,
		readers:  rt.telReaders, pools: rt.telPools,
	})
	rt.sqldb = newRoutingDB(rt)
	for _, w := range n.warnings {
		rt.cfg.Logger.LogAttrs(rt.ctx, slog.LevelWarn, "dbrouter: "+w)
	}
	if len(cfg.TokenKeys) == 0 {
		rt.cfg.Logger.LogAttrs(rt.ctx, slog.LevelWarn, "dbrouter: no TokenKeys: read-your-writes tokens are signed "+
			"with a random key of this process, and every other process and region rejects them")
	}
	for _, r := range rt.rdrs() {
		rt.wg.Add(1)
		go rt.supervise(rt.ctx, "monitor "+r.spec.Name, func(ctx context.Context) { rt.monitor(ctx, r) }, func() { rt.monitorFailed(r) })
	}
	if rt.aurora != nil {
		rt.wg.Add(1)
		go rt.supervise(rt.ctx, "aurora topology", rt.refreshTopology, nil)
	}
	if n.Dialect == DialectHeartbeat && n.HeartbeatPeriod > 0 {
		rt.wg.Add(1)
		go rt.supervise(rt.ctx, "heartbeat", rt.beat, nil)
	}
	return rt, nil
}

// combining returns how the pools of spec treat statements.
func (rt *Router) combining(spec endpointSpec) combining {
	return combining{on: spec.combine, sql: rt.comb}
}

// Close stops the monitors, waits for them, and closes every pool. It is
// idempotent; after it the router's methods return [ErrClosed] (QueryRowContext
// returns a Row whose Scan reports the pool's "database is closed").
func (rt *Router) Close() error {
	rt.once.Do(func() {
		rt.closed.Store(true)
		rt.cancel()
		rt.search.close()
		rt.wg.Wait()
		rt.tel.close()
		errs := []error{rt.sqldb.Close()}
		rt.wmu.Lock()
		for _, w := range rt.wpools {
			if w != nil {
				errs = append(errs, w.db.Close())
			}
		}
		rt.wmu.Unlock()
		if rt.fwd != nil {
			errs = append(errs, rt.fwd.db.Close())
		}
		for _, r := range rt.rdrs() {
			errs = append(errs, r.db.Close())
		}
		rt.closeErr = errors.Join(errs...)
	})
	return rt.closeErr
}

// ExecContext runs a statement on the writer (a statement that returns no
// rows may write) and advances the context's read-your-writes position.
//
// If the writer cannot be reached or answers that it is read-only, the
// router searches for the new writer and sends the statement there once: it
// provably did not run. If the connection broke after the statement was
// sent, the error matches [ErrOutcomeUnknown] and nothing is retried. When
// no writer is found the error matches [ErrNoWriter].
func (rt *Router) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := rt.execute(ctx, stmtCall{op: opExec, query: query}, nil, func(ctx context.Context, t target) (err error) {
		res, err = t.db.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// QueryContext runs a query on the endpoint chosen by the routing rules
// (see the package documentation). A read that fails on a reader before
// returning rows is retried once where routing then sends it (another fresh
// reader, or the writer); a statement on the writer is handled like
// [Router.ExecContext]'s.
func (rt *Router) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	var rows *sql.Rows
	err := rt.execute(ctx, stmtCall{op: opQuery, query: query}, nil, func(ctx context.Context, t target) (err error) {
		rows, err = t.db.QueryContext(ctx, query, args...)
		return err
	})
	return rows, err
}

// QueryRowContext runs a query that returns at most one row on the endpoint
// chosen by the routing rules, retried once like [Router.QueryContext]'s when
// it failed before returning a row. Errors are deferred until [sql.Row.Scan].
func (rt *Router) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	var row *sql.Row
	err := rt.execute(ctx, stmtCall{op: opQuery, query: query}, nil, func(ctx context.Context, t target) error {
		row = t.db.QueryRowContext(ctx, query, args...)
		if err := row.Err(); err != sql.ErrNoRows {
			return err
		}
		return nil
	})
	if row == nil && err != nil {
		// Closed, or no server can serve the read: a Row can only carry an
		// error through a pool. The closed pools report the first; the
		// routing pool routes the read again and reports the second.
		if rt.closed.Load() {
			row = rt.wdb().QueryRowContext(ctx, query, args...)
		} else {
			row = rt.sqldb.QueryRowContext(ctx, query, args...)
		}
	}
	return row
}

// PrepareContext prepares a statement of the routing pool ([Router.DB]):
// each execution is routed like the same statement run directly (a read to
// a reader, anything else to the writer) and prepared on the endpoint that
// runs it when it first needs to be. Preparing sends nothing to a server.
func (rt *Router) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	if rt.closed.Load() {
		return nil, ErrClosed
	}
	return rt.sqldb.PrepareContext(ctx, query)
}

// BeginTx starts a transaction of the routing pool ([Router.DB]): on a
// reader chosen like a read when opts asks for a read-only transaction, on
// the writer otherwise. Every statement of a read-write transaction runs on
// the writer; its commit advances the context's read-your-writes position.
// A BEGIN that failed before reaching a server is retried once (after a
// writer search for the writer). When the connection of a read-write
// transaction breaks, its statements' and its commit's errors match
// [ErrOutcomeUnknown].
func (rt *Router) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	tx, err := rt.sqldb.BeginTx(ctx, opts)
	if err != nil && rt.closed.Load() {
		return nil, ErrClosed
	}
	return tx, err
}

// PingContext checks that the writer and every reader answer. The error
// names the first endpoint that does not.
func (rt *Router) PingContext(ctx context.Context) error {
	if rt.closed.Load() {
		return ErrClosed
	}
	w := rt.curWriter()
	if err := w.db.PingContext(ctx); err != nil {
		return &EndpointError{Endpoint: w.spec.Name, Op: "ping", Err: unwrapConnectError(err)}
	}
	for _, r := range rt.rdrs() {
		if err := r.db.PingContext(ctx); err != nil {
			return &EndpointError{Endpoint: r.spec.Name, Op: "ping", Err: unwrapConnectError(err)}
		}
	}
	return nil
}

// Ping calls [Router.PingContext] with [context.Background].
func (rt *Router) Ping() error { return rt.PingContext(context.Background()) }

// Writer returns the current writer's pool, for code that needs a
// [*sql.Conn] or other *sql.DB methods of the writer alone. Writes made
// through it with a context that has a read-your-writes scope advance the
// scope like the router's own. It does not follow a later failover: call
// Writer again, or use [Router.DB], which does.
func (rt *Router) Writer() *sql.DB { return rt.wdb() }

// readerFailed is the failure hook of reads: if db is a reader's pool and
// err says the reader (not the caller, not the statement) failed, the reader
// is excluded from reads until its monitor sees it answer again (checked
// within a second), and readerFailed returns true so that the caller may
// retry the read once. The caller's own cancellation never excludes a
// reader.
func (rt *Router) readerFailed(ctx context.Context, db *sql.DB, err error) bool {
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

// combines reports whether reads on r can carry their guard and sample in
// the same round trip.
func (rt *Router) combines(r *reader) bool { return rt.comb != nil && r.spec.combine }

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
