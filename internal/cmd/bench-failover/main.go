// Command bench-failover runs the writer-failover harness on the local stack
// (make bench-failover):
//
//  1. the naive control: a plain *sql.DB pinned to the old writer's DSN runs
//     the write load through a kill -9 of m1 and the promotion of r1; it must
//     not recover (this shows the harness can see a failed failover);
//  2. the router, with default settings, runs the same load and fault; it
//     must recover, and every acknowledged write must be on the new primary;
//  3. the cost of OpenTelemetry without an SDK: the dbrouter benchmark
//     BenchmarkOtelNoopRatio (paired, interleaved batches of an instrumented
//     and an uninstrumented router in one process), run with `go test`.
//
// Its last line is one JSON object:
//
//	{"acked_lost":0,"recover_ms":...,"otel_noop_ratio":...}
//
// It exits non-zero if the control recovered, the router did not, or a
// write was lost. It resets the stack before and after each run.
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/internal/failoverharness"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	os.Exit(run())
}

func run() int {
	skipRatio := flag.Bool("skip-ratio", false, "do not measure otel_noop_ratio")
	flag.Parse()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	// The driver logs broken connections to stderr through a global logger;
	// a failover breaks many. This program reports what matters itself.
	_ = mysql.SetLogger(&mysql.NopLogger{})

	s, err := testserver.Lookup()
	if err != nil {
		logf("bench-failover: %v", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	reset := func() error {
		if err := s.Reset(ctx); err != nil {
			return err
		}
		return failoverharness.Prepare(ctx, s)
	}
	fail := 0

	// 1. Naive control.
	if err := reset(); err != nil {
		logf("bench-failover: reset: %v", err)
		return 1
	}
	naive, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		logf("bench-failover: %v", err)
		return 1
	}
	ctl, err := failoverharness.Run(ctx, s, naive, failoverharness.Config{RecoverTimeout: 10 * time.Second, Logf: logf})
	naive.Close()
	if err != nil {
		logf("bench-failover: control: %v", err)
		return 1
	}
	fmt.Printf("naive control (*sql.DB pinned to m1): %v\n", ctl)
	if ctl.Recovered {
		logf("bench-failover: FAIL: the naive control recovered, the harness cannot tell")
		fail = 1
	}

	// 2. The router with default settings.
	if err := reset(); err != nil {
		logf("bench-failover: reset: %v", err)
		return 1
	}
	db, closeDB, isUnknown, err := openRouter(s)
	if err != nil {
		logf("bench-failover: open router: %v", err)
		return 1
	}
	res, err := failoverharness.Run(ctx, s, db, failoverharness.Config{RecoverTimeout: 30 * time.Second,
		OutcomeUnknown: isUnknown, Logf: logf})
	closeDB()
	if err != nil {
		logf("bench-failover: router: %v", err)
		return 1
	}
	fmt.Printf("dbrouter: %v\n", res)
	if err := res.Check(); err != nil {
		logf("bench-failover: FAIL: %v", err)
		fail = 1
	}
	if err := s.Reset(ctx); err != nil {
		logf("bench-failover: reset: %v", err)
		fail = 1
	}

	// 3. OpenTelemetry without an SDK.
	ratio := -1.0
	if !*skipRatio {
		ratio, err = otelNoopRatio(ctx)
		if err != nil {
			logf("bench-failover: otel_noop_ratio: %v", err)
			fail = 1
		}
	}

	recoverMS := -1.0
	if res.Recovered {
		recoverMS = float64(res.RecoverTime.Microseconds()) / 1000
	}
	out, _ := json.Marshal(struct {
		AckedLost     int     `json:"acked_lost"`
		RecoverMS     float64 `json:"recover_ms"`
		OtelNoopRatio float64 `json:"otel_noop_ratio"`
	}{res.Lost, recoverMS, ratio})
	fmt.Println(string(out))
	return fail
}

// otelNoopRatio runs dbrouter's BenchmarkOtelNoopRatio in a child `go test`
// (the uninstrumented router it compares against exists only inside the
// package's tests) and returns the otel_noop_ratio metric it reports.
func otelNoopRatio(ctx context.Context) (float64, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goTool, "test", "-run", "^$", "-bench", "^BenchmarkOtelNoopRatio$",
		"-benchtime", "1x", "-count", "1", "github.com/regiondb/regiondb/dbrouter")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%v\n%s", err, stdout.Bytes())
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(os.Stderr, line)
		if !strings.HasPrefix(line, "BenchmarkOtelNoopRatio") {
			continue
		}
		f := strings.Fields(line)
		for i := 1; i < len(f); i++ {
			if f[i] == "otel_noop_ratio" {
				return strconv.ParseFloat(f[i-1], 64)
			}
		}
	}
	return 0, fmt.Errorf("no otel_noop_ratio in the benchmark output:\n%s", stdout.Bytes())
}
