// Package ryw is the read-your-writes correctness harness of
// dbrouter: simulated users write and then read their own data, within a
// request, across requests and across the two regions of the local stack,
// and read another user's data (monotonic reads), while the stack makes the
// readers lag. The same workload (think times drawn from an exponential
// distribution, mean 300 ms; about one request in ten writes) runs at the
// same time through five strategies:
//
//   - "router": dbrouter, its token carried between requests and regions
//     like a cookie (through the router's own HTTP middleware);
//   - "naive": writes to the writer, reads always to the local reader;
//   - "window2s": reads go to the writer for 2 s after the user's last
//     write (Rails' DatabaseSelector default), else to the local reader;
//   - "tabs": dbrouter behind real HTTP servers, each user sending two
//     requests at once (a second tab) with a cookie jar, alternating
//     regions;
//   - "local_only": dbrouter where each region's router knows only its own
//     region's reader, behind real HTTP servers, alternating regions.
//
// A violation is a read that misses the user's own acknowledged write; a
// regression is a read of another user's row that shows an older value than
// an earlier read of the same user did. Failed requests are counted as
// errors, never skipped.
//
// Each guarantee also runs, deterministically, the failing sequence of
// issue 11 (r2 stalled, so that only the token can carry what the user saw or
// wrote) through dbrouter and through a control that reproduces the earlier
// behaviour in the harness: the control must fail, so the harness proves it
// can see the failure.
//
// Used by TestHarness (with the bars asserted) and by
// internal/cmd/bench ryw (make bench-ryw).
package ryw

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
	// HopProbability is the chance that a request of the router, naive
	// and window2s strategies lands in the user's other region (default
	// 0.3); tabs and local_only alternate regions on every request.
	HopProbability float64
	// WriteProbability is the chance that a request writes (then reads);
	// the others only read (default 0.1).
	WriteProbability float64
	// MeanThink is the mean time a user waits between requests, drawn from
	// an exponential distribution (default 300 ms).
	MeanThink time.Duration
	// MinReads is the least number of reads each strategy must complete
	// for the run to mean anything (default 200); see [Report.Check].
	MinReads int64
	// Sequences is the number of times each deterministic failing sequence
	// runs, through dbrouter and through its control (default 3).
	Sequences int
	// RoundTripDuration is how long the round-trip phase counts, after a
	// warm-up of 2 s (default a third of Duration, at least 5 s).
	RoundTripDuration time.Duration
	// LimitReps is the number of reads per cell of the latency grid (see
	// [Limits]; default 6).
	LimitReps int
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
	// Reads counts completed reads of the user's own row; Errors counts
	// requests that failed (they acknowledge nothing).
	Reads  int64 `json:"reads"`
	Errors int64 `json:"errors"`

	WriterReads int64 `json:"-"`
	Writes      int64 `json:"-"`
	// Monotonic counts reads of the user's own row that returned older
	// data than an earlier read of the same user.
	Monotonic int64 `json:"-"`
	// FollowReads and Regressions count reads of another user's row and
	// those that showed an older value than an earlier one (strategies
	// through dbrouter only).
	FollowReads int64 `json:"-"`
	Regressions int64 `json:"-"`
}

// Monotonic is what the monotonic-reads check measured through dbrouter:
// reads of another user's row in the router strategy's workload and in the
// deterministic sequence, and regressions among them.
type Monotonic struct {
	Reads       int64 `json:"reads"`
	Regressions int64 `json:"regressions"`
}

// Section is what a dbrouter configuration measured: reads of the user's
// own row, violations among them, failed requests, and (local_only) reads
// of another user's row that showed an older value than an earlier one.
type Section struct {
	Reads       int64 `json:"reads"`
	Violations  int64 `json:"violations"`
	Errors      int64 `json:"errors"`
	Regressions int64 `json:"regressions"`
}

// MonotonicControl is the monotonic sequence's result through the control
// (the reader's known position recorded after a read, the token dropped
// once every reader is known to have it): it must show regressions.
type MonotonicControl struct {
	Runs        int   `json:"runs"`
	Regressions int64 `json:"regressions"`
}

// Control is a failing sequence's result through its control: it must show
// violations.
type Control struct {
	Runs       int   `json:"runs"`
	Violations int64 `json:"violations"`
}

