package ryw

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Limits is how close dbrouter's reads after a write come to the physical
// limit, over a grid of reader lags L and read times t after the write
// (issue 11): a router in us-east-1 whose writer (m1) and other-region
// reader (r1) are reached through the stack's client routes (a real
// cross-region round trip), and whose local reader r2 applies each write L
// after it was acknowledged (the stack's lag control), or not at all
// (stalled). The limit of a read is
//
//	base + max(0, min(L − t, RTT))
//
// where base is a plain read on the local reader and RTT the extra cost of
// the same read on the writer through its route (both measured in the same
// run): no policy can answer sooner than the local reader has the write, or
// than a fresh endpoint answers. The ratio is the read's latency over its
// limit. The grid's connections interpolate query parameters
// (interpolateParams=true), so that a statement costs one round trip, as
// the limit assumes (prepared, it costs two).
//
// A grid read comes after the sample's idle time (at t ≥ L, 50 ms since r2
// resumed), when a plain read costs several times more on this machine than
// back to back (0.3–0.5 ms against 0.06–0.13: the client's and the server's
// threads wake up). So at t ≥ L, where the limit is base alone, base is a
// plain read on the local reader made on the same timeline (at t, after the
// same write, stall and resume); elsewhere it is the hot base, back-to-back
// reads, a negligible part of the limit there. The hot ratios take the hot
// base everywhere: at t ≥ L they measure the wake-up, not the router (no
// read after 50 ms of idleness comes near a back-to-back one), and a
// quarter of the grid's reads are there, so their 90th percentile is one
// of those whatever the router does. Until stop 5 of issue 11 RatioP50 and
// RatioP90 were the hot ratios, and the same-timeline ones were named
// "idle" only; RatioIdleP50 and RatioIdleP90 now equal them.
type Limits struct {
	RatioP50 float64 `json:"ratio_p50"`
	RatioP90 float64 `json:"ratio_p90"`
	// RatioIdleP50 and RatioIdleP90 are RatioP50 and RatioP90 (the same
	// quantiles, under their earlier name).
	RatioIdleP50 float64 `json:"ratio_idle_p50"`
	RatioIdleP90 float64 `json:"ratio_idle_p90"`
	// RatioHotP50 and RatioHotP90 are the quantiles of the ratios with the
	// hot base in every cell.
	RatioHotP50 float64 `json:"ratio_hot_p50"`
	RatioHotP90 float64 `json:"ratio_hot_p90"`
	// BaseMs is the median plain read on the local reader; WriterRTTms the
	// median plain read on the writer through its route, minus BaseMs.
	BaseMs      float64 `json:"base_ms"`
	WriterRTTms float64 `json:"writer_rtt_ms"`
	Reads       int64   `json:"reads"`
	// Violations are grid reads that missed their own write; Errors failed
	// writes or reads.
	Violations int64 `json:"violations"`
	Errors     int64 `json:"errors"`
	// Cells are by "L=<lag>,t=<after>" (lag "stalled" for a reader that
	// applies nothing while the read runs).
	Cells map[string]LimitCell `json:"cells"`
}

// LimitCell is one cell of the grid: its limit, the median latency, and the
// median and 90th percentile of the ratios of its reads over the hot base
// (RatioP50, RatioP90; the ratios of [Limits] are the idle ones).
type LimitCell struct {
	LimitMs  float64 `json:"limit_ms"`
	P50ms    float64 `json:"p50_ms"`
	RatioP50 float64 `json:"ratio_p50"`
	RatioP90 float64 `json:"ratio_p90"`
	Reads    int     `json:"reads"`
	// WriterReads are the cell's reads the router sent to the writer.
	WriterReads int64 `json:"writer_reads"`
	// BaseIdleMs (t ≥ L only) is the median plain read on the local reader
	// on the cell's timeline; RatioIdleP50 and RatioIdleP90 are the
	// ratios over the limit with that base (the same as RatioP50 and
	// RatioP90 in the other cells).
	BaseIdleMs   float64 `json:"base_idle_ms,omitempty"`
	RatioIdleP50 float64 `json:"ratio_idle_p50"`
	RatioIdleP90 float64 `json:"ratio_idle_p90"`
}

// stalledLag marks the grid's stalled row.
const stalledLag = -1

// limitGrid is the grid: each lag with its read times after the write.
func limitGrid() []struct {
	lag    time.Duration
	afters []time.Duration
} {
	var g []struct {
		lag    time.Duration
		afters []time.Duration
	}
	for _, l := range []time.Duration{150 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second} {
		g = append(g, struct {
			lag    time.Duration
			afters []time.Duration
		}{l, []time.Duration{0, l / 2, l + 50*time.Millisecond}})
	}
	// A stalled reader: no L, so the read times are those of the 2 s row.
	g = append(g, struct {
		lag    time.Duration
		afters []time.Duration
	}{stalledLag, []time.Duration{0, time.Second, 2050 * time.Millisecond}})
	return g
}

