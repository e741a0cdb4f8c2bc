package cache_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"go.opentelemetry.io/otel/attribute"
)

// partition is a TCP proxy to a real server that can cut the link: a
// network partition between regions, which no real server gives on demand.
type partition struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex // protects conns
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newPartition(t *testing.T, target string) *partition {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *partition) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(up, c); up.Close() })
		p.wg.Go(func() { io.Copy(c, up); c.Close() })
	}
}

// setCut cuts (closing live connections) or restores the link.
func (p *partition) setCut(cut bool) {
	p.cut.Store(cut)
	if !cut {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestInvalidationRetriedAcrossPartition: an invalidation that cannot reach
// another region's cluster is retried until the link comes back, and that
// region then stops serving the old value.
func TestInvalidationRetriedAcrossPartition(t *testing.T) {
	e := openEnv(t)
	ctx := context.Background()
	key := cacheharness.UniqueKey(e, t.Name())
	us, _ := newCache(t, e, cache.Config{Client: cacheharness.Client(e.MC2), Region: "us-east-1"})
	var calls atomic.Int64
	if v, err := us.Get(ctx, key, constLoader(&calls, "old")); err != nil || string(v) != "old" {
		t.Fatalf("fill: %q, %v", v, err)
	}
	link := newPartition(t, e.MC2)
	remote := memcache.New(link.ln.Addr().String())
	remote.Timeout = 100 * time.Millisecond
	defer remote.Close()
	tokyo, r := newCache(t, e, cache.Config{Region: "ap-northeast-1",
		Remotes: []cache.Region{{Name: "us-east-1", Client: remote}}})

	link.setCut(true)
	if err := tokyo.Invalidate(ctx, key); err != nil {
		t.Fatalf("Invalidate during a partition: %v", err)
	}
	// Wait until the worker has failed to reach us-east-1.
	for wait := time.Now().Add(10 * time.Second); counter(t, r, "regiondb.cache.errors", attribute.String("regiondb.region", "us-east-1")) == 0; {
		if time.Now().After(wait) {
			t.Fatal("the invalidation worker never tried us-east-1")
		}
		<-time.After(5 * time.Millisecond)
	}
	if v, _ := us.Get(ctx, key, constLoader(&calls, "new")); string(v) != "old" {
		t.Fatalf("us-east-1 got the marker through a cut link: %q", v)
	}
	link.setCut(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := us.Get(ctx, key, constLoader(&calls, "new"))
		if err != nil {
			t.Fatal(err)
		}
		if string(v) == "new" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("us-east-1 still serves the old value 10 s after the link came back")
		}
		<-time.After(10 * time.Millisecond) // poll until the retry lands
	}
	retried := counter(t, r, "regiondb.cache.invalidations",
		attribute.String("regiondb.region", "us-east-1"), attribute.String("regiondb.cache.result", "retried"))
	if retried != 1 {
		t.Fatalf("retried invalidations = %d, want 1", retried)
	}
}
