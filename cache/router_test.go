package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/dbrouter"
	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"github.com/regiondb/regiondb/internal/testserver"
)

// The real router satisfies the cache's contract.
var (
	_ cache.Consistency = (*dbrouter.Router)(nil)
	_ cache.ReadScope   = (*dbrouter.Router)(nil)
)

// TestStaleRefillWithRouter runs the stale-refill race of TestStaleRefill
// with the real *dbrouter.Router as the cache's Consistency and as the
// loaders' database (writes through it, reads through it from the local
// reader r1, stalled), next to the plain gomemcache control.
func TestStaleRefillWithRouter(t *testing.T) {
	e := openEnv(t)
	s := e.Stack
	rt, err := dbrouter.Open(dbrouter.Config{
		Region: testserver.PrimaryRegion,
		Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", cacheharness.Database)},
		Readers: []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSN("r1", cacheharness.Database), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSN("r2", cacheharness.Database), Region: testserver.SecondaryRegion},
		},
		MaxWait: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.StaleRefill(ctx, e, cacheharness.StaleConfig{
		Consistency: rt,
		Write: func(ctx context.Context, id, v int64) (context.Context, error) {
			ctx = dbrouter.NewContext(ctx)
			_, err := rt.ExecContext(ctx, "UPDATE kv SET v = ? WHERE id = ?", v, id)
			return ctx, err
		},
		Load: func(ctx context.Context, id int64) (int64, error) {
			var v int64
			err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE id = ?", id).Scan(&v)
			return v, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stale refill with dbrouter: %+v", res)
	if res.StaleReadsPlain == 0 || res.InFlightStalePlain == 0 {
		t.Fatalf("control: plain cache-aside served no stale value: %+v", res)
	}
	if res.StaleReads != 0 || res.InFlightStale != 0 {
		t.Fatalf("cache with dbrouter served stale reads: %+v", res)
	}
	if res.FillsRefused == 0 {
		t.Fatalf("no fill refused in the exact interleaving: %+v", res)
	}
}

// TestCrossRegionWithRouter runs TestCrossRegion's measurement with one
// real *dbrouter.Router per region (ap-northeast-1 reading r1, us-east-1
// reading r2 behind its 150 ms link), writes going through the invalidating
// region's router.
func TestCrossRegionWithRouter(t *testing.T) {
	e := openEnv(t)
	s := e.Stack
	var rts [2]*dbrouter.Router
	for i, region := range []string{testserver.PrimaryRegion, testserver.SecondaryRegion} {
		rt, err := dbrouter.Open(dbrouter.Config{
			Region: region,
			Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", cacheharness.Database)},
			Readers: []dbrouter.Endpoint{
				{Name: "r1", DSN: s.DSN("r1", cacheharness.Database), Region: testserver.PrimaryRegion},
				{Name: "r2", DSN: s.DSN("r2", cacheharness.Database), Region: testserver.SecondaryRegion},
			},
			MaxWait: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close() })
		rts[i] = rt
	}
	load := func(rt *dbrouter.Router) func(context.Context, int64) (int64, error) {
		return func(ctx context.Context, id int64) (int64, error) {
			var v int64
			err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE id = ?", id).Scan(&v)
			return v, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.CrossRegion(ctx, e, cacheharness.RegionConfig{
		Consistency: [2]cache.Consistency{rts[0], rts[1]},
		Load:        [2]func(context.Context, int64) (int64, error){load(rts[0]), load(rts[1])},
		Write: func(ctx context.Context, region int, id, v int64) (context.Context, error) {
			ctx = dbrouter.NewContext(ctx)
			_, err := rts[region].ExecContext(ctx, "UPDATE kv SET v = ? WHERE id = ?", v, id)
			return ctx, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cross region with dbrouter: %+v", res)
	if res.StaleReadsPlain == 0 {
		t.Fatalf("control: per-region plain cache-aside served no stale value in %d reads", res.ReadsPlain)
	}
	if res.StaleAfterBoundPlain == 0 {
		t.Fatalf("control: no plain read stale after the bound in %d reads: the judgement cannot see it", res.ReadsPlain)
	}
	if res.StaleAfterBound != 0 || res.ConvergenceMs > res.BoundMs {
		t.Fatalf("stale reads after the %v ms bound: %d; convergence %v ms", res.BoundMs, res.StaleAfterBound, res.ConvergenceMs)
	}
}
