package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/internal/testserver"
)

// The hit path against the raw baseline. Compare with benchstat; the
// side-by-side ratio comes from `make bench-cache` (paired batches).
func benchClient(b *testing.B) (*memcache.Client, string) {
	b.Helper()
	s := testserver.Require(b)
	mc := memcache.New(s.Memcached(testserver.PrimaryRegion))
	mc.Timeout = time.Second
	b.Cleanup(func() { mc.Close() })
	return mc, "regiondb:cache:bench:" + time.Now().Format("150405.000000000")
}

func BenchmarkRawGet(b *testing.B) {
	mc, key := benchClient(b)
	if err := mc.Set(&memcache.Item{Key: key, Value: []byte("0123456789abcdef0123456789")}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mc.Get(key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetHit(b *testing.B) {
	mc, key := benchClient(b)
	c, err := cache.New(cache.Config{Client: mc})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	load := func(context.Context) ([]byte, error) { return []byte("0123456789abcdef0"), nil }
	if _, err := c.Get(ctx, key, load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, key, load); err != nil {
			b.Fatal(err)
		}
	}
}
