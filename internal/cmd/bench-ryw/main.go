// Command bench-ryw runs the read-your-writes harness (package
// internal/rywharness) against the local stack and prints, as its last
// line, {"router":{...},"naive":{...},"window2s":{...}} with violations,
// writer_share, p50_ms and p99_ms per strategy. Run it with `make bench-ryw`.
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
	fmt.Println(rep.JSON())
}
