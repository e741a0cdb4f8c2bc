package cache_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// newCache returns a Cache on the local region's memcached with metrics
// collected by the returned reader.
func newCache(t *testing.T, e *cacheharness.Env, cfg cache.Config) (*cache.Cache, *sdkmetric.ManualReader) {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	if cfg.Client == nil {
		cfg.Client = cacheharness.Client(e.MC1)
		t.Cleanup(func() { cfg.Client.Close() })
	}
	cfg.MeterProvider = mp
	c, err := cache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, r
}

func counter(t *testing.T, r *sdkmetric.ManualReader, name string, match ...attribute.KeyValue) int64 {
	t.Helper()
	return cacheharness.SumCounter(context.Background(), r, name, match...)
}

func constLoader(calls *atomic.Int64, v string) cache.Loader {
	return func(context.Context) ([]byte, error) {
		calls.Add(1)
		return []byte(v), nil
	}
}

func TestGetFillsThenHits(t *testing.T) {
	e := openEnv(t)
	c, r := newCache(t, e, cache.Config{})
	ctx := context.Background()
	key := cacheharness.UniqueKey(e, t.Name())
	var calls atomic.Int64
	for i := range 3 {
		v, err := c.Get(ctx, key, constLoader(&calls, "v1"))
		if err != nil || string(v) != "v1" {
			t.Fatalf("Get #%d = %q, %v", i, v, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1", calls.Load())
	}
	if h, m := counter(t, r, "regiondb.cache.hits"), counter(t, r, "regiondb.cache.misses"); h != 2 || m != 1 {
		t.Fatalf("hits %d misses %d, want 2 and 1", h, m)
	}
	// Invalidate without Consistency: the next Get loads and fills again.
	if err := c.Invalidate(ctx, key); err != nil {
		t.Fatal(err)
	}
	v, err := c.Get(ctx, key, constLoader(&calls, "v2"))
	if err != nil || string(v) != "v2" || calls.Load() != 2 {
		t.Fatalf("after Invalidate: %q, %v, %d calls", v, err, calls.Load())
	}
	v, _ = c.Get(ctx, key, constLoader(&calls, "v3"))
	if string(v) != "v2" {
		t.Fatalf("refill not cached: got %q", v)
	}
}

func TestLoaderError(t *testing.T) {
	e := openEnv(t)
	c, _ := newCache(t, e, cache.Config{})
	ctx := context.Background()
	key := cacheharness.UniqueKey(e, t.Name())
	boom := errors.New("db down")
	if _, err := c.Get(ctx, key, func(context.Context) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the loader's", err)
	}
	// The lease was released: the next caller loads at once.
	var calls atomic.Int64
	if v, err := c.Get(ctx, key, constLoader(&calls, "ok")); err != nil || string(v) != "ok" || calls.Load() != 1 {
		t.Fatalf("after a failed load: %q, %v, %d calls", v, err, calls.Load())
	}
}

func TestNegativeCaching(t *testing.T) {
	e := openEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		wantCalls int64
	}{{"off", 0, 3}, {"on", time.Minute, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCache(t, e, cache.Config{NegativeTTL: tc.ttl})
			key := cacheharness.UniqueKey(e, t.Name())
			var calls atomic.Int64
			for range 3 {
				_, err := c.Get(ctx, key, func(context.Context) ([]byte, error) {
					calls.Add(1)
					return nil, cache.ErrNotFound
				})
				if !errors.Is(err, cache.ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
			}
			if calls.Load() != tc.wantCalls {
				t.Fatalf("loader calls = %d, want %d", calls.Load(), tc.wantCalls)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	e := openEnv(t)
	ctx := context.Background()
	long := cacheharness.UniqueKey(e, strings.Repeat("x", 260))
	var calls atomic.Int64
	c, _ := newCache(t, e, cache.Config{})
	_, err := c.Get(ctx, long, constLoader(&calls, "v"))
	var ke *cache.KeyError
	if !errors.As(err, &ke) || !errors.Is(err, cache.ErrInvalidKey) || calls.Load() != 0 {
		t.Fatalf("long key: err = %v (%d loads), want a *KeyError and no load", err, calls.Load())
	}
	if err := c.Invalidate(ctx, "with space"); !errors.Is(err, cache.ErrInvalidKey) {
		t.Fatalf("Invalidate: err = %v, want ErrInvalidKey", err)
	}
	h, _ := newCache(t, e, cache.Config{HashKeys: true})
	for _, k := range []string{long, long + " ", cacheharness.UniqueKey(e, "a b\nc")} {
		for range 2 {
			v, err := h.Get(ctx, k, constLoader(&calls, k))
			if err != nil || string(v) != k {
				t.Fatalf("hashed key: %q, %v", v, err)
			}
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want 3 (one per distinct hashed key)", calls.Load())
	}
}

func TestStampedeInProcess(t *testing.T) {
	e := openEnv(t)
	c, r := newCache(t, e, cache.Config{})
	key := cacheharness.UniqueKey(e, t.Name())
	var calls atomic.Int64
	var once sync.Once
	started, release := make(chan struct{}), make(chan struct{})
	load := func(context.Context) ([]byte, error) {
		calls.Add(1)
		once.Do(func() { close(started) })
		<-release
		return []byte("v"), nil
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 64 {
		wg.Go(func() {
			v, err := c.Get(context.Background(), key, load)
			if err != nil || string(v) != "v" {
				bad.Add(1)
			}
		})
	}
	<-started // the load runs; let the others pile up behind it, then finish
	close(release)
	wg.Wait()
	if calls.Load() != 1 || bad.Load() != 0 {
		t.Fatalf("64 concurrent misses: %d loader calls, %d bad results; want 1 and 0", calls.Load(), bad.Load())
	}
	t.Logf("loads=%d misses=%d hits=%d", counter(t, r, "regiondb.cache.loads"), counter(t, r, "regiondb.cache.misses"), counter(t, r, "regiondb.cache.hits"))
}

// TestStaleWhileRevalidate: once a value's TTL has passed, one caller reloads
// it while every other caller, in any process, gets the previous value.
func TestStaleWhileRevalidate(t *testing.T) {
	e := openEnv(t)
	cfg := cache.Config{TTL: 30 * time.Millisecond, TTLJitter: -1, StaleTTL: 10 * time.Second}
	a, _ := newCache(t, e, cfg)
	b, rb := newCache(t, e, cfg) // another "process": own Cache and connections
	ctx := context.Background()
	key := cacheharness.UniqueKey(e, t.Name())
	var calls atomic.Int64
	if _, err := a.Get(ctx, key, constLoader(&calls, "v1")); err != nil {
		t.Fatal(err)
	}
	<-time.After(50 * time.Millisecond) // the TTL must lapse on the real server: nothing else to wait on
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan []byte)
	go func() {
		v, _ := a.Get(ctx, key, func(context.Context) ([]byte, error) {
			close(started)
			<-release
			return []byte("v2"), nil
		})
		done <- v
	}()
	<-started
	v, err := b.Get(ctx, key, func(context.Context) ([]byte, error) {
		t.Error("second process loaded during another's revalidation")
		return []byte("bad"), nil
	})
	if err != nil || string(v) != "v1" {
		t.Fatalf("during revalidation: %q, %v; want the stale v1", v, err)
	}
	if n := counter(t, rb, "regiondb.cache.hits", attribute.String("regiondb.cache.result", "stale")); n != 1 {
		t.Fatalf("stale hits = %d, want 1", n)
	}
	close(release)
	if v := <-done; string(v) != "v2" {
		t.Fatalf("revalidating caller got %q", v)
	}
	if v, _ := b.Get(ctx, key, constLoader(&calls, "bad")); string(v) != "v2" {
		t.Fatalf("after revalidation: %q, want v2", v)
	}
}

func TestTyped(t *testing.T) {
	e := openEnv(t)
	c, _ := newCache(t, e, cache.Config{})
	type user struct {
		ID   int64
		Name string
	}
	users := cache.Typed[user]{Cache: c}
	ctx := context.Background()
	key := cacheharness.UniqueKey(e, t.Name())
	var calls atomic.Int64
	load := func(context.Context) (user, error) {
		calls.Add(1)
		return user{42, "Aiko"}, nil
	}
	for range 2 {
		u, err := users.Get(ctx, key, load)
		if err != nil || u != (user{42, "Aiko"}) {
			t.Fatalf("Get = %+v, %v", u, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d", calls.Load())
	}
	// A cached value the codec cannot decode is reloaded, not returned as an error.
	raw := cacheharness.UniqueKey(e, t.Name()+":raw")
	if _, err := c.Get(ctx, raw, func(context.Context) ([]byte, error) { return []byte("not json"), nil }); err != nil {
		t.Fatal(err)
	}
	if u, err := users.Get(ctx, raw, load); err != nil || u.ID != 42 {
		t.Fatalf("undecodable: %+v, %v", u, err)
	}
}

func TestClosed(t *testing.T) {
	e := openEnv(t)
	mc := cacheharness.Client(e.MC1)
	defer mc.Close()
	c, err := cache.New(cache.Config{Client: mc})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var calls atomic.Int64
	if _, err := c.Get(context.Background(), "k", constLoader(&calls, "v")); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := c.Invalidate(context.Background(), "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Invalidate after Close: %v", err)
	}
}

// TestCloseDrainsInvalidations: an invalidation queued for another region
// is delivered by Close.
func TestCloseDrainsInvalidations(t *testing.T) {
	e := openEnv(t)
	ctx := context.Background()
	key := cacheharness.UniqueKey(e, t.Name())
	mc1, mc2 := cacheharness.Client(e.MC1), cacheharness.Client(e.MC2)
	defer mc1.Close()
	defer mc2.Close()
	us, _ := newCache(t, e, cache.Config{Client: mc2, Region: "us-east-1"})
	var calls atomic.Int64
	if _, err := us.Get(ctx, key, constLoader(&calls, "old")); err != nil {
		t.Fatal(err)
	}
	tokyo, err := cache.New(cache.Config{Client: mc1, Region: "ap-northeast-1",
		Remotes: []cache.Region{{Name: "us-east-1", Client: mc2}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tokyo.Invalidate(ctx, key); err != nil {
		t.Fatal(err)
	}
	tokyo.Close()
	if v, _ := us.Get(ctx, key, constLoader(&calls, "new")); string(v) != "new" {
		t.Fatalf("us-east-1 still serves %q after Tokyo's Invalidate and Close", v)
	}
}

// TestForeignItem: a value another client wrote under the key is replaced,
// never returned.
func TestForeignItem(t *testing.T) {
	e := openEnv(t)
	c, r := newCache(t, e, cache.Config{})
	key := cacheharness.UniqueKey(e, t.Name())
	mc := cacheharness.Client(e.MC1)
	defer mc.Close()
	if err := mc.Set(&memcache.Item{Key: key, Value: []byte("foreign")}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	for range 2 {
		if v, err := c.Get(context.Background(), key, constLoader(&calls, "mine")); err != nil || !bytes.Equal(v, []byte("mine")) {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if calls.Load() != 1 || counter(t, r, "regiondb.cache.errors", attribute.String("error.type", "corrupt_item")) != 1 {
		t.Fatalf("calls %d, corrupt_item errors %d", calls.Load(), counter(t, r, "regiondb.cache.errors"))
	}
}

// TestLoaderPanic: a panicking loader releases its lease at once (another
// process loads without waiting for LeaseTTL), the Gets that joined its
// load get ErrLoaderPanic, and only the Get that ran it panics.
func TestLoaderPanic(t *testing.T) {
	e := openEnv(t)
	cfg := cache.Config{LeaseTTL: time.Minute, LeaseWait: time.Minute}
	c, _ := newCache(t, e, cfg)
	other, ro := newCache(t, e, cfg) // another process: own Cache and connections
	key := cacheharness.UniqueKey(e, t.Name())
	const joiners = 8
	started, release := make(chan struct{}), make(chan struct{})
	var leaderPanic any
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		defer func() { leaderPanic = recover() }()
		c.Get(context.Background(), key, func(context.Context) ([]byte, error) {
			close(started)
			<-release
			panic("loader bug")
		})
	}()
	<-started
	var wg sync.WaitGroup
	errs := make(chan error, joiners)
	for range joiners {
		wg.Go(func() {
			_, err := c.Get(context.Background(), key, func(context.Context) ([]byte, error) {
				return nil, errors.New("joiner ran its own loader")
			})
			errs <- err
		})
	}
	// Poll until every joiner waits inside the leader's load.
	for deadline := time.Now().Add(10 * time.Second); cacheharness.GoroutinesIn("singleflight.(*Group).Do(") < joiners+1; {
		if time.Now().After(deadline) {
			t.Fatal("joiners never joined the load")
		}
		<-time.After(time.Millisecond)
	}
	close(release)
	<-leaderDone
	wg.Wait()
	close(errs)
	if leaderPanic != "loader bug" {
		t.Fatalf("the Get that ran the loader recovered %v, want the loader's panic", leaderPanic)
	}
	for err := range errs {
		if !errors.Is(err, cache.ErrLoaderPanic) {
			t.Fatalf("joined Get: err = %v, want ErrLoaderPanic", err)
		}
	}
	var calls atomic.Int64
	v, err := other.Get(context.Background(), key, constLoader(&calls, "v"))
	if err != nil || string(v) != "v" || calls.Load() != 1 {
		t.Fatalf("other process after the panic: %q, %v, %d loads", v, err, calls.Load())
	}
	if n := counter(t, ro, "regiondb.cache.lease.waits"); n != 0 {
		t.Fatalf("other process waited for the panicked loader's lease (%d waits)", n)
	}
}
