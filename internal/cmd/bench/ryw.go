package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	rywharness "github.com/regiondb/regiondb/internal/harness/ryw"
	"github.com/regiondb/regiondb/internal/testserver"
)

// ryw (`make bench-ryw`) runs the read-your-writes harness (package
// internal/harness/ryw) against the local stack and prints, as its last
// line, {"router":{...},"naive":{...},"window2s":{...},"monotonic":{...},
// "monotonic_control":{...},"tabs":{...},"tabs_control":{...},
// "local_only":{...},"local_only_control":{...},"extra_round_trips_per_read":x,
// "extra_round_trips_per_write":y,"round_trips":{...},
// "extra_round_trips_per_insert":z,"insert_round_trips":{...},"limit_ratio_p50":a,
// "limit_ratio_p90":b,"limit_ratio_idle_p50":c,"limit_ratio_idle_p90":d,
// "limit_ratio_hot_p50":e,"limit_ratio_hot_p90":f,"limit_grid":{...}}: violations, writer_share, p50_ms,
// p99_ms, reads and errors per strategy; reads, regressions or violations
// of each guarantee and its control; the statements the readers (the
// writer) received beyond the workload's, per read (write), and the
// writer's per scoped INSERT (the workload writes with UPDATEs); and a read's
// latency over its physical limit across a grid of reader lags and read
// times after a write, with a cross-region writer (the grid's cells under
// limit_grid; where the limit is the base alone, the base is a plain read
// made on the read's own timeline; the idle ratios are the same, the hot
// ones take back-to-back reads as the base there too). It exits with
// status 1 when the run means nothing (more than 1 % of a strategy's
// requests failed, too few reads, or a control that saw no failure). Run it with `make bench-ryw`. With -limits-only it
// runs the latency grid alone (about 2 minutes) and prints
// {"limit_ratio_p50":a,"limit_ratio_p90":b,"limit_ratio_idle_p50":c,
// "limit_ratio_idle_p90":d,"limit_ratio_hot_p50":e,"limit_ratio_hot_p90":f,
// "limit_grid":{...}}.
func ryw(fs *flag.FlagSet) runFunc {
	users := fs.Int("users", 32, "concurrent simulated users per strategy")
	dur := fs.Duration("duration", 60*time.Second, "how long the workload runs")
	seed := fs.Uint64("seed", 1, "seed of the workload and the faults")
	limitReps := fs.Int("limit-reps", 6, "reads per cell of the latency grid")
	limitsOnly := fs.Bool("limits-only", false, "run the latency grid alone")
	return func(ctx context.Context, s *testserver.Stack, logf logFunc) (any, error) {
		if *limitsOnly {
			l, err := rywharness.MeasureLimits(ctx, s, *limitReps, logf)
			if err != nil {
				return nil, err
			}
			res := map[string]any{"limit_ratio_p50": l.RatioP50, "limit_ratio_p90": l.RatioP90,
				"limit_ratio_idle_p50": l.RatioIdleP50, "limit_ratio_idle_p90": l.RatioIdleP90,
				"limit_ratio_hot_p50": l.RatioHotP50, "limit_ratio_hot_p90": l.RatioHotP90, "limit_grid": l}
			if l.Reads < int64(12**limitReps) || l.Violations > 0 {
				return res, fmt.Errorf("the grid does not count: %d reads, %d violations", l.Reads, l.Violations)
			}
			return res, nil
		}
		rep, err := rywharness.Run(ctx, s, rywharness.Config{Users: *users, Duration: *dur, Seed: *seed, LimitReps: *limitReps, Logf: logf})
		if err != nil {
			return nil, err
		}
		if bad := rep.Check(); bad != nil {
			return json.RawMessage(rep.JSON()), fmt.Errorf("the run does not count: %w", bad)
		}
		return json.RawMessage(rep.JSON()), nil
	}
}
