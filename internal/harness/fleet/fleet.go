// Package fleet measures what a fleet of routers costs the servers:
// monitor queries per read with and without a shared WatermarkStore,
// connections opened under steady load, position queries of writes outside
// any read-your-writes scope, and what a writer at its connection limit
// does to the routers. Every figure is read from the servers' own status
// counters (round trips from the general log, Connections) where a server can tell.
//
// N routers run in one process, each in ap-northeast-1 with the local
// reader r1 and the remote reader r2, default pools, and Loops goroutines
// that write a row, read it back in the same scope and sleep 50 ms.
// Used by internal/cmd/bench fleet (make bench-fleet) and its test.
package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/dbrouter/memcachestore"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Database is the harness's own database on the stack.
const Database = "regiondb_fleet"

// Config configures a run. Zero fields take the defaults shown.
type Config struct {
	Ns       []int         // fleet sizes (default 1, 10, 40)
	Loops    int           // goroutines per router (default 20)
	Think    time.Duration // sleep between loops (default 50 ms)
	Warmup   time.Duration // load before measuring (default 2 s)
	Duration time.Duration // measured load per size and mode (default 6 s)
	Logf     func(format string, args ...any)
}

func (c *Config) defaults() {
	if len(c.Ns) == 0 {
		c.Ns = []int{1, 10, 40}
	}
	if c.Loops <= 0 {
		c.Loops = 20
	}
	if c.Think <= 0 {
		c.Think = 50 * time.Millisecond
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 6 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Load is one measured run of the workload at one fleet size.
type Load struct {
	N                int     `json:"n"`
	LoopsPerSec      float64 `json:"loops_per_s"`
	Reads            int64   `json:"reads"`
	Errors           int64   `json:"errors"`
	StaleReads       int64   `json:"stale_reads"`              // read backs that missed their own write
	MonitorPerRead   float64 `json:"monitor_queries_per_read"` // the highest of r1, r2
	MonitorQPSReader float64 `json:"monitor_qps_per_reader"`   // the highest of r1, r2
	ReadsToWriter    float64 `json:"reads_to_writer"`          // share of reads the writer served
	P50ms            float64 `json:"p50_ms"`                   // one loop: write, read back
	WriteP50ms       float64 `json:"write_p50_ms"`             // the write of a loop
	ReadP50ms        float64 `json:"read_p50_ms"`              // the read back: its wait for a position, and the query
	// NewConnsPerRouter counts the connections the routers opened to all
	// servers (their own count: a replica's Connections status counter
	// also counts sessions of its replication applier, about 3 per 200
	// replicated commits with no client at all); WriterNewConnsPerRouter
	// is the writer's own counter, which has no such noise.
	NewConnsPerRouter       float64 `json:"new_conns_per_s_per_router"`
	WriterNewConnsPerRouter float64 `json:"writer_new_conns_per_s_per_router"`
	// RouterConns and RouterMonitor are the routers' own counts of
	// connections opened and monitor queries, beside the servers'.
	RouterConns   int64 `json:"router_conns_opened"`
	RouterMonitor int64 `json:"router_monitor_queries"`
	// Store is what the routers asked of the shared store (shared runs).
	Store *StoreStats `json:"store,omitempty"`
}

// Shared is the summary of the runs with the shared memcached store.
type Shared struct {
	MonitorQPSPerReader float64 `json:"monitor_qps_per_reader"`
	ReadsToWriter       float64 `json:"reads_to_writer"`
	P50PenaltyMs        float64 `json:"p50_penalty_ms"`
	// P50PenaltyUnsatMs is P50PenaltyMs over the fleet sizes the machine
	// did not saturate (see Limits), where latencies are the router's.
	P50PenaltyUnsatMs float64 `json:"p50_penalty_ms_unsaturated"`
}

// Overload is what the routers did while the writer's connection limit was
// reached.
type Overload struct {
	Writes      int64 `json:"writes"`
	Searches    int64 `json:"searches"`
	TypedErrors int64 `json:"typed_errors"`
	NoWriter    int64 `json:"no_writer_errors"`
}

// Report is the result of a run. Its first fields are the figures:
// the worst over all fleet sizes.
type Report struct {
	MonitorQueriesPerRead    float64  `json:"monitor_queries_per_read"`
	Shared                   Shared   `json:"shared"`
	NewConnsPerSecPerRouter  float64  `json:"new_conns_per_s_per_router"`
	PositionQueriesPerUnscWr float64  `json:"position_queries_per_unscoped_write"`
	Overload                 Overload `json:"overload"`
	Local                    []Load   `json:"local"`
	SharedRuns               []Load   `json:"shared_runs"`
	Machine                  string   `json:"machine"`
	// MonitorControl is a run at the first fleet size, without a shared
	// store, of routers that wait for positions in process (the path
	// before reads carried their own wait, still used by connectors and
	// other dialects): it shows the harness counts monitor queries.
	MonitorControl Load   `json:"monitor_control"`
	MachineLimits  Limits `json:"machine_limits"`
	// SharedInProcess is Shared for routers that keep the in-process wait
	// (endpoints given as a Connector, the MySQL and heartbeat dialects,
	// DisableCombinedStatements): the path the shared store serves.
	SharedInProcess Shared `json:"shared_in_process"`
	// InProcessRuns and SharedInProcessRuns are the runs behind
	// SharedInProcess, without and with the store (with its calls).
	InProcessRuns       []Load `json:"in_process_runs"`
	SharedInProcessRuns []Load `json:"shared_in_process_runs"`
}

// Limits says what the machine running the benchmark limits: at the fleet
// sizes in Saturated, the routers offered more loops than its cores ran
// (measured loops/s below half of N × Loops / Think), so loops_per_s and
// the p50 latencies there are the machine's, and only the per-read and
// per-reader ratios carry over to a fleet.
type Limits struct {
	Cores            int    `json:"cores"`
	LoopsPerSecLimit int    `json:"loops_per_s_ceiling"` // near this, the stack and the routers use every core
	Saturated        []int  `json:"saturated_ns"`
	Limited          string `json:"limited"`
}

// Run measures everything and returns the report.
func Run(ctx context.Context, s *testserver.Stack, cfg Config) (Report, error) {
	cfg.defaults()
	if err := setup(ctx, s); err != nil {
		return Report{}, err
	}
	mon, err := openCounters(s)
	if err != nil {
		return Report{}, err
	}
	defer mon.close()
	perRead, err := mon.calibrate(ctx, s, true)
	if err != nil {
		return Report{}, err
	}
	perReadPrepared, err := mon.calibrate(ctx, s, false)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Machine: "2 cores: the stack and every router share them, so loops_per_s saturates near 2 000; ratios per read and per router, not totals, carry over to a fleet"}
	for _, shared := range []bool{false, true} {
		for _, n := range cfg.Ns {
			l, err := runLoad(ctx, s, mon, perRead, cfg, n, shared, true)
			if err != nil {
				return Report{}, err
			}
			cfg.Logf("fleet: n=%d shared=%v: %+v", n, shared, l)
			if shared {
				rep.SharedRuns = append(rep.SharedRuns, l)
			} else {
				rep.Local = append(rep.Local, l)
			}
		}
	}
	rep.MachineLimits = Limits{Cores: runtime.NumCPU(), LoopsPerSecLimit: 2000,
		Limited: "absolute loops_per_s and p50 latencies (and so p50_penalty_ms) at the saturated sizes; not the per-read ratios or per-reader query rates"}
	for i, l := range rep.Local {
		offered := float64(l.N*cfg.Loops) / cfg.Think.Seconds()
		sh := rep.SharedRuns[i]
		if l.LoopsPerSec < offered/2 || sh.LoopsPerSec < offered/2 {
			rep.MachineLimits.Saturated = append(rep.MachineLimits.Saturated, l.N)
		} else {
			rep.Shared.P50PenaltyUnsatMs = max(rep.Shared.P50PenaltyUnsatMs, sh.P50ms-l.P50ms)
		}
		rep.MonitorQueriesPerRead = max(rep.MonitorQueriesPerRead, l.MonitorPerRead)
		rep.NewConnsPerSecPerRouter = max(rep.NewConnsPerSecPerRouter, l.NewConnsPerRouter)
		rep.Shared.MonitorQPSPerReader = max(rep.Shared.MonitorQPSPerReader, sh.MonitorQPSReader)
		rep.Shared.ReadsToWriter = max(rep.Shared.ReadsToWriter, sh.ReadsToWriter)
		rep.Shared.P50PenaltyMs = max(rep.Shared.P50PenaltyMs, sh.P50ms-l.P50ms)
	}
	// The same comparison on the in-process path, which the store serves
	// (reads that carry their own wait need no monitor, so the runs above
	// barely use it).
	for _, n := range cfg.Ns {
		l, err := runLoad(ctx, s, mon, perReadPrepared, cfg, n, false, false)
		if err != nil {
			return Report{}, err
		}
		sh, err := runLoad(ctx, s, mon, perReadPrepared, cfg, n, true, false)
		if err != nil {
			return Report{}, err
		}
		cfg.Logf("fleet: in-process n=%d: local %+v shared %+v store %+v", n, l, sh, sh.Store)
		rep.InProcessRuns = append(rep.InProcessRuns, l)
		rep.SharedInProcessRuns = append(rep.SharedInProcessRuns, sh)
		offered := float64(l.N*cfg.Loops) / cfg.Think.Seconds()
		if l.LoopsPerSec >= offered/2 && sh.LoopsPerSec >= offered/2 {
			rep.SharedInProcess.P50PenaltyUnsatMs = max(rep.SharedInProcess.P50PenaltyUnsatMs, sh.P50ms-l.P50ms)
		}
		rep.SharedInProcess.MonitorQPSPerReader = max(rep.SharedInProcess.MonitorQPSPerReader, sh.MonitorQPSReader)
		rep.SharedInProcess.ReadsToWriter = max(rep.SharedInProcess.ReadsToWriter, sh.ReadsToWriter)
		rep.SharedInProcess.P50PenaltyMs = max(rep.SharedInProcess.P50PenaltyMs, sh.P50ms-l.P50ms)
	}
	if rep.MonitorControl, err = runLoad(ctx, s, mon, perReadPrepared, cfg, cfg.Ns[0], false, false); err != nil {
		return Report{}, err
	}
	cfg.Logf("fleet: control (in-process waits): %+v", rep.MonitorControl)
	if rep.PositionQueriesPerUnscWr, err = unscopedWrites(ctx, s, mon, perRead); err != nil {
		return Report{}, err
	}
	if rep.Overload, err = overload(ctx, s, cfg); err != nil {
		return Report{}, err
	}
	return rep, nil
}

func setup(ctx context.Context, s *testserver.Stack) error {
	db, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + Database,
		"CREATE TABLE IF NOT EXISTS " + Database + ".fleet_rows (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return s.WaitReplicated(ctx)
}

func routerConfig(s *testserver.Stack) dbrouter.Config {
	return dbrouter.Config{
		Region: testserver.PrimaryRegion,
		Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", Database)},
		Readers: []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSN("r1", Database), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSN("r2", Database), Region: testserver.SecondaryRegion},
		},
		TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: []byte("fleetharness-token-key-012345678")}},
	}
}

