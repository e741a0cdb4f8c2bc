package ryw

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/paired"
	"github.com/regiondb/regiondb/internal/testserver"
)

// OverheadConfig configures MeasureOverhead. Zero fields take the defaults.
type OverheadConfig struct {
	// Rounds is the number of repeated runs, each with fresh pools
	// (default 7).
	Rounds int
	// Pairs is the number of interleaved (raw, router) batch pairs per
	// round (default 61).
	Pairs int
	// Batch is the number of queries per side and pair (default 200).
	Batch int
	// Logf, if not nil, receives progress lines.
	Logf func(format string, args ...any)
}

// Overhead is the router's cost over a raw *sql.DB on the same reader.
type Overhead struct {
	// NsRatio is router ns/op over raw ns/op: the median over the rounds
	// of each round's median over its pairs.
	NsRatio float64 `json:"ns_ratio"`
	// ExtraAllocs is router allocs/op minus raw allocs/op (each the
	// least over many small batches, so that allocations of background
	// goroutines and reconnections do not count).
	ExtraAllocs float64 `json:"extra_allocs"`

	// DBNsRatio and DBExtraAllocs compare the router's routing *sql.DB
	// (Router.DB) with the raw *sql.DB the same way: the same query, the
	// same scope, paired with raw queries in batches of their own.
	DBNsRatio     float64 `json:"db_ns_ratio"`
	DBExtraAllocs float64 `json:"db_extra_allocs"`
	// PlainExtraAllocs is the same for a read outside any read-your-writes
	// scope through the Router (no guard, no sample in its text), counted
	// the same way.
	PlainExtraAllocs float64 `json:"plain_extra_allocs"`
	// SampledNsRatio and SampledExtraAllocs compare the same scoped
	// Router read with a raw *sql.DB (multiStatements and
	// interpolateParams on) that sends the text the router sends for it:
	// the statement and the served-position sample (see "One round trip
	// per statement" in the dbrouter documentation), reading both result
	// sets. They are the router's own cost; NsRatio minus SampledNsRatio
	// is roughly what the sample's second statement costs the server and
	// the driver.
	SampledNsRatio     float64 `json:"sampled_ns_ratio"`
	SampledExtraAllocs float64 `json:"sampled_extra_allocs"`
	// Conns are the peak physical connections per role of the routing
	// *sql.DB and of a hand-split pair under concurrent requests (see
	// MeasureConns); nil when not measured.
	Conns *Conns `json:"conns,omitempty"`

	Rounds                  []float64 `json:"-"` // each round's ratio
	DBRounds                []float64 `json:"-"`
	SampledRounds           []float64 `json:"-"`
	SampledRawAllocs        float64   `json:"-"`
	SampledAllocs           float64   `json:"-"`
	RawNs, RouterNs, DBNs   float64   `json:"-"` // medians over all pairs
	RawAllocs, RouterAllocs float64   `json:"-"`
	DBRawAllocs, DBAllocs   float64   `json:"-"`
	PlainRawAllocs          float64   `json:"-"`
	PlainAllocs             float64   `json:"-"`
}

