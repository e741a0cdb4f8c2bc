package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
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

	"github.com/regiondb/regiondb/dbrouter"
	failoverharness "github.com/regiondb/regiondb/internal/harness/failover"
	"github.com/regiondb/regiondb/internal/testserver"
)

// failover (`make bench-failover`) runs the writer-failover harness on the
// local stack:
//
//  1. the naive control: a plain *sql.DB pinned to the old writer's DSN runs
//     the write load through a kill -9 of m1 and the promotion of r1; it must
//     not recover (this shows the harness can see a failed failover);
//  2. the router, with default settings, runs the same load and fault; it
//     must recover, and every acknowledged write must be on the new primary;
//     each writer also reads its write back in a read-your-writes scope, and
//     post_failover_read_p90_ratio is the p90 of those reads 2-10 s after
//     the first write acknowledged after the kill over their p90 before it;
//  3. cases where the database itself loses or half-applies writes, through
//     the router: r2 promoted instead of r1 (asynchronous, lagging), r1's
//     link delayed beyond the semi-sync timeout so that the primary falls
//     back to asynchronous replication before the kill, and a promotion
//     that comes 3 s after the kill. Acknowledged writes may be lost there
//     (reported per case); a write the router reported as failed must not
//     exist afterwards (failed_but_applied, over every router case, with
//     outcome_unknown beside it);
//  4. region loss: m1 and r1 killed at once, r2 promoted after 3 s, with
//     a us-east-1 router (writers, and readers allowing 30 s of staleness)
//     and an ap-northeast-1 router (writers);
//  5. the cost of OpenTelemetry without an SDK: the dbrouter benchmark
//     BenchmarkOtelNoopRatio (paired, interleaved batches of an instrumented
//     and an uninstrumented router in one process), run with `go test`.
//
// Its last line is one JSON object:
//
//	{"acked_lost":0,"recover_ms":...,"otel_noop_ratio":...,
//	 "post_failover_read_p90_ratio":...,"failed_but_applied":0,"outcome_unknown":N,
//	 "region_loss":{"reads_served":N,"reads_failed":F,"writes_failed_fast_ms":X,"recover_ms":Y},
//	 "lossy_cases":{"<case>":{"acked":N,"acked_lost":L,"outcome_unknown":U,"failed":F,"failed_but_applied":0,"recover_ms":R}},
//	 "control_failed_but_applied":C,"post_failover_reads_missed":0}
//
// control_failed_but_applied is the naive control's count: a plain *sql.DB
// reports a write whose connection broke as failed although it may have
// committed, so it is usually above 0, which shows the count can see it.
//
// It exits non-zero if the control recovered, the router did not, a write
// was lost or a read-back missed its write (post_failover_reads_missed) in
// step 2, a failure was not definite, the read ratio is over
// 1.5, or region loss failed writes slower than 1 s or recovered slower
// than 10 s. It resets the stack before and after each run.
func failover(fs *flag.FlagSet) runFunc {
	skipRatio := fs.Bool("skip-ratio", false, "do not measure otel_noop_ratio")
	skipLossy := fs.Bool("skip-lossy", false, "do not run the lossy cases and region loss")
	return func(ctx context.Context, s *testserver.Stack, logf logFunc) (any, error) {
		return runFailover(ctx, s, logf, *skipRatio, *skipLossy)
	}
}

