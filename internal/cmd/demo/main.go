// Command demo is the README's main demo (`make demo`). On the running local
// stack it starts one examples/photoalbum instance per region, plays the
// scripted two-region scenario with faults (lagging readers, writer killed
// and a replica promoted) while simulated families use the service, and
// prints a report. The report, an SVG chart of latency over time with the
// faults marked, the instances' logs and traces go to -out. The last output
// line is one JSON object with the report's figures. It exits 1 when the run
// misses a bar: a region with more than 3 % of its requests unavailable, a
// region without an acknowledged write within 10 s of a writer loss, a
// server that died without the scenario killing it, or a fault it could not
// inject.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/regiondb/regiondb/internal/demo"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	out := flag.String("out", "", "output folder (default out/demo at the module root)")
	scale := flag.Float64("scale", 1, "timeline scale: 1 plays the full scenario (about 45 s)")
	people := flag.Int("people", 8, "background people (families of two)")
	inSession := flag.Bool("token-in-session", false, "keep the read-your-writes token in the session instead of a cookie")
	outages := flag.Bool("regional-outages", true, "add N. Virginia's DynamoDB down for 10 s and Tokyo's databases down (r2 promoted); false plays the shorter scenario without them")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, demo.Config{OutDir: *out, Scale: *scale, People: *people, TokenInSession: *inSession, RegionalOutages: *outages, Progress: os.Stderr})
	stop()
	if errors.As(err, new(failedRun)) {
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// failedRun is a run that missed a bar: the report already says which.
type failedRun struct{ err error }

func (f failedRun) Error() string { return f.err.Error() }

func run(ctx context.Context, cfg demo.Config) error {
	s, err := testserver.Lookup()
	if err != nil {
		return err
	}
	cfg.Stack = s
	if cfg.OutDir == "" {
		root, err := testserver.ModuleRoot()
		if err != nil {
			return err
		}
		cfg.OutDir = filepath.Join(root, "out", "demo")
	}
	rep, err := demo.Run(ctx, cfg)
	if err != nil {
		return err
	}
	rep.Text(os.Stdout)
	fmt.Printf("\nReport, chart (latency.svg), logs and traces in %s\n", cfg.OutDir)
	fmt.Println(rep.Figures())
	// The verdict is in the report above; the figures stay the last line.
	if err := rep.Err(); err != nil {
		return failedRun{err}
	}
	return nil
}
