// Command bench-ryw runs the read-your-writes harness (package
// internal/rywharness) against the local stack and prints, as its last
// line, {"router":{...},"naive":{...},"window2s":{...},"monotonic":{...},
// "monotonic_control":{...},"tabs":{...},"tabs_control":{...},
// "local_only":{...},"local_only_control":{...},"extra_round_trips_per_read":x,
// "extra_round_trips_per_write":y,"round_trips":{...},"limit_ratio_p50":a,
// "limit_ratio_p90":b,"limit_grid":{...}}: violations,
// writer_share, p50_ms, p99_ms, reads and errors per strategy; reads,
// regressions or violations of each guarantee and its control; and the
// statements the readers (the writer) received beyond the workload's, per
// read (write), counted on their Questions counters; a read's latency over
// its physical limit across a grid of reader lags and read times after a
// write, with a cross-region writer (the grid's cells under limit_grid).
// It exits with status 1 when
// the run means nothing (more than 1 % of a strategy's requests failed, too
// few reads, or a control that saw no failure). Run it with `make bench-ryw`.
// With -limits-only it runs the latency grid alone (about 2 minutes) and
// prints {"limit_ratio_p50":a,"limit_ratio_p90":b,"limit_grid":{...}}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/regiondb/regiondb/internal/rywharness"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	users := flag.Int("users", 32, "concurrent simulated users per strategy")
	dur := flag.Duration("duration", 60*time.Second, "how long the workload runs")
	seed := flag.Uint64("seed", 1, "seed of the workload and the faults")
	limitReps := flag.Int("limit-reps", 6, "reads per cell of the latency grid")
	limitsOnly := flag.Bool("limits-only", false, "run the latency grid alone")
	flag.Parse()
	log.SetFlags(0)
	s, err := testserver.Lookup()
	if err != nil {
		log.Fatal(err)
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	if *limitsOnly {
		l, err := rywharness.MeasureLimits(context.Background(), s, *limitReps, logf)
		if err != nil {
			log.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"limit_ratio_p50": l.RatioP50, "limit_ratio_p90": l.RatioP90, "limit_grid": l})
		fmt.Println(string(b))
		if l.Reads < int64(12**limitReps) || l.Violations > 0 {
			fmt.Fprintf(os.Stderr, "bench-ryw: the grid does not count: %d reads, %d violations\n", l.Reads, l.Violations)
			os.Exit(1)
		}
		return
	}
	rep, err := rywharness.Run(context.Background(), s, rywharness.Config{
		Users: *users, Duration: *dur, Seed: *seed, LimitReps: *limitReps,
		Logf: logf,
	})
	if err != nil {
		log.Fatal(err)
	}
	bad := rep.Check()
	if bad != nil {
		fmt.Fprintln(os.Stderr, "bench-ryw: the run does not count:", bad)
	}
	fmt.Println(rep.JSON())
	if bad != nil {
		os.Exit(1)
	}
}
