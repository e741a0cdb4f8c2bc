// Command bench-ryw runs the read-your-writes harness (package
// internal/rywharness) against the local stack and prints, as its last
// line, {"router":{...},"naive":{...},"window2s":{...},"monotonic":{...},
// "monotonic_control":{...},"tabs":{...},"tabs_control":{...},
// "local_only":{...},"local_only_control":{...},"extra_round_trips_per_read":x,
// "extra_round_trips_per_write":y,"round_trips":{...}}: violations,
// writer_share, p50_ms, p99_ms, reads and errors per strategy; reads,
// regressions or violations of each guarantee and its control; and the
// statements the readers (the writer) received beyond the workload's, per
// read (write), counted in their general logs (one row per client command). It exits with status 1 when
// the run means nothing (more than 1 % of a strategy's requests failed, too
// few reads, or a control that saw no failure). Run it with `make bench-ryw`.
package main

import (
	"context"
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
	flag.Parse()
	log.SetFlags(0)
	s, err := testserver.Lookup()
	if err != nil {
		log.Fatal(err)
	}
	rep, err := rywharness.Run(context.Background(), s, rywharness.Config{
		Users: *users, Duration: *dur, Seed: *seed,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
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
