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
// "extra_round_trips_per_write":y,"round_trips":{...}}: violations,
// writer_share, p50_ms, p99_ms, reads and errors per strategy; reads,
// regressions or violations of each guarantee and its control; and the
// statements the readers (the writer) received beyond the workload's, per
// read (write), counted on their Questions counters. It exits with status 1 when
// the run means nothing (more than 1 % of a strategy's requests failed, too
// few reads, or a control that saw no failure). Run it with `make bench-ryw`.
func ryw(fs *flag.FlagSet) runFunc {
	users := fs.Int("users", 32, "concurrent simulated users per strategy")
	dur := fs.Duration("duration", 60*time.Second, "how long the workload runs")
	seed := fs.Uint64("seed", 1, "seed of the workload and the faults")
	return func(ctx context.Context, s *testserver.Stack, logf logFunc) (any, error) {
		rep, err := rywharness.Run(ctx, s, rywharness.Config{Users: *users, Duration: *dur, Seed: *seed, Logf: logf})
		if err != nil {
			return nil, err
		}
		if bad := rep.Check(); bad != nil {
			return json.RawMessage(rep.JSON()), fmt.Errorf("the run does not count: %w", bad)
		}
		return json.RawMessage(rep.JSON()), nil
	}
}