// counters reads, over one persistent root connection per server (so that
// reading them opens no connection), the round trips each server received
// and its Connections status counter.
//
// Round trips are counted from the server's general log (to a table): one
// row per command a client sent that the server answers (a COM_QUERY
// text, a prepare, an execute, ...), whatever the number of statements in
// the text; the rows of the replication applier are left out. The Questions counter is not used: it counts each statement of
// a multi-statement text, and the router sends a read's position guard and
// sample in the read's own text (one round trip).
type counters struct {
	conns map[string]*sql.Conn
	dbs   []*sql.DB
}

var servers = []string{"m1", "r1", "r2"}

func openCounters(s *testserver.Stack) (*counters, error) {
	c := &counters{conns: map[string]*sql.Conn{}}
	for _, name := range servers {
		db, err := sql.Open("mysql", s.AdminDSN(name))
		if err != nil {
			c.close()
			return nil, err
		}
		c.dbs = append(c.dbs, db)
		conn, err := db.Conn(context.Background())
		if err != nil {
			c.close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		c.conns[name] = conn
		// sql_log_bin = 0: a TRUNCATE binlogged on a replica would be an
		// errant transaction that stops its replication.
		for _, q := range []string{"SET SESSION sql_log_bin = 0", "SET GLOBAL log_output = 'TABLE'", "SET GLOBAL general_log = 1", "TRUNCATE mysql.general_log"} {
			if _, err := conn.ExecContext(context.Background(), q); err != nil {
				c.close()
				return nil, fmt.Errorf("%s on %s: %w", q, name, err)
			}
		}
	}
	return c, nil
}

// reset empties the general logs (so that counting them stays quick).
func (c *counters) reset(ctx context.Context) error {
	for name, conn := range c.conns {
		if _, err := conn.ExecContext(ctx, "TRUNCATE mysql.general_log"); err != nil {
			return fmt.Errorf("truncating the general log of %s: %w", name, err)
		}
	}
	return nil
}

func (c *counters) close() {
	for _, conn := range c.conns {
		conn.ExecContext(context.Background(), "SET GLOBAL general_log = 0")
		conn.ExecContext(context.Background(), "TRUNCATE mysql.general_log")
		conn.Close()
	}
	for _, db := range c.dbs {
		db.Close()
	}
}

// sample is each server's round trips and Connections.
type sample map[string][2]int64

// read samples every server. The read itself is one round trip per server,
// which diff subtracts.
func (c *counters) read(ctx context.Context) (sample, error) {
	out := sample{}
	for _, name := range servers {
		var q, n int64
		err := c.conns[name].QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM mysql.general_log WHERE command_type NOT IN ('Close stmt', 'Quit', 'Connect')
				AND user_host NOT LIKE '[<replication_slave>]%'),
			(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'CONNECTIONS')`).Scan(&q, &n)
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", name, err)
		}
		out[name] = [2]int64{q, n}
	}
	return out, nil
}

// diff returns the round trips and connections each server received between
// a and b, less the sampling query.
func diff(a, b sample, name string) (roundTrips, conns int64) {
	return b[name][0] - a[name][0] - 1, b[name][1] - a[name][1]
}

// calibrate measures how many round trips one read of the workload's shape
// costs on a server as the router sends it (the router's DSN pools
// interpolate arguments: one text), so that the workload's own statements
// can be subtracted.
// With interpolate false it measures a read as the plain driver sends it
// (prepared: two round trips), as routers without combining do.
func (c *counters) calibrate(ctx context.Context, s *testserver.Stack, interpolate bool) (float64, error) {
	dsn := s.DSN("r1", Database)
	if interpolate {
		dsn += "&interpolateParams=true"
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxIdleConns(1)
	const k = 200
	var v int64
	if err := db.QueryRowContext(ctx, readQuery, 1).Scan(&v); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	a, err := c.read(ctx)
	if err != nil {
		return 0, err
	}
	for i := range k {
		if err := db.QueryRowContext(ctx, readQuery, i).Scan(&v); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
	}
	b, err := c.read(ctx)
	if err != nil {
		return 0, err
	}
	q, _ := diff(a, b, "r1")
	return float64(q) / k, nil
}

const (
	writeQuery = "REPLACE INTO fleet_rows (id, v) VALUES (?, ?)"
	readQuery  = "SELECT v FROM fleet_rows WHERE id = ?"
)

type tally struct {
	loops, reads, errs atomic.Int64
	stale              atomic.Int64
	mu                 sync.Mutex // protects lat, wlat, rlat
	lat, wlat, rlat    []time.Duration
}

// runLoad runs the workload with n routers and measures it.
// With combine false the routers keep the in-process wait
// (DisableCombinedStatements).
func runLoad(ctx context.Context, s *testserver.Stack, c *counters, perRead float64, cfg Config, n int, shared, combine bool) (Load, error) {
	var mc *memcache.Client
	if shared {
		mc = memcache.New(s.Memcached(testserver.PrimaryRegion))
		mc.Timeout = 50 * time.Millisecond
		mc.MaxIdleConns = 64
		defer mc.Close()
	}
	routers := make([]*dbrouter.Router, n)
	slog := newStoreLog()
	for i := range routers {
		rc := routerConfig(s)
		rc.DisableCombinedStatements = !combine
		if shared {
			// One store per process in a fleet; one client here.
			rc.Watermarks = &timedStore{WatermarkStore: memcachestore.New(mc), log: slog, proc: i}
		}
		rt, err := dbrouter.Open(rc)
		if err != nil {
			return Load{}, err
		}
		defer rt.Close()
		routers[i] = rt
	}
	if err := c.reset(ctx); err != nil {
		return Load{}, err
	}
	var measuring atomic.Bool
	t := &tally{}
	loadCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for ri, rt := range routers {
		for g := range cfg.Loops {
			id := int64(n)*1_000_000 + int64(ri*cfg.Loops+g)
			if shared {
				id += 500_000
			}
			wg.Go(func() { loop(loadCtx, rt, id, cfg.Think, &measuring, t) })
		}
	}
	var err error
	defer func() {
		stop()
		wg.Wait()
	}()
	if err = sleepCtx(ctx, cfg.Warmup); err != nil {
		return Load{}, err
	}
	before := statsSum(routers)
	a, err := c.read(ctx)
	if err != nil {
		return Load{}, err
	}
	measuring.Store(true)
	slog.on.Store(true)
	start := time.Now()
	if err = sleepCtx(ctx, cfg.Duration); err != nil {
		return Load{}, err
	}
	measuring.Store(false)
	slog.on.Store(false)
	b, err := c.read(ctx)
	if err != nil {
		return Load{}, err
	}
	elapsed := time.Since(start).Seconds()
	after := statsSum(routers)

	l := Load{N: n, LoopsPerSec: float64(t.loops.Load()) / elapsed, Errors: t.errs.Load(), StaleReads: t.stale.Load()}
	reads := after.ReadsLocal + after.ReadsRemote + after.ReadsWriter - before.ReadsLocal - before.ReadsRemote - before.ReadsWriter
	l.Reads = reads
	if reads > 0 {
		l.ReadsToWriter = float64(after.ReadsWriter-before.ReadsWriter) / float64(reads)
	}
	served := map[string]int64{"r1": after.ReadsLocal - before.ReadsLocal, "r2": after.ReadsRemote - before.ReadsRemote}
	for _, name := range servers {
		q, conns := diff(a, b, name)
		if name == "m1" {
			l.WriterNewConnsPerRouter = float64(conns) / elapsed / float64(n)
			continue
		}
		monitor := max(float64(q)-perRead*float64(served[name]), 0)
		if reads > 0 {
			l.MonitorPerRead = max(l.MonitorPerRead, monitor/float64(reads))
		}
		l.MonitorQPSReader = max(l.MonitorQPSReader, monitor/elapsed)
	}
	l.RouterConns = after.ConnectionsOpened - before.ConnectionsOpened
	l.NewConnsPerRouter = float64(l.RouterConns) / elapsed / float64(n)
	l.RouterMonitor = after.MonitorQueries - before.MonitorQueries
	t.mu.Lock()
	l.P50ms = percentile(t.lat, 0.5)
	l.WriteP50ms = percentile(t.wlat, 0.5)
	l.ReadP50ms = percentile(t.rlat, 0.5)
	t.mu.Unlock()
	if shared {
		l.Store = slog.stats(elapsed)
	}
	return l, nil
}

// loop is one goroutine of the workload: write a row, read it back in the
// same scope, sleep.
func loop(ctx context.Context, rt *dbrouter.Router, id int64, think time.Duration, measuring *atomic.Bool, t *tally) {
	for v := int64(1); ctx.Err() == nil; v++ {
		start := time.Now()
		sctx := dbrouter.NewContext(ctx)
		_, err := rt.ExecContext(sctx, writeQuery, id, v)
		wrote := time.Now()
		var got int64
		if err == nil {
			err = rt.QueryRowContext(sctx, readQuery, id).Scan(&got)
		}
		read := time.Now()
		if ctx.Err() != nil {
			return
		}
		if measuring.Load() {
			t.loops.Add(1)
			if err != nil {
				t.errs.Add(1)
			} else {
				if got != v {
					t.stale.Add(1)
				}
				t.mu.Lock()
				t.lat = append(t.lat, read.Sub(start))
				t.wlat = append(t.wlat, wrote.Sub(start))
				t.rlat = append(t.rlat, read.Sub(wrote))
				t.mu.Unlock()
			}
		}
		if sleepCtx(ctx, think) != nil {
			return
		}
	}
}

// unscopedWrites sends writes outside any read-your-writes scope and
// returns the position queries per write the writer received.
func unscopedWrites(ctx context.Context, s *testserver.Stack, c *counters, perRead float64) (float64, error) {
	rt, err := dbrouter.Open(routerConfig(s))
	if err != nil {
		return 0, err
	}
	defer rt.Close()
	const k = 300
	if _, err := rt.ExecContext(ctx, writeQuery, -1, 0); err != nil { // warm the pool
		return 0, err
	}
	a, err := c.read(ctx)
	if err != nil {
		return 0, err
	}
	for i := range k {
		if _, err := rt.ExecContext(ctx, writeQuery, -1, i); err != nil {
			return 0, err
		}
	}
	b, err := c.read(ctx)
	if err != nil {
		return 0, err
	}
	q, _ := diff(a, b, "m1")
	return max(float64(q)-perRead*k, 0) / k, nil
}

// overload gives an account of the writer a connection limit, fills it from
// outside, and runs writes through 10 routers of that account.
func overload(ctx context.Context, s *testserver.Stack, cfg Config) (Overload, error) {
	admin, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		return Overload{}, err
	}
	defer admin.Close()
	for _, q := range []string{
		"DROP USER IF EXISTS 'fleet_small'@'127.0.0.1'",
		"CREATE USER 'fleet_small'@'127.0.0.1' IDENTIFIED BY 'fleet_small' WITH MAX_USER_CONNECTIONS 4",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + Database + ".* TO 'fleet_small'@'127.0.0.1'",
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return Overload{}, fmt.Errorf("%s: %w", q, err)
		}
	}
	defer admin.ExecContext(context.Background(), "DROP USER IF EXISTS 'fleet_small'@'127.0.0.1'")
	if err := s.WaitReplicated(ctx); err != nil {
		return Overload{}, err
	}
	dsn := "fleet_small:fleet_small@tcp(" + s.Addr("m1") + ")/" + Database
	hog, err := sql.Open("mysql", dsn)
	if err != nil {
		return Overload{}, err
	}
	defer hog.Close()
	for range 4 {
		conn, err := hog.Conn(ctx)
		if err != nil {
			return Overload{}, fmt.Errorf("filling the connection limit: %w", err)
		}
		defer conn.Close()
	}
	var o Overload
	var mu sync.Mutex
	var wg sync.WaitGroup
	var routers []*dbrouter.Router
	for range 10 {
		rc := routerConfig(s)
		rc.Writer.DSN = dsn
		rt, err := dbrouter.Open(rc)
		if err != nil {
			return Overload{}, err
		}
		defer rt.Close()
		routers = append(routers, rt)
		wg.Go(func() {
			for i := range 50 {
				_, err := rt.ExecContext(ctx, writeQuery, -2, i)
				mu.Lock()
				o.Writes++
				switch {
				case errors.Is(err, dbrouter.ErrOverloaded):
					o.TypedErrors++
				case errors.Is(err, dbrouter.ErrNoWriter):
					o.NoWriter++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	o.Searches = statsSum(routers).WriterSearches
	return o, nil
}

func statsSum(routers []*dbrouter.Router) dbrouter.Stats {
	var s dbrouter.Stats
	for _, rt := range routers {
		st := rt.Stats()
		s.ReadsLocal += st.ReadsLocal
		s.ReadsRemote += st.ReadsRemote
		s.ReadsWriter += st.ReadsWriter
		s.WriterSearches += st.WriterSearches
		s.ConnectionsOpened += st.ConnectionsOpened
		s.MonitorQueries += st.MonitorQueries
	}
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))]) / 1e6
}
