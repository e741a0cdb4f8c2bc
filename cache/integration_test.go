package cache_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regiondb/regiondb/cache"
	"go.opentelemetry.io/otel/attribute"

	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"github.com/regiondb/regiondb/internal/testserver"
)

// openEnv returns the stack environment of the harness, or skips (fails
// under make test) without a stack.
func openEnv(t *testing.T) *cacheharness.Env {
	t.Helper()
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := cacheharness.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// TestStampedeAcrossProcesses: 64 concurrent misses of one key across 4 OS
// processes (each with its own Cache and connections) run the loader about
// once.
func TestStampedeAcrossProcesses(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.Stampede(ctx, cacheharness.StampedeConfig{
		Addr: e.MC1, Key: cacheharness.UniqueKey(e, "stampede"), Processes: 4, PerProcess: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stampede: %+v", res)
	if res.Gets != 64 || res.Errors != 0 || res.WrongValues != 0 {
		t.Fatalf("gets=%d errors=%d wrong=%d, want 64/0/0", res.Gets, res.Errors, res.WrongValues)
	}
	if res.LoaderCalls < 1 || res.LoaderCalls > 2 {
		t.Fatalf("loader calls = %d for 64 misses in 4 processes, want 1 (at most 2)", res.LoaderCalls)
	}
}

// TestStaleRefill forces the stale-refill race against a stalled replica:
// the cache serves no value older than the last invalidated write, while a
// plain gomemcache cache-aside in the same test does.
func TestStaleRefill(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.StaleRefill(ctx, e, cacheharness.StaleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stale refill: %+v", res)
	if res.Reads == 0 || res.ReadsPlain == 0 {
		t.Fatalf("no reads: %+v", res)
	}
	if res.StaleReadsPlain == 0 {
		t.Fatalf("control: plain cache-aside served no stale value (%d reads): the harness cannot see the race", res.ReadsPlain)
	}
	if res.InFlightStalePlain == 0 || res.InFlightStale != 0 || res.FillsRefused == 0 {
		t.Fatalf("exact interleaving: plain stale %d (want > 0), cache stale %d (want 0), fills refused %d (want > 0)",
			res.InFlightStalePlain, res.InFlightStale, res.FillsRefused)
	}
	if res.StaleReads != 0 {
		t.Fatalf("cache served %d stale reads of %d", res.StaleReads, res.Reads)
	}
}

// TestCrossRegion: a write invalidated in one region stops the other
// region's cache from serving the old value within the documented bound,
// while per-region plain cache-aside keeps serving it.
func TestCrossRegion(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.CrossRegion(ctx, e, cacheharness.RegionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cross region: %+v", res)
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

// TestUnverifiedFillRefused: when the load after an invalidation cannot be
// shown to have read the write (the replica lags and the source does not
// fall back to the writer), the value is returned but not cached, and the
// next Get loads again.
func TestUnverifiedFillRefused(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := &cacheharness.GTIDConsistency{Writer: e.Writer, NoFallback: true, Wait: 10 * time.Millisecond}
	c, r := newCache(t, e, cache.Config{Consistency: g})
	id := int64(e.Nonce*100 + 50)
	if err := e.Seed(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	key := cacheharness.UniqueKey(e, t.Name())
	var loads atomic.Int64
	load := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		v, err := g.Read(ctx, e.R1, id)
		return []byte(strconv.FormatInt(v, 10)), err
	}
	if v, err := c.Get(ctx, key, load); err != nil || string(v) != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if err := e.Stack.Stall(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stack.Resume(context.Background(), "r1") })
	wctx, err := g.Write(ctx, id, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Invalidate(wctx, key); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Get(ctx, key, load); err != nil {
			t.Fatal(err)
		}
	}
	unverified := counter(t, r, "regiondb.cache.fills.refused", attribute.String("regiondb.cache.reason", "unverified"))
	if loads.Load() != 4 || unverified != 3 {
		t.Fatalf("loads %d, unverified refusals %d; want 4 and 3", loads.Load(), unverified)
	}
	if err := e.Stack.Resume(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	// Once the replica has the write, the fill is verified and cached.
	if err := e.WaitReplicas(ctx, g.WrittenPosition(wctx)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if v, err := c.Get(ctx, key, load); err != nil || string(v) != "2" {
			t.Fatalf("after catch-up: %q, %v", v, err)
		}
	}
	if loads.Load() != 5 {
		t.Fatalf("loads = %d, want 5 (one verified fill, then a hit)", loads.Load())
	}
}

// TestHitAllocs checks the allocation bar of the hit path against a raw
// gomemcache Get side by side (allocations are exact; the time ratio is
// measured by `make bench-cache`, not asserted by a test).
func TestHitAllocs(t *testing.T) {
	e := openEnv(t)
	res, err := cacheharness.Hit(context.Background(), cacheharness.HitConfig{
		Addr: e.MC1, Key: cacheharness.UniqueKey(e, t.Name()), Pairs: 4, Batch: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hit path allocs/op: raw Get %v, cache Get %v (timing: see make bench-cache; -race distorts it)", res.RawAllocs, res.CacheAllocs)
	if res.ExtraAllocs > 2 {
		t.Fatalf("hit path allocates %v times, raw Get %v: more than 2 extra", res.CacheAllocs, res.RawAllocs)
	}
}

// TestRYWHits: users write in ap-northeast-1 and read through us-east-1's
// cache within 200 ms while the invalidation of us-east-1 is late or lost:
// with their scope no read is older than their write; without it (the
// control, same schedule) reads are.
func TestRYWHits(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.RYWHits(ctx, e, cacheharness.RYWConfig{Users: 10, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ryw hits: %+v", res)
	if res.ControlViolations == 0 {
		t.Fatalf("control: reads without the scope saw no stale value in %d reads: the harness cannot see violations", res.ControlReads)
	}
	if res.Reads == 0 || res.Violations != 0 {
		t.Fatalf("scoped reads: %d violations in %d reads", res.Violations, res.Reads)
	}
}

// TestInvalidationsNotLost: us-east-1's memcached is down for 2 s during
// 200 invalidations; every one reaches it once it is back.
func TestInvalidationsNotLost(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.InvalidationsLost(ctx, e, cacheharness.LostConfig{Invalidations: 200, Outage: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lost invalidations: %+v", res)
	if res.LostControl == 0 {
		t.Fatal("control: no plain delete failed while memcached was down")
	}
	if res.Lost != 0 || res.Dropped != 0 {
		t.Fatalf("%d invalidations lost, %d dropped", res.Lost, res.Dropped)
	}
}

// TestStampedeSlowLoader: with a loader slower than LeaseWait, the callers
// of the other processes stop waiting and load by themselves, at most once
// per process, and nobody gets an error.
func TestStampedeSlowLoader(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.Stampede(ctx, cacheharness.StampedeConfig{
		Addr: e.MC1, Key: cacheharness.UniqueKey(e, "stampede:slow"), Processes: 3, PerProcess: 8,
		LoadTime: cache.DefaultLeaseWait + 500*time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stampede, slow loader: %+v", res)
	if res.Gets != 24 || res.Errors != 0 || res.WrongValues != 0 {
		t.Fatalf("gets=%d errors=%d wrong=%d, want 24/0/0", res.Gets, res.Errors, res.WrongValues)
	}
	for i, n := range res.PerProcess {
		if n > 1 {
			t.Fatalf("process %d ran the loader %d times, want at most once", i, n)
		}
	}
}

// TestStaleRefillNoFallback: when the source cannot reach the invalidated
// position (the replica stalls, no fallback to the writer), loads return
// the replica's old row, but the cache never keeps it: no stale read is
// served from memcached and the fills are refused.
func TestStaleRefillNoFallback(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cacheharness.StaleRefill(ctx, e, cacheharness.StaleConfig{NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stale refill without fallback: %+v", res)
	if res.StaleReadsPlain == 0 || res.FillsRefused == 0 {
		t.Fatalf("control stale %d, fills refused %d: want both > 0", res.StaleReadsPlain, res.FillsRefused)
	}
	if res.StaleHits != 0 {
		t.Fatalf("%d stale reads served from memcached", res.StaleHits)
	}
}
