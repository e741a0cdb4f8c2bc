// Package rywharness is the read-your-writes correctness harness of
// dbrouter: simulated users write and then read their own data, within a
// request, across requests and across the two regions of the local stack,
// while the stack makes the readers lag. The same workload runs at the same
// time through three strategies:
//
//   - "router": dbrouter, its token carried between requests and regions
//     like a cookie (through the router's own HTTP middleware);
//   - "naive": writes to the writer, reads always to the local reader;
//   - "window2s": reads go to the writer for 2 s after the user's last
//     write (Rails' DatabaseSelector default), else to the local reader.
//
// A violation is a read that misses the user's own acknowledged write.
// Used by TestHarness (with the bars asserted) and by
// internal/cmd/bench-ryw (make bench-ryw).
package rywharness

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Database is the harness's own database on the stack.
const Database = "regiondb_ryw"

// Config configures a run. Zero fields take the defaults shown.
type Config struct {
	// Users is the number of concurrent simulated users per strategy
	// (default 24).
	Users int
	// Duration is how long the workload runs (default 20 s).
	Duration time.Duration
	// HopProbability is the chance that a request lands in the user's
	// other region (default 0.3).
	HopProbability float64
	// WriteProbability is the chance that a request writes (then reads);
	// the others only read (default 0.5).
	WriteProbability float64
	// MaxThink is the most a user waits between requests (default 400 ms;
	// uniform from a tenth of it).
	MaxThink time.Duration
	// Seed seeds the workload and the faults (default 1).
	Seed uint64
	// Logf, if not nil, receives progress lines.
	Logf func(format string, args ...any)
}

// Result is what one strategy measured.
type Result struct {
	Violations  int64   `json:"violations"`
	WriterShare float64 `json:"writer_share"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`

	Reads       int64 `json:"-"`
	WriterReads int64 `json:"-"`
	Writes      int64 `json:"-"`
	// Monotonic counts reads that returned older data than an earlier
	// read of the same user (not part of the bars).
	Monotonic int64 `json:"-"`
}

// Report is the result of a run, per strategy.
type Report struct {
	Router   Result `json:"router"`
	Naive    Result `json:"naive"`
	Window2s Result `json:"window2s"`
	// Faults counts the lag episodes the run injected.
	Faults int `json:"-"`
	// RouterStats are the two routers' counters added up.
	RouterStats dbrouter.Stats `json:"-"`
}

// JSON returns the report's one-line JSON form.
func (r Report) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}

