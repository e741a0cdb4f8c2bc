package rywharness

import (
	"context"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/regiondb/regiondb/internal/testserver"
)

// TestHarness runs the harness briefly and asserts issue 3's bars: the
// router misses no own write, the naive splitter does (so the harness can
// see a failure), and the router sends at most a tenth as many reads to the
// writer as the 2-second window.
func TestHarness(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, s, Config{Users: 16, Duration: 15 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.JSON())
	if rep.Router.Reads < 500 {
		t.Errorf("router served only %d reads", rep.Router.Reads)
	}
	if rep.Router.Violations != 0 {
		t.Errorf("router: %d read-your-writes violations, want 0", rep.Router.Violations)
	}
	if rep.Naive.Violations == 0 {
		t.Errorf("naive splitter: 0 violations; the harness cannot see stale reads")
	}
	if rep.Router.WriterShare > rep.Window2s.WriterShare/10 {
		t.Errorf("router writer share %.4f > 1/10 of window2s's %.4f", rep.Router.WriterShare, rep.Window2s.WriterShare)
	}
	if rep.RouterStats.TokensRejected != 0 {
		t.Errorf("%d tokens rejected", rep.RouterStats.TokensRejected)
	}
}
