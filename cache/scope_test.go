package cache_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regiondb/regiondb/cache"
	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"go.opentelemetry.io/otel/attribute"
)

// TestScopedHit: a cached value remembers the position its load observed;
// a Get whose scope requires a newer one (an invalidation that never
// arrived) loads instead, gets the fresh value and refills; a Get whose
// scope is satisfied, or that has none, hits. The unscoped read of the
// same lost invalidation is the control: it gets the old value.
func TestScopedHit(t *testing.T) {
	e := openEnv(t)
	db := &fakeDB{}
	c, r := newCache(t, e, cache.Config{Consistency: fakeConsistency{db}})
	key := cacheharness.UniqueKey(e, t.Name())
	var loads atomic.Int64
	load := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		return []byte(db.read(ctx)), nil
	}
	get := func(ctx context.Context) string {
		t.Helper()
		v, err := c.Get(ctx, key, load)
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	bg := context.Background()
	db.write(bg, "v1")
	db.write(bg, "v2") // position 2
	if v := get(bg); v != "v2" || loads.Load() != 1 {
		t.Fatalf("fill: %q after %d loads", v, loads.Load())
	}
	// A scope at position 2 is satisfied by the value filled at 2: a hit.
	user, sc := withScope(bg)
	sc.need.Store(2)
	if v := get(user); v != "v2" || loads.Load() != 1 {
		t.Fatalf("satisfied scope: %q after %d loads, want a hit", v, loads.Load())
	}
	// The user writes v3 (position 3); the invalidation is lost.
	db.lag.Store(1) // the replica has not applied it either
	db.write(user, "v3")
	if v := get(bg); v != "v2" {
		t.Fatalf("control: a Get without a scope got %q, want the old v2 (lost invalidation)", v)
	}
	if v := get(user); v != "v3" || loads.Load() != 2 {
		t.Fatalf("scoped Get after its write: %q after %d loads, want v3 loaded", v, loads.Load())
	}
	// The fresh value was newer: it was stored, so everyone hits it now.
	if v := get(bg); v != "v3" || loads.Load() != 2 {
		t.Fatalf("after the scoped refill: %q after %d loads, want a hit on v3", v, loads.Load())
	}
	if v := get(user); v != "v3" || loads.Load() != 2 {
		t.Fatalf("scope satisfied by the refill: %q after %d loads", v, loads.Load())
	}
	if h := counter(t, r, "regiondb.cache.hits", attribute.String("regiondb.cache.result", "fresh")); h != 4 {
		t.Fatalf("fresh hits = %d, want 4", h)
	}
}

// TestScopedNegative: a cached absence is no answer for a scope that
// created the record.
func TestScopedNegative(t *testing.T) {
	e := openEnv(t)
	db := &fakeDB{}
	c, _ := newCache(t, e, cache.Config{Consistency: fakeConsistency{db}, NegativeTTL: time.Minute})
	key := cacheharness.UniqueKey(e, t.Name())
	load := func(ctx context.Context) ([]byte, error) {
		if v := db.read(ctx); v != "" {
			return []byte(v), nil
		}
		return nil, cache.ErrNotFound
	}
	bg := context.Background()
	db.write(bg, "") // position 1: the record does not exist yet
	if _, err := c.Get(bg, key, load); err != cache.ErrNotFound {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	user, _ := withScope(bg)
	db.write(user, "created")
	if _, err := c.Get(bg, key, load); err != cache.ErrNotFound {
		t.Fatalf("control: err = %v, want the cached absence", err)
	}
	if v, err := c.Get(user, key, load); err != nil || string(v) != "created" {
		t.Fatalf("scoped Get = %q, %v; want the created record", v, err)
	}
}

// TestScopedStaleLease: a lease's stale value is not served to a Get
// whose scope it does not satisfy.
func TestScopedStaleLease(t *testing.T) {
	e := openEnv(t)
	db := &fakeDB{}
	c, _ := newCache(t, e, cache.Config{Consistency: fakeConsistency{db}, TTL: 20 * time.Millisecond, TTLJitter: -1, StaleTTL: time.Minute})
	other, _ := newCache(t, e, cache.Config{Consistency: fakeConsistency{db}, TTL: 20 * time.Millisecond, TTLJitter: -1, StaleTTL: time.Minute,
		LeaseWait: 50 * time.Millisecond})
	key := cacheharness.UniqueKey(e, t.Name())
	bg := context.Background()
	db.write(bg, "v1")
	if _, err := c.Get(bg, key, func(ctx context.Context) ([]byte, error) { return []byte(db.read(ctx)), nil }); err != nil {
		t.Fatal(err)
	}
	<-time.After(40 * time.Millisecond) // the TTL must lapse on the real server
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() { // revalidates v1 slowly, holding the lease with v1 as stale
		defer close(done)
		c.Get(bg, key, func(ctx context.Context) ([]byte, error) {
			close(started)
			<-release
			return []byte("v1"), nil
		})
	}()
	<-started
	user, _ := withScope(bg)
	db.write(user, "v2")
	if v, _ := other.Get(bg, key, nil2(t)); string(v) != "v1" {
		t.Fatalf("control: unscoped Get during revalidation = %q, want the stale v1", v)
	}
	v, err := other.Get(user, key, func(ctx context.Context) ([]byte, error) { return []byte(db.read(ctx)), nil })
	close(release)
	<-done
	if err != nil || string(v) != "v2" {
		t.Fatalf("scoped Get during revalidation = %q, %v; want v2", v, err)
	}
}

func nil2(t *testing.T) cache.Loader {
	return func(context.Context) ([]byte, error) {
		t.Error("unscoped Get loaded during another's revalidation")
		return nil, nil
	}
}