func (c *Config) defaults() {
	if c.Users <= 0 {
		c.Users = 24
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.HopProbability == 0 {
		c.HopProbability = 0.3
	}
	if c.WriteProbability == 0 {
		c.WriteProbability = 0.5
	}
	if c.MaxThink <= 0 {
		c.MaxThink = 400 * time.Millisecond
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

var regions = [2]string{testserver.PrimaryRegion, testserver.SecondaryRegion}

// TokenKey is the HMAC key shared by the harness's two routers.
var tokenKey = dbrouter.TokenKey{ID: 7, Secret: []byte("rywharness-shared-secret-0123456")}

// strategy serves the requests of one user.
type strategy interface {
	// request runs one request of user in region: an optional write of
	// value, then a read of the user's value. It returns the value read,
	// whether the read went to the writer, and the read's latency.
	request(ctx context.Context, u *user, region int, write bool, value int64) (got int64, writer bool, lat time.Duration, err error)
}

// user is one simulated user; its jar is what its browser would keep.
type user struct {
	id        int
	home      int
	cookies   []*http.Cookie // router
	lastWrite time.Time      // window2s (a cookie too, in Rails)
}

type tally struct {
	mu                         sync.Mutex // protects lat
	lat                        []time.Duration
	reads, writerReads, writes atomic.Int64
	violations, monotonic      atomic.Int64
}

// Run runs the workload against the stack and returns the report.
func Run(ctx context.Context, s *testserver.Stack, cfg Config) (Report, error) {
	cfg.defaults()
	if err := setup(ctx, s, 3*cfg.Users); err != nil {
		return Report{}, err
	}

	var routers [2]*dbrouter.Router
	for i, region := range regions {
		rt, err := dbrouter.Open(dbrouter.Config{
			Region: region,
			Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", Database)},
			Readers: []dbrouter.Endpoint{
				{Name: "r1", DSN: s.DSN("r1", Database), Region: testserver.PrimaryRegion},
				{Name: "r2", DSN: s.DSN("r2", Database), Region: testserver.SecondaryRegion},
			},
			TokenKeys: []dbrouter.TokenKey{tokenKey},
		})
		if err != nil {
			return Report{}, err
		}
		defer rt.Close()
		routers[i] = rt
	}
	pools, err := openPools(s)
	if err != nil {
		return Report{}, err
	}
	defer pools.close()

	strategies := []strategy{
		newRouterStrategy(routers),
		&naive{p: pools},
		&window{p: pools, window: 2 * time.Second},
	}
	tallies := make([]*tally, len(strategies))

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	faultsDone := make(chan int, 1)
	go func() { faultsDone <- injectFaults(runCtx, s, cfg) }()

	var wg sync.WaitGroup
	for si, st := range strategies {
		tallies[si] = &tally{}
		for i := range cfg.Users {
			u := &user{id: si*cfg.Users + i + 1, home: i % 2}
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(u.id)))
			wg.Go(func() { runUser(runCtx, cfg, st, u, rng, tallies[si]) })
		}
	}
	wg.Wait()
	faults := <-faultsDone
	if err := heal(ctx, s); err != nil {
		return Report{}, err
	}
	if ctx.Err() != nil {
		return Report{}, ctx.Err()
	}

	rep := Report{Faults: faults}
	for _, rt := range routers {
		st := rt.Stats()
		rep.RouterStats.ReadsLocal += st.ReadsLocal
		rep.RouterStats.ReadsRemote += st.ReadsRemote
		rep.RouterStats.ReadsWriter += st.ReadsWriter
		rep.RouterStats.ReadsForced += st.ReadsForced
		rep.RouterStats.Waits += st.Waits
		rep.RouterStats.TokensRejected += st.TokensRejected
		rep.RouterStats.MonitorQueries += st.MonitorQueries
		rep.RouterStats.Writes += st.Writes
	}
	res := make([]Result, len(tallies))
	for i, t := range tallies {
		res[i] = t.result()
	}
	// The routers serve only the harness's reads, so their counters give
	// the router's writer share (monitor queries are not counted there).
	rs := rep.RouterStats
	res[0].WriterReads = rs.ReadsWriter + rs.ReadsForced
	if total := rs.ReadsLocal + rs.ReadsRemote + res[0].WriterReads; total > 0 {
		res[0].WriterShare = float64(res[0].WriterReads) / float64(total)
	}
	rep.Router, rep.Naive, rep.Window2s = res[0], res[1], res[2]
	cfg.Logf("faults injected: %d; router stats: %+v", faults, rep.RouterStats)
	for i, name := range []string{"router", "naive", "window2s"} {
		r := res[i]
		cfg.Logf("%-8s reads %6d writes %6d violations %4d monotonic %4d writer_share %.4f p50 %.2f ms p99 %.2f ms",
			name, r.Reads, r.Writes, r.Violations, r.Monotonic, r.WriterShare, r.P50ms, r.P99ms)
	}
	return rep, nil
}

func (t *tally) result() Result {
	t.mu.Lock()
	lat := slices.Clone(t.lat)
	t.mu.Unlock()
	slices.Sort(lat)
	r := Result{
		Violations: t.violations.Load(), Reads: t.reads.Load(), WriterReads: t.writerReads.Load(),
		Writes: t.writes.Load(), Monotonic: t.monotonic.Load(),
	}
	if r.Reads > 0 {
		r.WriterShare = float64(r.WriterReads) / float64(r.Reads)
	}
	if len(lat) > 0 {
		q := func(p float64) float64 {
			return float64(lat[min(int(p*float64(len(lat))), len(lat)-1)].Microseconds()) / 1000
		}
		r.P50ms, r.P99ms = q(0.50), q(0.99)
	}
	return r
}

// runUser runs one user's requests until ctx is done.
func runUser(ctx context.Context, cfg Config, st strategy, u *user, rng *rand.Rand, t *tally) {
	var acked, seen int64
	for ctx.Err() == nil {
		region := u.home
		if rng.Float64() < cfg.HopProbability {
			region = 1 - u.home
		}
		write := rng.Float64() < cfg.WriteProbability
		got, writer, lat, err := st.request(ctx, u, region, write, acked+1)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A failed request acknowledges nothing; the next write
			// sets an absolute value again, so no state is lost.
			continue
		}
		if write {
			acked++
			t.writes.Add(1)
		}
		t.reads.Add(1)
		if writer {
			t.writerReads.Add(1)
		}
		if got < acked {
			t.violations.Add(1)
		}
		if got < seen {
			t.monotonic.Add(1)
		}
		seen = max(seen, got)
		t.mu.Lock()
		t.lat = append(t.lat, lat)
		t.mu.Unlock()
		think := cfg.MaxThink/10 + time.Duration(rng.Int64N(int64(cfg.MaxThink-cfg.MaxThink/10)+1))
		select {
		case <-ctx.Done():
		case <-time.After(think):
		}
	}
}

