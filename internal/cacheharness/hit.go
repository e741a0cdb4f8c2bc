package cacheharness

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
	Ratio       float64 `json:"hit_ns_ratio"`
	RawNs       float64 `json:"raw_ns"`
	CacheNs     float64 `json:"cache_ns"`
	RawAllocs   float64 `json:"raw_allocs"`
	CacheAllocs float64 `json:"cache_allocs"`
	ExtraAllocs float64 `json:"extra_allocs"`
}

// Hit measures a cache hit against a raw gomemcache Get of an item of the
// same stored size, side by side in one process, through one
// memcache.Client: paired, interleaved batches (the order alternating per
// pair), median of the per-pair ratios. Allocations are counted exactly
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
	ck, rk := cfg.Key+":cache", cfg.Key+":raw"
	if _, err := c.Get(ctx, ck, func(context.Context) ([]byte, error) { return value, nil }); err != nil {
		return HitResult{}, err
	}
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
	batch := func(f func()) time.Duration {
		start := time.Now()
		for range cfg.Batch {
			f()
		}
		return time.Since(start)
	}
	// Warm up both paths.
	batch(raw)
	batch(cached)
	ratios := make([]float64, 0, cfg.Pairs)
	var rawTotal, cacheTotal time.Duration
	for i := range cfg.Pairs {
		var r, k time.Duration
		if i%2 == 0 {
			r, k = batch(raw), batch(cached)
		} else {
			k, r = batch(cached), batch(raw)
		}
		rawTotal += r
		cacheTotal += k
		ratios = append(ratios, float64(k)/float64(r))
		if opErr != nil {
			return HitResult{}, opErr
		}
	}
	slices.Sort(ratios)
	n := float64(cfg.Pairs * cfg.Batch)
	res := HitResult{
		Ratio:       median(ratios),
		RawNs:       float64(rawTotal.Nanoseconds()) / n,
		CacheNs:     float64(cacheTotal.Nanoseconds()) / n,
		RawAllocs:   testing.AllocsPerRun(500, raw),
		CacheAllocs: testing.AllocsPerRun(500, cached),
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