func cellName(lag, after time.Duration) string {
	l := "stalled"
	if lag != stalledLag {
		l = lag.String()
	}
	return fmt.Sprintf("L=%s,t=%s", l, after)
}

// quantile returns the p-quantile of sorted xs (0 if empty).
func quantile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[min(int(p*float64(len(xs))), len(xs)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// plainReads returns the median of n plain reads of row id on db (after one
// that warms the connection).
func plainReads(ctx context.Context, db *sql.DB, id, n int) (time.Duration, error) {
	var lat []time.Duration
	for i := range n + 1 {
		_, d, err := read(ctx, db, id)
		if err != nil {
			return 0, err
		}
		if i > 0 {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	return lat[len(lat)/2], nil
}

// measureLimits runs the grid reps times per cell (plus two warm-up samples
// per lag, not counted, from which the router learns the lag) on row id.
// Nothing else may fault the readers meanwhile.
func measureLimits(ctx context.Context, s *testserver.Stack, p *pools, id, reps int, logf func(string, ...any)) (Limits, error) {
	from := testserver.SecondaryRegion
	const oneTrip = "&interpolateParams=true"
	rt, err := dbrouter.Open(dbrouter.Config{
		Region: from,
		Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSNFrom(from, "m1", Database) + oneTrip},
		Readers: []dbrouter.Endpoint{
			{Name: "r2", DSN: s.DSN("r2", Database) + oneTrip, Region: from},
			{Name: "r1", DSN: s.DSNFrom(from, "r1", Database) + oneTrip, Region: testserver.PrimaryRegion},
		},
		TokenKeys: []dbrouter.TokenKey{tokenKey},
	})
	if err != nil {
		return Limits{}, err
	}
	defer rt.Close()
	viaRoute, err := sql.Open("mysql", s.DSNFrom(from, "m1", Database)+oneTrip)
	if err != nil {
		return Limits{}, err
	}
	defer viaRoute.Close()
	local, err := sql.Open("mysql", s.DSN("r2", Database)+oneTrip)
	if err != nil {
		return Limits{}, err
	}
	defer local.Close()

	base, err := plainReads(ctx, local, id, 50)
	if err != nil {
		return Limits{}, fmt.Errorf("base reads: %w", err)
	}
	writerRead, err := plainReads(ctx, viaRoute, id, 10)
	if err != nil {
		return Limits{}, fmt.Errorf("reads on the writer through its route: %w", err)
	}
	rtt := max(writerRead-base, 0)
	lim := Limits{BaseMs: ms(base), WriterRTTms: ms(rtt), Cells: map[string]LimitCell{}}

	var all, allIdle []float64
	value := int64(1 << 40) // above the workload's values
	for _, row := range limitGrid() {
		cells := map[time.Duration][]float64{} // after -> ratios
		lats := map[time.Duration][]float64{}
		raw := map[time.Duration][]time.Duration{}  // after -> latencies
		idle := map[time.Duration][]time.Duration{} // after -> plain reads on the timeline (t ≥ L)
		writer := map[time.Duration]int64{}
		var order []time.Duration
		for range 2 { // warm-up: the router learns this lag
			order = append(order, -1)
		}
		for range reps {
			order = append(order, row.afters...)
		}
		for _, after := range order {
			value++
			warm := after < 0
			t := max(after, 0)
			before := rt.Stats()
			lat, got, err := limitSample(ctx, s, p, rt, nil, id, value, row.lag, t)
			if err != nil {
				if ctx.Err() != nil {
					return Limits{}, ctx.Err()
				}
				if errors.Is(err, errHarness) {
					return Limits{}, err
				}
				if !warm {
					lim.Errors++
				}
				logf("limit grid %s: %v", cellName(row.lag, t), err)
				continue
			}
			if warm {
				continue
			}
			st := rt.Stats()
			writer[t] += st.ReadsWriter - before.ReadsWriter
			lim.Reads++
			if got != value {
				lim.Violations++
			}
			limit := base
			if row.lag == stalledLag {
				limit += rtt
			} else {
				limit += max(0, min(row.lag-t, rtt))
			}
			r := float64(lat) / float64(limit)
			cells[t] = append(cells[t], r)
			lats[t] = append(lats[t], ms(lat))
			raw[t] = append(raw[t], lat)
			all = append(all, r)
			if row.lag == stalledLag || t < row.lag {
				continue
			}
			// The same timeline, read plainly on the local reader.
			value++
			blat, _, err := limitSample(ctx, s, p, rt, local, id, value, row.lag, t)
			if err != nil {
				if ctx.Err() != nil {
					return Limits{}, ctx.Err()
				}
				if errors.Is(err, errHarness) {
					return Limits{}, err
				}
				lim.Errors++
				logf("limit grid %s (plain read): %v", cellName(row.lag, t), err)
				continue
			}
			idle[t] = append(idle[t], blat)
		}
		for _, t := range row.afters {
			rs, ls := cells[t], lats[t]
			slices.Sort(rs)
			slices.Sort(ls)
			limit := base
			if row.lag == stalledLag {
				limit += rtt
			} else {
				limit += max(0, min(row.lag-t, rtt))
			}
			c := LimitCell{LimitMs: ms(limit), P50ms: quantile(ls, 0.5), RatioP50: quantile(rs, 0.5), RatioP90: quantile(rs, 0.9), Reads: len(rs), WriterReads: writer[t]}
			ris := rs
			if bs := idle[t]; len(bs) > 0 {
				slices.Sort(bs)
				b := bs[len(bs)/2]
				c.BaseIdleMs = ms(b)
				ris = nil
				for _, l := range raw[t] {
					ris = append(ris, float64(l)/float64(b))
				}
				slices.Sort(ris)
			}
			c.RatioIdleP50, c.RatioIdleP90 = quantile(ris, 0.5), quantile(ris, 0.9)
			allIdle = append(allIdle, ris...)
			lim.Cells[cellName(row.lag, t)] = c
			logf("limit grid %-22s limit %8.2f ms p50 %8.2f ms ratio p50 %5.2f p90 %5.2f (%d reads, %d to the writer); idle base %.2f ms, ratio p50 %5.2f p90 %5.2f",
				cellName(row.lag, t), c.LimitMs, c.P50ms, c.RatioP50, c.RatioP90, c.Reads, c.WriterReads, c.BaseIdleMs, c.RatioIdleP50, c.RatioIdleP90)
		}
	}
	slices.Sort(all)
	lim.RatioHotP50, lim.RatioHotP90 = quantile(all, 0.5), quantile(all, 0.9)
	slices.Sort(allIdle)
	lim.RatioIdleP50, lim.RatioIdleP90 = quantile(allIdle, 0.5), quantile(allIdle, 0.9)
	lim.RatioP50, lim.RatioP90 = lim.RatioIdleP50, lim.RatioIdleP90
	return lim, nil
}

// errHarness marks a failure of the stack's controls or of the harness's
// own queries: the run stops.
var errHarness = errors.New("rywharness: limit grid")

// limitSample stalls r2, writes value to row id through rt in a fresh
// read-your-writes scope, lets r2 apply it lag after the write returned
// (never while the read runs, with stalledLag), and reads the row through
// rt (or, if plain is not nil, with a plain read on plain) after. It
// returns the read's latency and value, once r2 has caught up again.
func limitSample(ctx context.Context, s *testserver.Stack, p *pools, rt *dbrouter.Router, plain *sql.DB, id int, value int64, lag, after time.Duration) (time.Duration, int64, error) {
	if err := s.Stall(ctx, "r2"); err != nil {
		return 0, 0, fmt.Errorf("%w: stall r2: %v", errHarness, err)
	}
	resumed := make(chan error, 1)
	scope := dbrouter.NewContext(ctx)
	_, werr := rt.ExecContext(scope, updateQuery, value, id)
	written := time.Now()
	if werr != nil || lag == stalledLag {
		resumed <- nil
	} else {
		// The only user of s until resumed says so.
		time.AfterFunc(lag, func() { resumed <- s.Resume(ctx, "r2") })
	}
	var lat time.Duration
	var got int64
	rerr := werr
	if werr == nil && sleep(ctx, time.Until(written.Add(after))) {
		start := time.Now()
		if plain != nil {
			rerr = plain.QueryRowContext(ctx, selectQuery, id).Scan(&got)
		} else {
			rerr = rt.QueryRowContext(scope, selectQuery, id).Scan(&got)
		}
		lat = time.Since(start)
	}
	if err := errors.Join(<-resumed, s.Resume(ctx, "r2")); err != nil {
		return 0, 0, fmt.Errorf("%w: resume r2: %v", errHarness, err)
	}
	var pos string
	if err := p.writer.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", errHarness, err)
	}
	var res sql.NullInt64
	if err := p.readers[1].QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil || !res.Valid || res.Int64 != 0 {
		return 0, 0, fmt.Errorf("%w: r2 did not catch up in 10 s (%v)", errHarness, err)
	}
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	return lat, got, rerr
}

// MeasureLimits runs the latency grid alone (reps reads per cell) on a
// fresh harness table; Run runs it after the workload.
func MeasureLimits(ctx context.Context, s *testserver.Stack, reps int, logf func(string, ...any)) (Limits, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	const id = 1
	if err := setup(ctx, s, id); err != nil {
		return Limits{}, err
	}
	p, err := openPools(s)
	if err != nil {
		return Limits{}, err
	}
	defer p.close()
	return measureLimits(ctx, s, p, id, max(reps, 1), logf)
}
