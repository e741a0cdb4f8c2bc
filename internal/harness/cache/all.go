package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Summary is the bench-cache result. Its first five keys are the ones
// `make bench-cache` reports.
type Summary struct {
	HitNsRatio          float64 `json:"hit_ns_ratio"`
	ExtraAllocs         float64 `json:"extra_allocs"`
	StampedeLoaderCalls int     `json:"stampede_loader_calls"`
	// StaleReads is the cache's stale reads: stale-refill race plus
	// cross-region reads after the bound.
	StaleReads int64 `json:"stale_reads"`
	// StaleReadsPlain is the plain gomemcache control's stale reads in the
	// stale-refill race.
	StaleReadsPlain int64 `json:"stale_reads_plain"`

	// RYWHitsSummary: read-your-writes through the other region's cache
	// with late or lost invalidations; its control ignores the scope.
	RYWHitsSummary    RYWSummary        `json:"ryw_hits"`
	RYWHitsControl    RYWControlSummary `json:"ryw_hits_control"`
	ScopedHitNsRatio  float64           `json:"scoped_hit_ns_ratio"`
	InvalidationsLost int               `json:"invalidations_lost"`

	Hit      HitResult      `json:"hit"`
	Stampede StampedeResult `json:"stampede"`
	Stale    StaleResult    `json:"stale_refill"`
	Region   RegionResult   `json:"cross_region"`
	// The same scenarios through real *dbrouter.Router values, and the
	// stale refill with the stand-in's fallback to the writer disabled.
	StaleRouter     StaleResult    `json:"stale_refill_router"`
	RegionRouter    RegionResult   `json:"cross_region_router"`
	StaleNoFallback StaleResult    `json:"stale_refill_no_fallback"`
	StampedeSlow    StampedeResult `json:"stampede_slow_loader"`
	RYW             RYWResult      `json:"ryw"`
	Lost            LostResult     `json:"lost_invalidations"`
}

// RYWSummary is the "ryw_hits" figure.
type RYWSummary struct {
	Reads      int64 `json:"reads"`
	Violations int64 `json:"violations"`
}

// RYWControlSummary is the "ryw_hits_control" figure.
type RYWControlSummary struct {
	Reads      int64 `json:"reads"`
	Violations int64 `json:"violations"`
}

// All runs every measurement against e, logging each result to log as it
// completes, and returns the summary.
func All(ctx context.Context, e *Env, log io.Writer) (Summary, error) {
	var s Summary
	var err error
	show := func(name string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(log, "%s: %s\n", name, b)
	}
	if s.Hit, err = Hit(ctx, HitConfig{Addr: e.MC1, Key: e.key("hit")}); err != nil {
		return s, fmt.Errorf("hit: %w", err)
	}
	show("hit", s.Hit)
	if s.Stampede, err = Stampede(ctx, StampedeConfig{Addr: e.MC1, Key: e.key("stampede")}); err != nil {
		return s, fmt.Errorf("stampede: %w", err)
	}
	show("stampede", s.Stampede)
	if s.Stale, err = StaleRefill(ctx, e, StaleConfig{}); err != nil {
		return s, fmt.Errorf("stale refill: %w", err)
	}
	show("stale_refill", s.Stale)
	if s.Region, err = CrossRegion(ctx, e, RegionConfig{}); err != nil {
		return s, fmt.Errorf("cross region: %w", err)
	}
	show("cross_region", s.Region)
	rts, err := OpenRouters(e)
	if err != nil {
		return s, err
	}
	defer rts.Close()
	if s.StaleRouter, err = StaleRefill(ctx, e, rts.StaleConfig()); err != nil {
		return s, fmt.Errorf("stale refill (router): %w", err)
	}
	show("stale_refill_router", s.StaleRouter)
	if s.RegionRouter, err = CrossRegion(ctx, e, rts.RegionConfig()); err != nil {
		return s, fmt.Errorf("cross region (router): %w", err)
	}
	show("cross_region_router", s.RegionRouter)
	if s.StaleNoFallback, err = StaleRefill(ctx, e, StaleConfig{NoFallback: true}); err != nil {
		return s, fmt.Errorf("stale refill (no fallback): %w", err)
	}
	show("stale_refill_no_fallback", s.StaleNoFallback)
	// A loader slower than LeaseWait (1 s by default): waiters give up and
	// load once per process, without filling.
	if s.StampedeSlow, err = Stampede(ctx, StampedeConfig{Addr: e.MC1, Key: e.key("stampede:slow"), LoadTime: 1500 * time.Millisecond}); err != nil {
		return s, fmt.Errorf("stampede (slow loader): %w", err)
	}
	show("stampede_slow_loader", s.StampedeSlow)
	if s.RYW, err = RYWHits(ctx, e, RYWConfig{}); err != nil {
		return s, fmt.Errorf("ryw hits: %w", err)
	}
	show("ryw", s.RYW)
	if s.Lost, err = InvalidationsLost(ctx, e, LostConfig{}); err != nil {
		return s, fmt.Errorf("lost invalidations: %w", err)
	}
	show("lost_invalidations", s.Lost)
	s.HitNsRatio = s.Hit.Ratio
	s.ExtraAllocs = s.Hit.ExtraAllocs
	s.StampedeLoaderCalls = s.Stampede.LoaderCalls
	// stale_reads counts every scenario (without a fallback to the writer,
	// the stale reads served from memcached: a load there can only return
	// the stale replica's row); stale_reads_plain is the control of the
	// stale refill (GTID stand-in), as before.
	s.StaleReads = s.Stale.StaleReads + s.Region.StaleAfterBound + s.StaleRouter.StaleReads +
		s.RegionRouter.StaleAfterBound + s.StaleNoFallback.StaleHits
	s.StaleReadsPlain = s.Stale.StaleReadsPlain
	s.RYWHitsSummary = RYWSummary{Reads: s.RYW.Reads, Violations: s.RYW.Violations}
	s.RYWHitsControl = RYWControlSummary{Reads: s.RYW.ControlReads, Violations: s.RYW.ControlViolations}
	s.ScopedHitNsRatio = s.Hit.ScopedRatio
	s.InvalidationsLost = s.Lost.Lost + int(s.Lost.Dropped)
	return s, nil
}
