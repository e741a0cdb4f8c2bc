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
	wmu     sync.Mutex                   // protects wpools, cands, candTel and candRTT (which only grow: see addWriterCandidate)
	wpools  []*writerTarget              // writer-role pools by candidate, opened on first use
	cands   []endpointSpec               // writer candidates: the writer, the readers in Config order, then Aurora instances that joined
	candTel []*telEndpoint               // their telemetry attributes
	candRTT []*rttStat                   // their measured connect times (probe timeouts)
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
	watchOn   bool        // the monitors watch the local readers after this router's writes (see monitor)

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
	tables         tableCache  // what combined INSERTs need of their tables
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
	// guardedReads counts combined reads sent with a guard, watchQueries
	// the post-write watch's wait queries (also in monitorQueries).
	guardedReads, watchQueries atomic.Int64
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
	// The post-write watch needs a server-side wait (the heartbeat has
	// none), and would send a query per write and process, beyond the
	// fleet's budget, with a shared store (see monitor).
	rt.watchOn = n.Watermarks == nil && d.kind() != streamBeat && !n.unwatched
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	dbSystem := "mariadb"
	if n.Dialect != DialectMariaDB {
		dbSystem = "mysql"
	}
	// Writer candidates: the writer, then every reader (one may be promoted).
	rt.cands = append([]endpointSpec{n.writer}, n.readers...)
	rt.candTel = make([]*telEndpoint, len(rt.cands))
	probes := make([]writerCandidate, len(rt.cands))
	rt.candRTT = make([]*rttStat, len(rt.cands))
	for i, spec := range rt.cands {
		rt.candTel[i] = endpointTel(dbSystem, spec)
		rt.candRTT[i] = &rttStat{}
		probes[i] = writerCandidate{name: spec.Name, connector: spec.connector, rtt: rt.candRTT[i]}
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
			rc := &readConnector{inner: failureConnector{spec.connector, &rt.stats.connsOpened, rt.candRTT[i+1]}, rt: rt, comb: rt.combining(spec)}
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
		go rt.supervise(rt.ctx, "monitor "+r.spec.Name, func(ctx context.Context) { rt.monitor(ctx, r) }, func() { rt.monitorError(r) })
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