// MeasureOverhead runs a primary-key SELECT on the local reader r1 through a
// raw *sql.DB and through a dbrouter.Router (its read-your-writes scope
// holding a position r1 has applied, as in a request after a write), the
// two interleaved query by query, and compares them.
//
// Method: a loopback query's time depends on the server thread (and CPU)
// its connection got: two raw *sql.DB on the same server differed by up to
// 30 % when each kept one connection for a whole run. So each round opens
// fresh pools whose connections live 50 ms (the reconnecting query is an
// outlier the medians drop), and the result is the median of the rounds.
// Within a pair, the j-th raw query and the j-th router query run back to
// back, in alternating order, each timed, so bursts of load from other
// processes hit both sides alike; the pair's ratio is the median router
// query time over the median raw query time.
func MeasureOverhead(ctx context.Context, s *testserver.Stack, cfg OverheadConfig) (Overhead, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 7
	}
	if cfg.Pairs <= 0 {
		cfg.Pairs = 61
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 200
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := setup(ctx, s, 1); err != nil {
		return Overhead{}, err
	}
	o := Overhead{RawAllocs: 1e9, RouterAllocs: 1e9, DBRawAllocs: 1e9, DBAllocs: 1e9, PlainRawAllocs: 1e9, PlainAllocs: 1e9,
		SampledRawAllocs: 1e9, SampledAllocs: 1e9}
	var rawNs, rtNs, dbNs []float64
	for round := range cfg.Rounds {
		r, d, sr, err := overheadRound(ctx, s, cfg, &o, &rawNs, &rtNs, &dbNs)
		if err != nil {
			return Overhead{}, err
		}
		cfg.Logf("round %d: router ratio %.4f, routing *sql.DB ratio %.4f, router over the same text sent raw %.4f", round+1, r, d, sr)
		o.Rounds = append(o.Rounds, r)
		o.DBRounds = append(o.DBRounds, d)
		o.SampledRounds = append(o.SampledRounds, sr)
	}
	o.NsRatio = paired.Median(o.Rounds)
	o.ExtraAllocs = o.RouterAllocs - o.RawAllocs
	o.DBNsRatio = paired.Median(o.DBRounds)
	o.DBExtraAllocs = o.DBAllocs - o.DBRawAllocs
	o.PlainExtraAllocs = o.PlainAllocs - o.PlainRawAllocs
	o.SampledNsRatio = paired.Median(o.SampledRounds)
	o.SampledExtraAllocs = o.SampledAllocs - o.SampledRawAllocs
	o.RawNs, o.RouterNs, o.DBNs = paired.Median(rawNs), paired.Median(rtNs), paired.Median(dbNs)
	cfg.Logf("read outside a scope: router %.2f allocs/op, raw %.2f", o.PlainAllocs, o.PlainRawAllocs)
	cfg.Logf("scoped read vs the same text sent raw: router %.2f allocs/op, raw %.2f; median ratio %.4f", o.SampledAllocs, o.SampledRawAllocs, o.SampledNsRatio)
	cfg.Logf("raw %.0f ns/op %.2f allocs/op; router %.0f ns/op %.2f allocs/op; routing *sql.DB %.0f ns/op %.2f allocs/op (raw %.2f); median ratios %.4f, %.4f over %d rounds of %d pairs of %d",
		o.RawNs, o.RawAllocs, o.RouterNs, o.RouterAllocs, o.DBNs, o.DBAllocs, o.DBRawAllocs, o.NsRatio, o.DBNsRatio, cfg.Rounds, cfg.Pairs, cfg.Batch)
	return o, nil
}

