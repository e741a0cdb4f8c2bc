package cache_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"go.opentelemetry.io/otel/attribute"
)

// TestOutageMemcachedDown stops the region's memcached: every Get falls
// through to the loader without an error, the breaker opens, metrics and
// the log say so, and the cache serves hits again once memcached is back.
func TestOutageMemcachedDown(t *testing.T) {
	e := openEnv(t)
	ctx := context.Background()
	var logs syncBuffer
	mc := cacheharness.Client(e.MC1)
	mc.Timeout = 100 * time.Millisecond
	defer mc.Close()
	c, r := newCache(t, e, cache.Config{Client: mc, BreakerThreshold: 3, BreakerCooldown: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	key := cacheharness.UniqueKey(e, t.Name())
	var calls atomic.Int64
	if _, err := c.Get(ctx, key, constLoader(&calls, "v")); err != nil {
		t.Fatal(err)
	}
	if err := e.Stack.Stop(ctx, "mc1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stack.Start(context.Background(), "mc1") })
	calls.Store(0)
	for i := range 20 {
		v, err := c.Get(ctx, key, constLoader(&calls, "v"))
		if err != nil || string(v) != "v" {
			t.Fatalf("Get #%d with memcached down = %q, %v; want the loader's value and no error", i, v, err)
		}
	}
	if err := c.Invalidate(ctx, key); err != nil {
		t.Fatalf("Invalidate with memcached down: %v", err)
	}
	if calls.Load() != 20 {
		t.Fatalf("loader calls = %d, want 20", calls.Load())
	}
	// The pooled connection fails first (EOF: "other"), then dials are refused.
	faults := counter(t, r, "regiondb.cache.errors")
	refused := counter(t, r, "regiondb.cache.errors", attribute.String("error.type", "connection"))
	bypassed := counter(t, r, "regiondb.cache.skips", attribute.String("regiondb.cache.reason", "breaker_open"))
	if faults < 3 || refused == 0 || bypassed == 0 {
		t.Fatalf("errors %d (connection %d), breaker bypasses %d; want >= 3 (> 0) and > 0", faults, refused, bypassed)
	}
	if !strings.Contains(logs.String(), "breaker open") {
		t.Fatalf("no breaker log line: %s", logs.String())
	}
	if err := e.Stack.Start(ctx, "mc1"); err != nil {
		t.Fatal(err)
	}
	// Poll until the cache fills and hits again (breaker cooldown, probe).
	deadline := time.Now().Add(10 * time.Second)
	for hits := counter(t, r, "regiondb.cache.hits"); ; {
		if _, err := c.Get(ctx, key, constLoader(&calls, "v")); err != nil {
			t.Fatal(err)
		}
		if counter(t, r, "regiondb.cache.hits") > hits {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no hit within 10 s after memcached came back")
		}
		<-time.After(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "breaker closed") {
		t.Fatalf("no recovery log line: %s", logs.String())
	}
}

// TestOutageMemcachedHangs: a memcached that accepts connections and never
// answers (no real server does that on demand, hence the listener) costs
// BreakerThreshold client timeouts, then nothing.
func TestOutageMemcachedHangs(t *testing.T) {
	e := openEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	done := make(chan struct{})
	conns.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				<-done
				return
			}
			held = append(held, c) // never answer
		}
	})
	t.Cleanup(func() { ln.Close(); close(done); conns.Wait() })
	mc := memcache.New(ln.Addr().String())
	mc.Timeout = 50 * time.Millisecond
	defer mc.Close()
	c, r := newCache(t, e, cache.Config{Client: mc, BreakerThreshold: 3, BreakerCooldown: time.Hour})
	var calls atomic.Int64
	for i := range 20 {
		v, err := c.Get(context.Background(), "k", constLoader(&calls, "v"))
		if err != nil || string(v) != "v" {
			t.Fatalf("Get #%d = %q, %v", i, v, err)
		}
	}
	timeouts := counter(t, r, "regiondb.cache.errors", attribute.String("error.type", "timeout"))
	bypassed := counter(t, r, "regiondb.cache.skips", attribute.String("regiondb.cache.reason", "breaker_open"))
	if timeouts != 3 || bypassed != 17 || calls.Load() != 20 {
		t.Fatalf("timeouts %d, bypasses %d, loads %d; want 3, 17, 20", timeouts, bypassed, calls.Load())
	}
}

// TestTooLarge: values over the item size limit skip the cache with a
// counted reason; a limit set above the server's is caught by the server's
// refusal, also without an error.
func TestTooLarge(t *testing.T) {
	e := openEnv(t)
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 2<<20)
	for _, tc := range []struct {
		name       string
		maxItem    int
		metric     string
		attr       attribute.KeyValue
		wantMetric int64
	}{
		{"over MaxItemSize", 0, "regiondb.cache.skips", attribute.String("regiondb.cache.reason", "too_large"), 2},
		{"over the server's limit", 8 << 20, "regiondb.cache.errors", attribute.String("error.type", "server_error"), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := newCache(t, e, cache.Config{MaxItemSize: tc.maxItem})
			key := cacheharness.UniqueKey(e, t.Name())
			var calls atomic.Int64
			for range 2 {
				v, err := c.Get(ctx, key, func(context.Context) ([]byte, error) { calls.Add(1); return big, nil })
				if err != nil || len(v) != len(big) {
					t.Fatalf("Get = %d bytes, %v", len(v), err)
				}
			}
			if calls.Load() != 2 {
				t.Fatalf("loader calls = %d, want 2 (never cached)", calls.Load())
			}
			if n := counter(t, r, tc.metric, tc.attr); n != tc.wantMetric {
				t.Fatalf("%s{%v} = %d, want %d", tc.metric, tc.attr, n, tc.wantMetric)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