func runFailover(ctx context.Context, s *testserver.Stack, logf logFunc, skipRatio, skipLossy bool) (any, error) {
	// The driver logs broken connections to stderr through a global logger;
	// a failover breaks many. This program reports what matters itself.
	_ = mysql.SetLogger(&mysql.NopLogger{})

	reset := func() error {
		if err := s.Reset(ctx); err != nil {
			return err
		}
		return failoverharness.Prepare(ctx, s)
	}
	fail := 0

	// 1. Naive control.
	if err := reset(); err != nil {
		return nil, fmt.Errorf("reset: %w", err)
	}
	naive, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	ctl, err := failoverharness.Run(ctx, s, naive, failoverharness.Config{RecoverTimeout: 10 * time.Second, Logf: logf})
	naive.Close()
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	fmt.Printf("naive control (*sql.DB pinned to m1): %v\n", ctl)
	if ctl.Recovered {
		logf("failover: FAIL: the naive control recovered, the harness cannot tell")
		fail = 1
	}

	// 2. The router with default settings.
	if err := reset(); err != nil {
		return nil, fmt.Errorf("reset: %w", err)
	}
	db, closeDB, isUnknown, err := openRouter(s, testserver.PrimaryRegion)
	if err != nil {
		return nil, fmt.Errorf("open router: %w", err)
	}
	res, err := failoverharness.Run(ctx, s, db, failoverharness.Config{RecoverTimeout: 30 * time.Second,
		After: 10 * time.Second, Scope: dbrouter.NewContext, OutcomeUnknown: isUnknown, Logf: logf})
	closeDB()
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	fmt.Printf("dbrouter: %v\n", res)
	if err := res.Check(); err != nil {
		logf("failover: FAIL: %v", err)
		fail = 1
	}
	readRatio := -1.0
	if res.ReadP90Before > 0 && res.ReadP90After > 0 {
		readRatio = float64(res.ReadP90After) / float64(res.ReadP90Before)
	}
	if readRatio < 0 || readRatio > 1.5 {
		logf("failover: FAIL: post_failover_read_p90_ratio %.3f, want <= 1.5 (%v before, %v after)",
			readRatio, res.ReadP90Before, res.ReadP90After)
		fail = 1
	}
	if res.ReadMissed > 0 {
		logf("failover: FAIL: %d read-backs did not see their acknowledged write", res.ReadMissed)
		fail = 1
	}
	failedButApplied, unknown := res.FailedButApplied, res.Unknown

	// 3. Cases where the database loses or half-applies writes.
	lossy := map[string]caseJSON{}
	var loss failoverharness.RegionLossResult
	if !skipLossy {
		for _, c := range lossyCases() {
			if err := reset(); err != nil {
				return nil, fmt.Errorf("reset: %w", err)
			}
			db, closeDB, isUnknown, err := openRouter(s, testserver.PrimaryRegion)
			if err != nil {
				return nil, fmt.Errorf("open router: %w", err)
			}
			c.cfg.OutcomeUnknown, c.cfg.Logf = isUnknown, logf
			r, err := failoverharness.Run(ctx, s, db, c.cfg)
			closeDB()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			fmt.Printf("lossy case %s: %v\n", c.name, r)
			if !r.Recovered {
				logf("failover: FAIL: %s did not recover", c.name)
				fail = 1
			}
			failedButApplied += r.FailedButApplied
			unknown += r.Unknown
			lossy[c.name] = caseJSON{Acked: r.Acked, Lost: r.Lost, Unknown: r.Unknown, UnknownApplied: r.UnknownApplied,
				Failed: r.Failed, FailedButApplied: r.FailedButApplied, RecoverMS: ms(r.RecoverTime, r.Recovered)}
		}

		// 4. Region loss.
		if err := reset(); err != nil {
			return nil, fmt.Errorf("reset: %w", err)
		}
		us, closeUS, isUnknown, err := openRouter(s, testserver.SecondaryRegion)
		if err != nil {
			return nil, fmt.Errorf("open router: %w", err)
		}
		tokyo, closeTokyo, _, err := openRouter(s, testserver.PrimaryRegion)
		if err != nil {
			return nil, fmt.Errorf("open router: %w", err)
		}
		loss, err = failoverharness.RunRegionLoss(ctx, s, us, []failoverharness.DB{us, tokyo}, failoverharness.RegionLossConfig{
			ReadContext:    func(ctx context.Context) context.Context { return dbrouter.WithMaxStaleness(ctx, 30*time.Second) },
			OutcomeUnknown: isUnknown, Logf: logf,
		})
		closeUS()
		closeTokyo()
		if err != nil {
			return nil, fmt.Errorf("region loss: %w", err)
		}
		fmt.Printf("region loss: %v\n", loss)
		failedButApplied += loss.FailedButApplied
		unknown += loss.Unknown
		switch {
		case !loss.Recovered || loss.RecoverTime > 10*time.Second:
			logf("failover: FAIL: region loss: not every region wrote again within 10 s of the promotion")
			fail = 1
		case loss.WritesFailed == 0 || loss.WritesFailedSlowest > time.Second:
			logf("failover: FAIL: region loss: writes during the outage failed in %v (%d), want <= 1 s",
				loss.WritesFailedSlowest, loss.WritesFailed)
			fail = 1
		case loss.ReadsServed == 0:
			logf("failover: FAIL: region loss: no read served from r2 during the outage")
			fail = 1
		}
	}
	if failedButApplied != 0 {
		logf("failover: FAIL: %d writes reported as failed exist", failedButApplied)
		fail = 1
	}
	if err := s.Reset(ctx); err != nil {
		logf("failover: reset: %v", err)
		fail = 1
	}

	// 3. OpenTelemetry without an SDK.
	ratio := -1.0
	if !skipRatio {
		ratio, err = otelNoopRatio(ctx)
		if err != nil {
			logf("failover: otel_noop_ratio: %v", err)
			fail = 1
		}
	}

	recoverMS := -1.0
	if res.Recovered {
		recoverMS = float64(res.RecoverTime.Microseconds()) / 1000
	}
	out := struct {
		AckedLost                int                 `json:"acked_lost"`
		RecoverMS                float64             `json:"recover_ms"`
		OtelNoopRatio            float64             `json:"otel_noop_ratio"`
		PostFailoverReadP90Ratio float64             `json:"post_failover_read_p90_ratio"`
		FailedButApplied         int                 `json:"failed_but_applied"`
		OutcomeUnknown           int                 `json:"outcome_unknown"`
		RegionLoss               regionLossJSON      `json:"region_loss"`
		LossyCases               map[string]caseJSON `json:"lossy_cases"`
		ControlFailedButApplied  int                 `json:"control_failed_but_applied"`
		ReadsMissed              int                 `json:"post_failover_reads_missed"`
	}{res.Lost, recoverMS, ratio, round3(readRatio), failedButApplied, unknown, regionLossJSON{
		ReadsServed: loss.ReadsServed, ReadsFailed: loss.ReadsFailed,
		WritesFailedFastMS: ms(loss.WritesFailedSlowest, loss.WritesFailed > 0),
		RecoverMS:          ms(loss.RecoverTime, loss.Recovered),
	}, lossy, ctl.FailedButApplied, res.ReadMissed}
	if fail != 0 {
		return out, errors.New("FAIL: a check did not pass (see above)")
	}
	return out, nil
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

// regionLossJSON is the "region_loss" object of the JSON line.
type regionLossJSON struct {
	ReadsServed        int     `json:"reads_served"`
	ReadsFailed        int     `json:"reads_failed"`
	WritesFailedFastMS float64 `json:"writes_failed_fast_ms"`
	RecoverMS          float64 `json:"recover_ms"`
}

// caseJSON is one lossy case of the JSON line.
type caseJSON struct {
	Acked            int     `json:"acked"`
	Lost             int     `json:"acked_lost"`
	Unknown          int     `json:"outcome_unknown"`
	UnknownApplied   int     `json:"outcome_unknown_applied"`
	Failed           int     `json:"failed"`
	FailedButApplied int     `json:"failed_but_applied"`
	RecoverMS        float64 `json:"recover_ms"`
}

// ms returns d in milliseconds (3 decimals), or -1 when !ok.
func ms(d time.Duration, ok bool) float64 {
	if !ok {
		return -1
	}
	return float64(d.Microseconds()) / 1000
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

type lossyCase struct {
	name string
	cfg  failoverharness.Config
}

// lossyCases are the failovers in which the database itself may lose or
// half-apply writes.
func lossyCases() []lossyCase {
	return []lossyCase{
		// r2 replicates asynchronously over a 150 ms link: what it had not
		// received when m1 died is gone.
		{"promote_r2", failoverharness.Config{Promote: "r2", RecoverTimeout: 30 * time.Second}},
		// r1's link 1.5 s behind, more than the 1 s semi-sync timeout: the
		// primary falls back to asynchronous replication and acknowledges
		// writes r1 never receives.
		{"semisync_fallback", failoverharness.Config{RecoverTimeout: 30 * time.Second,
			BeforeKill: func(ctx context.Context, s *testserver.Stack) error {
				if err := s.SetLinkDelay(ctx, "r1", 1500*time.Millisecond); err != nil {
					return err
				}
				// Let the primary time out on r1 and write asynchronously.
				select {
				case <-time.After(2500 * time.Millisecond):
				case <-ctx.Done():
				}
				return ctx.Err()
			}}},
		// A promotion that takes seconds (detection and decision).
		{"slow_promotion", failoverharness.Config{PromoteDelay: 3 * time.Second, RecoverTimeout: 30 * time.Second}},
	}
}
