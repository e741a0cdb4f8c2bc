package cache

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
)

// HitConfig configures [Hit].
type HitConfig struct {
	// Addr is the memcached address.
	Addr string
	// Key names the keys to use (two: Key+":raw" and Key+":cache").
	Key string
	// Pairs is the number of interleaved batch pairs. If zero, 60.
	Pairs int
	// Batch is the number of Gets per batch. If zero, 200.
	Batch int
	// ValueSize is the cached value's size in bytes. If zero, 17.
	ValueSize int
}

// HitResult compares the cache's hit path with a raw gomemcache Get.
type HitResult struct {
	// Ratio is the median over pairs of cache ns/op divided by raw ns/op.
	Ratio   float64 `json:"hit_ns_ratio"`
	RawNs   float64 `json:"raw_ns"`
	CacheNs float64 `json:"cache_ns"`
	// ScopedRatio is the same for a hit whose ctx carries a read-your-writes
	// scope the cached value already satisfies (the Consistency implements
	// cache.ReadScope), against the same raw Gets.
	ScopedRatio  float64 `json:"scoped_hit_ns_ratio"`
	ScopedNs     float64 `json:"scoped_ns"`
	ScopedAllocs float64 `json:"scoped_allocs"`
	RawAllocs    float64 `json:"raw_allocs"`
	CacheAllocs  float64 `json:"cache_allocs"`
	ExtraAllocs  float64 `json:"extra_allocs"`
}

// Hit measures a cache hit, and a hit whose read-your-writes scope the
// value satisfies, against a raw gomemcache Get of an item of the same
// stored size, side by side in one process, through one memcache.Client:
// paired, interleaved batches (the order rotating per pair), median of the
// per-pair ratios. Allocations are counted exactly
// with testing.AllocsPerRun. No OpenTelemetry SDK is installed.
func Hit(ctx context.Context, cfg HitConfig) (HitResult, error) {
	if cfg.Pairs == 0 {
		cfg.Pairs = 60
	}
	if cfg.Batch == 0 {
		cfg.Batch = 200
	}
	if cfg.ValueSize == 0 {
		cfg.ValueSize = 17
	}
	mc := memcache.New(cfg.Addr)
	mc.Timeout = time.Second
	defer mc.Close()
	c, err := cache.New(cache.Config{Client: mc, TTL: time.Hour})
	if err != nil {
		return HitResult{}, err
	}
	defer c.Close()
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	ck, rk, sk := cfg.Key+":cache", cfg.Key+":raw", cfg.Key+":scoped"
	if _, err := c.Get(ctx, ck, func(context.Context) ([]byte, error) { return value, nil }); err != nil {
		return HitResult{}, err
	}
	// The scoped arm: a cache whose Consistency offers cache.ReadScope, a
	// value filled at 0-1-100, read by a scope that requires 0-1-50.
	g := &GTIDConsistency{}
	sc, err := cache.New(cache.Config{Client: mc, TTL: time.Hour, Consistency: g, ItemKeys: []cache.Secret{cache.Secret("hit-bench-key-0123456789")}})
	if err != nil {
		return HitResult{}, err
	}
	defer sc.Close()
	if _, err := sc.Get(ctx, sk, func(ctx context.Context) ([]byte, error) {
		Observed(ctx, "0-1-100")
		return value, nil
	}); err != nil {
		return HitResult{}, err
	}
	sctx := WithPosition(ctx, "0-1-50")
	stored, err := mc.Get(ck)
	if err != nil {
		return HitResult{}, err
	}
	// The raw item has the same stored size as the cache's (header included).
	if err := mc.Set(&memcache.Item{Key: rk, Value: stored.Value, Expiration: 3600}); err != nil {
		return HitResult{}, err
	}
	var opErr error
	noLoad := func(context.Context) ([]byte, error) {
		opErr = errors.New("cacheharness: hit benchmark missed")
		return value, nil
	}
	raw := func() {
		if _, err := mc.Get(rk); err != nil {
			opErr = err
		}
	}
	cached := func() {
		if _, err := c.Get(ctx, ck, noLoad); err != nil {
			opErr = err
		}
	}
	scoped := func() {
		if _, err := sc.Get(sctx, sk, noLoad); err != nil {
			opErr = err
		}
	}
	batch := func(f func()) time.Duration {
		start := time.Now()
		for range cfg.Batch {
			f()
		}
		return time.Since(start)
	}
	// Warm up every path.
	batch(raw)
	batch(cached)
	batch(scoped)
	ratios := make([]float64, 0, cfg.Pairs)
	sratios := make([]float64, 0, cfg.Pairs)
	var rawTotal, cacheTotal, scopedTotal time.Duration
	for i := range cfg.Pairs {
		// Each pair is raw next to each arm; the order rotates per pair.
		var r, k, r2, s time.Duration
		switch i % 4 {
		case 0:
			r, k, s, r2 = batch(raw), batch(cached), batch(scoped), batch(raw)
		case 1:
			k, r, r2, s = batch(cached), batch(raw), batch(raw), batch(scoped)
		case 2:
			s, r2, r, k = batch(scoped), batch(raw), batch(raw), batch(cached)
		default:
			r2, s, k, r = batch(raw), batch(scoped), batch(cached), batch(raw)
		}
		rawTotal += r + r2
		cacheTotal += k
		scopedTotal += s
		ratios = append(ratios, float64(k)/float64(r))
		sratios = append(sratios, float64(s)/float64(r2))
		if opErr != nil {
			return HitResult{}, opErr
		}
	}
	slices.Sort(ratios)
	slices.Sort(sratios)
	n := float64(cfg.Pairs * cfg.Batch)
	res := HitResult{
		Ratio:        median(ratios),
		ScopedRatio:  median(sratios),
		RawNs:        float64(rawTotal.Nanoseconds()) / (2 * n),
		CacheNs:      float64(cacheTotal.Nanoseconds()) / n,
		ScopedNs:     float64(scopedTotal.Nanoseconds()) / n,
		RawAllocs:    testing.AllocsPerRun(500, raw),
		CacheAllocs:  testing.AllocsPerRun(500, cached),
		ScopedAllocs: testing.AllocsPerRun(500, scoped),
	}
	res.ExtraAllocs = res.CacheAllocs - res.RawAllocs
	return res, opErr
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