func overheadRound(ctx context.Context, s *testserver.Stack, cfg OverheadConfig, o *Overhead, rawNs, rtNs, dbNs *[]float64) (float64, float64, float64, error) {
	const rotate = 50 * time.Millisecond
	// The raw pool sends statements as the router's own pools do
	// (interpolateParams, see Config.DisableCombinedStatements), so that
	// the ratio is the routing's cost, not a prepared statement's second
	// round trip.
	raw, err := sql.Open("mysql", s.DSN("r1", Database)+"&interpolateParams=true")
	if err != nil {
		return 0, 0, 0, err
	}
	defer raw.Close()
	raw.SetConnMaxLifetime(rotate)
	// The same, with multiStatements as on the router's pools, to send
	// the text the router sends for a scoped read.
	rawMulti, err := sql.Open("mysql", s.DSN("r1", Database)+"&interpolateParams=true&multiStatements=true")
	if err != nil {
		return 0, 0, 0, err
	}
	defer rawMulti.Close()
	rawMulti.SetConnMaxLifetime(rotate)
	rt, err := dbrouter.Open(dbrouter.Config{
		Region:     testserver.PrimaryRegion,
		Writer:     dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", Database)},
		Readers:    []dbrouter.Endpoint{{Name: "r1", DSN: s.DSN("r1", Database), Region: testserver.PrimaryRegion}},
		TokenKeys:  []dbrouter.TokenKey{tokenKey},
		ReaderPool: dbrouter.PoolConfig{ConnMaxLifetime: rotate},
	})
	if err != nil {
		return 0, 0, 0, err
	}
	defer rt.Close()

	// A scope after a write: the write's position, applied by r1.
	wctx := dbrouter.NewContext(ctx)
	if _, err := rt.ExecContext(wctx, "UPDATE users SET v = v + 1 WHERE id = 1"); err != nil {
		return 0, 0, 0, err
	}
	rctx, err := rt.WithToken(ctx, rt.Token(wctx))
	if err != nil {
		return 0, 0, 0, err
	}
	var v int64
	deadline := time.Now().Add(10 * time.Second)
	for rt.Stats().ReadsLocal == 0 { // until r1 is known to have the write
		if err := rt.QueryRowContext(rctx, selectQuery, 1).Scan(&v); err != nil {
			return 0, 0, 0, err
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, fmt.Errorf("rywharness: r1 never caught up")
		}
	}

	runRaw := func() error { return raw.QueryRowContext(ctx, selectQuery, 1).Scan(&v) }
	runRouter := func() error { return rt.QueryRowContext(rctx, selectQuery, 1).Scan(&v) }
	rdb := rt.DB()
	runDB := func() error { return rdb.QueryRowContext(rctx, selectQuery, 1).Scan(&v) }
	// The router's text for a scoped read on a reader known to have the
	// scope's position: the statement, then the MariaDB dialect's sample
	// (Row.Scan closes the rows; the driver reads the sample's result set).
	runRawSampled := func() error { return rawMulti.QueryRowContext(ctx, selectQuery+sampledSuffix, 1).Scan(&v) }
	for range 50 { // warm the pools
		for _, f := range []func() error{runRaw, runRouter, runDB, runRawSampled} {
			if err := f(); err != nil {
				return 0, 0, 0, err
			}
		}
	}
	runPlain := func() error { return rt.QueryRowContext(ctx, selectQuery, 1).Scan(&v) }
	if err := runPlain(); err != nil {
		return 0, 0, 0, err
	}
	for range 20 { // allocations only: a few small batches each
		ra, err := countAllocs(runRaw)
		if err != nil {
			return 0, 0, 0, err
		}
		pa, err := countAllocs(runPlain)
		if err != nil {
			return 0, 0, 0, err
		}
		o.PlainRawAllocs, o.PlainAllocs = min(o.PlainRawAllocs, ra), min(o.PlainAllocs, pa)
	}
	before := rt.Stats()
	rtRatio, err := pairs(cfg, runRaw, runRouter, rawNs, rtNs, &o.RawAllocs, &o.RouterAllocs)
	if err != nil {
		return 0, 0, 0, err
	}
	dbRatio, err := pairs(cfg, runRaw, runDB, nil, dbNs, &o.DBRawAllocs, &o.DBAllocs)
	if err != nil {
		return 0, 0, 0, err
	}
	sampledRatio, err := pairs(cfg, runRawSampled, runRouter, nil, nil, &o.SampledRawAllocs, &o.SampledAllocs)
	if err != nil {
		return 0, 0, 0, err
	}
	after := rt.Stats()
	if after.ReadsWriter != before.ReadsWriter || after.Waits != before.Waits || after.ReadsRemote != before.ReadsRemote {
		return 0, 0, 0, fmt.Errorf("rywharness: router reads left r1 during the measurement: %+v", after)
	}
	return rtRatio, dbRatio, sampledRatio, nil
}

// sampledSuffix is what dbrouter appends to a read of a scope on a
// MariaDB reader whose pool combines statements (readconn.go).
const sampledSuffix = "\n;\nSELECT @@global.gtid_current_pos"

// pairs runs cfg.Pairs interleaved batches of raw and cand queries, the
// j-th of each back to back in alternating order, and returns the median
// over the pairs of median cand time over median raw time. It appends each
// pair's medians to rawNs and candNs (when not nil) and lowers rawAllocs
// and candAllocs to the least allocs/op seen.
func pairs(cfg OverheadConfig, runRaw, runCand func() error, rawNs, candNs *[]float64, rawAllocs, candAllocs *float64) (float64, error) {
	allocs := func(f func() error) (float64, error) {
		const n = 20
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range n {
			if err := f(); err != nil {
				return 0, err
			}
		}
		runtime.ReadMemStats(&m1)
		return float64(m1.Mallocs-m0.Mallocs) / n, nil
	}
	var ratios []float64
	for i := range cfg.Pairs {
		ma, mb, err := paired.Batch(cfg.Batch, i, runRaw, runCand)
		if err != nil {
			return 0, err
		}
		ratios = append(ratios, mb/ma)
		if rawNs != nil {
			*rawNs = append(*rawNs, ma)
		}
		if candNs != nil {
			*candNs = append(*candNs, mb)
		}
		aa, err := allocs(runRaw)
		if err != nil {
			return 0, err
		}
		ba, err := allocs(runCand)
		if err != nil {
			return 0, err
		}
		*rawAllocs, *candAllocs = min(*rawAllocs, aa), min(*candAllocs, ba)
	}
	return paired.Median(ratios), nil
}

// countAllocs returns the allocations per call of f over 20 calls.
func countAllocs(f func() error) (float64, error) {
	const n = 20
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		if err := f(); err != nil {
			return 0, err
		}
	}
	runtime.ReadMemStats(&m1)
	return float64(m1.Mallocs-m0.Mallocs) / n, nil
}
