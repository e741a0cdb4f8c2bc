package failover

import (
	"database/sql"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestRegionLossHarnessSeesFailure checks RunRegionLoss itself: a client
// that follows the stack's primary writes again after r2's promotion, and
// one pinned to m1 (the naive control) does not; reads through a plain pool
// on r2 are counted as served.
func TestRegionLossHarnessSeesFailure(t *testing.T) {
	s := testserver.Require(t)
	ctx := t.Context()
	t.Cleanup(func() { resetStack(t, s) })
	r2, err := sql.Open("mysql", s.DSN("r2", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	cfg := RegionLossConfig{Warmup: 500 * time.Millisecond, Outage: time.Second, RecoverTimeout: 5 * time.Second,
		After: 300 * time.Millisecond, Logf: t.Logf}

	t.Run("oracle client recovers", func(t *testing.T) {
		resetStack(t, s)
		o := &oracleDB{s: s}
		defer o.Close()
		res, err := RunRegionLoss(ctx, s, r2, []DB{o}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		if !res.Recovered || res.ReadsServed == 0 || res.WritesFailed == 0 || res.Acked == 0 {
			t.Fatalf("unexpected result: %v", res)
		}
	})
	t.Run("naive control pinned to m1 does not recover", func(t *testing.T) {
		resetStack(t, s)
		db, err := sql.Open("mysql", s.DSN("m1", ""))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		res, err := RunRegionLoss(ctx, s, r2, []DB{db}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		if res.Recovered || res.WritesFailed == 0 {
			t.Fatalf("the naive control recovered: %v", res)
		}
	})
}