// Report is the result of a run, per strategy.
type Report struct {
	Router           Result           `json:"router"`
	Naive            Result           `json:"naive"`
	Window2s         Result           `json:"window2s"`
	Monotonic        Monotonic        `json:"monotonic"`
	MonotonicControl MonotonicControl `json:"monotonic_control"`
	Tabs             Section          `json:"tabs"`
	TabsControl      Control          `json:"tabs_control"`
	LocalOnly        Section          `json:"local_only"`
	LocalOnlyControl Control          `json:"local_only_control"`
	// ExtraRoundTripsPerRead and ExtraRoundTripsPerWrite are the
	// statements the readers (writer) received beyond the workload's, per
	// read (write), in the steady state of the workload's mix; RoundTrips
	// has the counts.
	ExtraRoundTripsPerRead  float64    `json:"extra_round_trips_per_read"`
	ExtraRoundTripsPerWrite float64    `json:"extra_round_trips_per_write"`
	RoundTrips              RoundTrips `json:"round_trips"`
	// ExtraRoundTripsPerInsert is the statements the writer received
	// beyond the workload's per scoped INSERT that leaves the
	// AUTO_INCREMENT id to the server (the workload's writes are UPDATEs):
	// about 0 once the router has learned the table. InsertRoundTrips has
	// the counts, with scoped UPDATEs counted the same way and INSERTs
	// with explicit ids (a second round trip each) as the control.
	ExtraRoundTripsPerInsert float64          `json:"extra_round_trips_per_insert"`
	InsertRoundTrips         InsertRoundTrips `json:"insert_round_trips"`
	// LimitRatioP50 and LimitRatioP90 are the quantiles of read latency
	// over its physical limit across the latency grid, where the limit's
	// base is a plain read under the same conditions (see [Limits]);
	// LimitGrid has the grid.
	LimitRatioP50 float64 `json:"limit_ratio_p50"`
	LimitRatioP90 float64 `json:"limit_ratio_p90"`
	// LimitRatioIdleP50 and LimitRatioIdleP90 are the same (their name
	// until the base above became the main one).
	LimitRatioIdleP50 float64 `json:"limit_ratio_idle_p50"`
	LimitRatioIdleP90 float64 `json:"limit_ratio_idle_p90"`
	// LimitRatioHotP50 and LimitRatioHotP90 take a back-to-back read as the
	// base everywhere, t ≥ L included (see [Limits]).
	LimitRatioHotP50 float64 `json:"limit_ratio_hot_p50"`
	LimitRatioHotP90 float64 `json:"limit_ratio_hot_p90"`
	LimitGrid        Limits  `json:"limit_grid"`
	// Faults counts the lag episodes the run injected.
	Faults int `json:"-"`
	// RouterStats are the two routers' counters added up.
	RouterStats dbrouter.Stats `json:"-"`
	// minReads is Config.MinReads, for Check; minLimitReads the grid's
	// cells times Config.LimitReps.
	minReads, minLimitReads int64
}

// Check reports why the run does not mean anything, if it does not: a
// strategy whose requests failed more than 1 % of the time or that
// completed fewer than Config.MinReads reads, or a control that saw no
// failure (the harness would then be blind to it). It does not judge
// dbrouter's own figures: TestHarness does.
func (r Report) Check() error {
	var errs []error
	for _, st := range []struct {
		name          string
		reads, errors int64
	}{
		{"router", r.Router.Reads, r.Router.Errors},
		{"naive", r.Naive.Reads, r.Naive.Errors},
		{"window2s", r.Window2s.Reads, r.Window2s.Errors},
		{"tabs", r.Tabs.Reads, r.Tabs.Errors},
		{"local_only", r.LocalOnly.Reads, r.LocalOnly.Errors},
	} {
		if st.reads < r.minReads {
			errs = append(errs, fmt.Errorf("%s: %d reads, fewer than %d", st.name, st.reads, r.minReads))
		}
		if n := st.reads + st.errors; n > 0 && float64(st.errors) > 0.01*float64(n) {
			errs = append(errs, fmt.Errorf("%s: %d of %d requests failed (over 1 %%)", st.name, st.errors, n))
		}
	}
	if r.Monotonic.Reads < r.minReads {
		errs = append(errs, fmt.Errorf("monotonic: %d reads, fewer than %d", r.Monotonic.Reads, r.minReads))
	}
	if r.RoundTrips.Reads < r.minReads {
		errs = append(errs, fmt.Errorf("round trips: %d reads, fewer than %d", r.RoundTrips.Reads, r.minReads))
	}
	if g := r.LimitGrid; g.Reads < r.minLimitReads {
		errs = append(errs, fmt.Errorf("limit grid: %d reads, fewer than %d", g.Reads, r.minLimitReads))
	} else if float64(g.Errors) > 0.01*float64(g.Reads+g.Errors) {
		errs = append(errs, fmt.Errorf("limit grid: %d of %d samples failed (over 1 %%)", g.Errors, g.Reads+g.Errors))
	}
	if r.MonotonicControl.Regressions == 0 {
		errs = append(errs, errors.New("monotonic_control: no regression; the harness cannot see one"))
	}
	if r.TabsControl.Violations == 0 {
		errs = append(errs, errors.New("tabs_control: no violation; the harness cannot see one"))
	}
	if r.LocalOnlyControl.Violations == 0 {
		errs = append(errs, errors.New("local_only_control: no violation; the harness cannot see one"))
	}
	if r.Naive.Violations == 0 {
		errs = append(errs, errors.New("naive: no violation; the harness cannot see stale reads"))
	}
	return errors.Join(errs...)
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
		c.WriteProbability = 0.1
	}
	if c.MeanThink <= 0 {
		c.MeanThink = 300 * time.Millisecond
	}
	if c.MinReads <= 0 {
		c.MinReads = 200
	}
	if c.Sequences <= 0 {
		c.Sequences = 3
	}
	if c.RoundTripDuration <= 0 {
		c.RoundTripDuration = max(c.Duration/3, 5*time.Second)
	}
	if c.LimitReps <= 0 {
		c.LimitReps = 6
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
	// value, then a read of the user's value, then (if the strategy goes
	// through dbrouter) a read of the value of the user it follows.
	request(ctx context.Context, u *user, region int, write bool, value int64) (outcome, error)
}