// setup creates the harness table with n users at value 0 and waits until
// both readers have it.
func setup(ctx context.Context, s *testserver.Stack, n int) error {
	db, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + Database,
		"CREATE TABLE IF NOT EXISTS " + Database + ".users (id INT PRIMARY KEY, v BIGINT NOT NULL)",
		"DELETE FROM " + Database + ".users",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("rywharness: setup: %w", err)
		}
	}
	for id := 1; id <= n; id++ {
		if _, err := db.ExecContext(ctx, "INSERT INTO "+Database+".users (id, v) VALUES (?, 0)", id); err != nil {
			return fmt.Errorf("rywharness: setup: %w", err)
		}
	}
	var pos string
	if err := db.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return err
	}
	if err := heal(ctx, s); err != nil {
		return err
	}
	for _, r := range []string{"r1", "r2"} {
		rdb, err := sql.Open("mysql", s.DSN(r, ""))
		if err != nil {
			return err
		}
		var res sql.NullInt64
		err = rdb.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 30)", pos).Scan(&res)
		rdb.Close()
		if err != nil || !res.Valid || res.Int64 != 0 {
			return fmt.Errorf("rywharness: %s did not catch up (%v): %v", r, res, err)
		}
	}
	return nil
}

// heal ends every fault: replicas applying, r2's link at its default delay.
func heal(ctx context.Context, s *testserver.Stack) error {
	return errors.Join(
		s.Resume(ctx, "r1"),
		s.Resume(ctx, "r2"),
		s.SetLinkDelay(ctx, "r2", 150*time.Millisecond),
	)
}

// injectFaults makes the readers lag until ctx is done: r1 stalls for 0-2 s
// at random (resting 0.5-1.5 s between stalls), r2's replication link delay
// moves between 150 and 300 ms, and r2 stalls for up to 500 ms now and
// then. It returns the number of episodes.
func injectFaults(ctx context.Context, s *testserver.Stack, cfg Config) int {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xfa17))
	n := 0
	var wg sync.WaitGroup
	var mu sync.Mutex // protects n
	count := func() { mu.Lock(); n++; mu.Unlock() }
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	// testserver.Stack is not safe for concurrent use (each control call
	// refreshes its state), so the two fault loops take turns.
	var stackMu sync.Mutex // serialises calls on s
	lag := func(name string, d time.Duration) error {
		stackMu.Lock()
		defer stackMu.Unlock()
		return s.Lag(ctx, name, d)
	}
	linkDelay := func(d time.Duration) error {
		stackMu.Lock()
		defer stackMu.Unlock()
		return s.SetLinkDelay(ctx, "r2", d)
	}
	var rngMu sync.Mutex // protects rng
	rnd := func(lo, hi time.Duration) time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	wg.Go(func() { // r1
		for sleep(rnd(500*time.Millisecond, 1500*time.Millisecond)) {
			d := rnd(0, 2*time.Second)
			if err := lag("r1", d); err != nil {
				cfg.Logf("lag r1: %v", err)
				continue
			}
			count()
			if !sleep(d) {
				return
			}
		}
	})
	wg.Go(func() { // r2
		for sleep(rnd(300*time.Millisecond, 1200*time.Millisecond)) {
			if err := linkDelay(rnd(150*time.Millisecond, 300*time.Millisecond)); err != nil {
				cfg.Logf("link delay r2: %v", err)
			}
			count()
			if rnd(0, 9) == 0 {
				d := rnd(100*time.Millisecond, 500*time.Millisecond)
				if err := lag("r2", d); err == nil {
					count()
					sleep(d)
				}
			}
		}
	})
	wg.Wait()
	return n
}

// pools are the plain database/sql pools of the two baselines.
type pools struct {
	writer  *sql.DB
	readers [2]*sql.DB // by region
}