// outcome is what one request read.
type outcome struct {
	got    int64         // the user's own value
	follow int64         // the followed user's value, or -1 if not read
	writer bool          // the read went to the writer
	lat    time.Duration // latency of the read of the user's own value
}

// user is one simulated user; its jar is what its browser would keep.
type user struct {
	id        int
	follow    int // the user whose row this user also reads
	home      int
	cookies   []*http.Cookie // router
	client    *http.Client   // local_only: a browser with a cookie jar
	lastWrite time.Time      // window2s (a cookie too, in Rails)
}

type tally struct {
	mu                         sync.Mutex // protects lat
	lat                        []time.Duration
	reads, writerReads, writes atomic.Int64
	violations, monotonic      atomic.Int64
	errors                     atomic.Int64
	followReads, regressions   atomic.Int64
}

// think returns a user's think time: exponential with mean m, at most 10 m.
func think(rng *rand.Rand, m time.Duration) time.Duration {
	return min(time.Duration(rng.ExpFloat64()*float64(m)), 10*m)
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Run runs the workload against the stack and returns the report. The
// deterministic sequences run first, then the random workload with faults.
func Run(ctx context.Context, s *testserver.Stack, cfg Config) (Report, error) {
	cfg.defaults()
	const nStrategies = 5
	seqBase := nStrategies*cfg.Users + 1
	rtBase := seqBase + 4*cfg.Sequences
	limitID := rtBase + cfg.Users
	if err := setup(ctx, s, limitID); err != nil {
		return Report{}, err
	}

	open := func(region string, localOnly bool) (*dbrouter.Router, error) {
		// The other region's reader is reached through the stack's
		// client route: a real cross-region round trip.
		readers := []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSNFrom(region, "r1", Database), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSNFrom(region, "r2", Database), Region: testserver.SecondaryRegion},
		}
		if localOnly {
			readers = slices.DeleteFunc(readers, func(e dbrouter.Endpoint) bool { return e.Region != region })
		}
		return dbrouter.Open(dbrouter.Config{
			Region:    region,
			Writer:    dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", Database)},
			Readers:   readers,
			TokenKeys: []dbrouter.TokenKey{tokenKey},
		})
	}
	// routers serve the router strategy only (its writer share comes from
	// their counters); others serve tabs and the sequences; locals know
	// only their own region's reader.
	var routers, others, locals [2]*dbrouter.Router
	for i, region := range regions {
		for _, x := range []struct {
			rt        **dbrouter.Router
			localOnly bool
		}{{&routers[i], false}, {&others[i], false}, {&locals[i], true}} {
			rt, err := open(region, x.localOnly)
			if err != nil {
				return Report{}, err
			}
			defer rt.Close()
			*x.rt = rt
		}
	}
	pools, err := openPools(s)
	if err != nil {
		return Report{}, err
	}
	defer pools.close()
	gates := &gates{m: map[string]*gate{}}
	srv := newServers(others, locals, pools, gates)
	defer srv.close()

	rep := Report{minReads: cfg.MinReads, minLimitReads: int64(cfg.LimitReps * 12)}
	if err := runSequences(ctx, s, cfg, seqBase, pools, others, srv, gates, &rep); err != nil {
		return Report{}, err
	}

	strategies := []strategy{
		newRouterStrategy(routers),
		&naive{p: pools},
		&window{p: pools, window: 2 * time.Second},
		nil, // tabs: see runTabsUser
		&httpStrategy{urls: srv.localOnly, srv: srv},
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
			u := &user{id: si*cfg.Users + i + 1, follow: si*cfg.Users + (i+1)%cfg.Users + 1, home: i % 2}
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(u.id)))
			switch {
			case st == nil:
				wg.Go(func() { runTabsUser(runCtx, cfg, srv, u, rng, tallies[si]) })
			default:
				alternate := si == 4
				wg.Go(func() { runUser(runCtx, cfg, st, u, alternate, rng, tallies[si]) })
			}
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
	// The round-trip phase counts statements on the servers: nothing
	// else may use them.
	for _, rt := range slices.Concat(routers[:], others[:], locals[:]) {
		rt.Close()
	}
	rtrips, err := measureRoundTrips(ctx, s, cfg, func(region string) (*dbrouter.Router, error) { return open(region, false) },
		cfg.Users, rtBase, 2*time.Second, cfg.RoundTripDuration)
	if err != nil {
		return Report{}, fmt.Errorf("rywharness: round trips: %w", err)
	}
	rep.RoundTrips = rtrips
	if rtrips.Reads > 0 {
		rep.ExtraRoundTripsPerRead = float64(rtrips.ReaderExtra) / float64(rtrips.Reads)
	}
	if rtrips.Writes > 0 {
		rep.ExtraRoundTripsPerWrite = float64(rtrips.WriterExtra) / float64(rtrips.Writes)
	}
	cfg.Logf("round trips: %+v", rtrips)
	ins, err := measureInsertRoundTrips(ctx, s, func() (*dbrouter.Router, error) { return open(regions[0], false) }, 200)
	if err != nil {
		return Report{}, fmt.Errorf("rywharness: insert round trips: %w", err)
	}
	rep.InsertRoundTrips = ins
	rep.ExtraRoundTripsPerInsert = float64(ins.WriterExtra) / float64(ins.Inserts)
	cfg.Logf("insert round trips: %+v", ins)

	lim, err := measureLimits(ctx, s, pools, limitID, cfg.LimitReps, cfg.Logf)
	if err != nil {
		return Report{}, fmt.Errorf("rywharness: limit grid: %w", err)
	}
	rep.LimitGrid, rep.LimitRatioP50, rep.LimitRatioP90 = lim, lim.RatioP50, lim.RatioP90
	rep.LimitRatioIdleP50, rep.LimitRatioIdleP90 = lim.RatioIdleP50, lim.RatioIdleP90
	rep.LimitRatioHotP50, rep.LimitRatioHotP90 = lim.RatioHotP50, lim.RatioHotP90
	cfg.Logf("limit grid: ratio p50 %.2f p90 %.2f over %d reads (hot base %.2f ms, writer RTT %.2f ms); with the hot base at t ≥ L too p50 %.2f p90 %.2f; %d violations, %d errors",
		lim.RatioP50, lim.RatioP90, lim.Reads, lim.BaseMs, lim.WriterRTTms, lim.RatioHotP50, lim.RatioHotP90, lim.Violations, lim.Errors)

	rep.Faults = faults
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
		rep.RouterStats.GuardTimeouts += st.GuardTimeouts
		rep.RouterStats.GuardRetriesRemote += st.GuardRetriesRemote
	}
	res := make([]Result, len(tallies))
	for i, t := range tallies {
		res[i] = t.result()
	}
	// The routers serve only the router strategy's reads, so their
	// counters give its writer share (monitor queries are not counted
	// there).
	rs := rep.RouterStats
	res[0].WriterReads = rs.ReadsWriter + rs.ReadsForced
	if total := rs.ReadsLocal + rs.ReadsRemote + res[0].WriterReads; total > 0 {
		res[0].WriterShare = float64(res[0].WriterReads) / float64(total)
	}
	rep.Router, rep.Naive, rep.Window2s = res[0], res[1], res[2]
	rep.Monotonic.Reads += res[0].FollowReads
	rep.Monotonic.Regressions += res[0].Regressions
	rep.Tabs = Section{Reads: res[3].Reads, Violations: res[3].Violations, Errors: res[3].Errors}
	rep.LocalOnly.Reads += res[4].Reads
	rep.LocalOnly.Violations += res[4].Violations
	rep.LocalOnly.Errors += res[4].Errors
	rep.LocalOnly.Regressions += res[4].Regressions
	cfg.Logf("faults injected: %d; router stats: %+v", faults, rep.RouterStats)
	for i, name := range []string{"router", "naive", "window2s", "tabs", "local_only"} {
		r := res[i]
		cfg.Logf("%-10s reads %6d errors %3d writes %6d violations %4d monotonic %4d follow reads %6d regressions %4d writer_share %.4f p50 %.2f ms p99 %.2f ms",
			name, r.Reads, r.Errors, r.Writes, r.Violations, r.Monotonic, r.FollowReads, r.Regressions, r.WriterShare, r.P50ms, r.P99ms)
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
		Writes: t.writes.Load(), Monotonic: t.monotonic.Load(), Errors: t.errors.Load(),
		FollowReads: t.followReads.Load(), Regressions: t.regressions.Load(),
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

// runUser runs one user's requests until ctx is done: in the user's home
// region or, with probability HopProbability, the other one (with
// alternate, the regions take turns).
func runUser(ctx context.Context, cfg Config, st strategy, u *user, alternate bool, rng *rand.Rand, t *tally) {
	var acked, seen, seenFollow int64
	region := u.home
	for ctx.Err() == nil {
		if alternate {
			region = 1 - region
		} else {
			region = u.home
			if rng.Float64() < cfg.HopProbability {
				region = 1 - u.home
			}
		}
		write := rng.Float64() < cfg.WriteProbability
		o, err := st.request(ctx, u, region, write, acked+1)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A failed request acknowledges nothing; the next write
			// sets an absolute value again, so no state is lost.
			t.errors.Add(1)
			sleep(ctx, think(rng, cfg.MeanThink))
			continue
		}
		if write {
			acked++
			t.writes.Add(1)
		}
		t.reads.Add(1)
		if o.writer {
			t.writerReads.Add(1)
		}
		if o.got < acked {
			t.violations.Add(1)
		}
		if o.got < seen {
			t.monotonic.Add(1)
		}
		seen = max(seen, o.got)
		if o.follow >= 0 {
			t.followReads.Add(1)
			if o.follow < seenFollow {
				t.regressions.Add(1)
			}
			seenFollow = max(seenFollow, o.follow)
		}
		t.mu.Lock()
		t.lat = append(t.lat, o.lat)
		t.mu.Unlock()
		sleep(ctx, think(rng, cfg.MeanThink))
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

func (n *naive) request(ctx context.Context, u *user, region int, write bool, value int64) (outcome, error) {
	if write {
		if _, err := n.p.writer.ExecContext(ctx, updateQuery, value, u.id); err != nil {
			return outcome{}, err
		}
	}
	v, lat, err := read(ctx, n.p.readers[region], u.id)
	return outcome{got: v, follow: -1, lat: lat}, err
}

// window reads from the writer within window after the user's last write.
type window struct {
	p      *pools
	window time.Duration
}

func (w *window) request(ctx context.Context, u *user, region int, write bool, value int64) (outcome, error) {
	if write {
		if _, err := w.p.writer.ExecContext(ctx, updateQuery, value, u.id); err != nil {
			return outcome{}, err
		}
		u.lastWrite = time.Now()
	}
	db, toWriter := w.p.readers[region], false
	if time.Since(u.lastWrite) < w.window {
		db, toWriter = w.p.writer, true
	}
	v, lat, err := read(ctx, db, u.id)
	return outcome{got: v, follow: -1, writer: toWriter, lat: lat}, err
}

// routerStrategy runs each request through the region's router middleware,
// with the user's cookies.
type routerStrategy struct {
	routers  [2]*dbrouter.Router
	handlers [2]http.Handler
}

type routerResult struct {
	got, follow int64
	lat         time.Duration
	err         error
}

type resultKey struct{}

func newRouterStrategy(routers [2]*dbrouter.Router) *routerStrategy {
	rs := &routerStrategy{routers: routers}
	for i, rt := range routers {
		rs.handlers[i] = rt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			res := ctx.Value(resultKey{}).(*routerResult)
			q := r.URL.Query()
			id, value := q.Get("id"), q.Get("v")
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
			if res.err == nil {
				res.err = rt.QueryRowContext(ctx, selectQuery, q.Get("f")).Scan(&res.follow)
			}
			w.WriteHeader(http.StatusNoContent)
		}))
	}
	return rs
}

func (rs *routerStrategy) request(ctx context.Context, u *user, region int, write bool, value int64) (outcome, error) {
	url := fmt.Sprintf("/u?id=%d&f=%d", u.id, u.follow)
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
	// Where the reads went is counted by the routers (see Run): they
	// serve no other reads.
	return outcome{got: res.got, follow: res.follow, lat: res.lat}, res.err
}