func openPools(s *testserver.Stack) (*pools, error) {
	p := &pools{}
	var err error
	if p.writer, err = sql.Open("mysql", s.DSN("m1", Database)); err != nil {
		return nil, err
	}
	for i, name := range []string{"r1", "r2"} {
		if p.readers[i], err = sql.Open("mysql", s.DSN(name, Database)); err != nil {
			return nil, err
		}
	}
	for _, db := range []*sql.DB{p.writer, p.readers[0], p.readers[1]} {
		db.SetMaxIdleConns(16)
	}
	return p, nil
}

func (p *pools) close() {
	p.writer.Close()
	p.readers[0].Close()
	p.readers[1].Close()
}

const (
	updateQuery = "UPDATE users SET v = ? WHERE id = ?"
	selectQuery = "SELECT v FROM users WHERE id = ?"
)

func read(ctx context.Context, db *sql.DB, id int) (int64, time.Duration, error) {
	start := time.Now()
	var v int64
	err := db.QueryRowContext(ctx, selectQuery, id).Scan(&v)
	return v, time.Since(start), err
}

// naive reads from the local reader, always.
type naive struct{ p *pools }

func (n *naive) request(ctx context.Context, u *user, region int, write bool, value int64) (int64, bool, time.Duration, error) {
	if write {
		if _, err := n.p.writer.ExecContext(ctx, updateQuery, value, u.id); err != nil {
			return 0, false, 0, err
		}
	}
	v, lat, err := read(ctx, n.p.readers[region], u.id)
	return v, false, lat, err
}

// window reads from the writer within window after the user's last write.
type window struct {
	p      *pools
	window time.Duration
}

func (w *window) request(ctx context.Context, u *user, region int, write bool, value int64) (int64, bool, time.Duration, error) {
	if write {
		if _, err := w.p.writer.ExecContext(ctx, updateQuery, value, u.id); err != nil {
			return 0, false, 0, err
		}
		u.lastWrite = time.Now()
	}
	db, toWriter := w.p.readers[region], false
	if time.Since(u.lastWrite) < w.window {
		db, toWriter = w.p.writer, true
	}
	v, lat, err := read(ctx, db, u.id)
	return v, toWriter, lat, err
}

// routerStrategy runs each request through the region's router middleware,
// with the user's cookies.
type routerStrategy struct {
	routers  [2]*dbrouter.Router
	handlers [2]http.Handler
}

type routerResult struct {
	got    int64
	writer bool
	lat    time.Duration
	err    error
}

type resultKey struct{}

func newRouterStrategy(routers [2]*dbrouter.Router) *routerStrategy {
	rs := &routerStrategy{routers: routers}
	for i, rt := range routers {
		rs.handlers[i] = rt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			res := ctx.Value(resultKey{}).(*routerResult)
			id, value := r.URL.Query().Get("id"), r.URL.Query().Get("v")
			if value != "" {
				if _, err := rt.ExecContext(ctx, updateQuery, value, id); err != nil {
					res.err = err
					http.Error(w, "write failed", http.StatusInternalServerError)
					return
				}
			}
			start := time.Now()
			res.err = rt.QueryRowContext(ctx, selectQuery, id).Scan(&res.got)
			res.lat = time.Since(start)
			w.WriteHeader(http.StatusNoContent)
		}))
	}
	return rs
}

func (rs *routerStrategy) request(ctx context.Context, u *user, region int, write bool, value int64) (int64, bool, time.Duration, error) {
	url := fmt.Sprintf("/u?id=%d", u.id)
	if write {
		url += fmt.Sprintf("&v=%d", value)
	}
	res := &routerResult{}
	req := httptest.NewRequestWithContext(context.WithValue(ctx, resultKey{}, res), http.MethodPost, url, nil)
	for _, c := range u.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	rs.handlers[region].ServeHTTP(rec, req)
	// The browser's cookie jar: a Set-Cookie replaces, MaxAge < 0 deletes.
	for _, c := range rec.Result().Cookies() {
		u.cookies = slices.DeleteFunc(u.cookies, func(o *http.Cookie) bool { return o.Name == c.Name })
		if c.MaxAge >= 0 && c.Value != "" {
			u.cookies = append(u.cookies, c)
		}
	}
	// Where the read went is counted by the routers (see Run): they
	// serve no other reads.
	return res.got, false, res.lat, res.err
}
