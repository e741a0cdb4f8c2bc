package cacheharness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	Hit      HitResult      `json:"hit"`
	Stampede StampedeResult `json:"stampede"`
	Stale    StaleResult    `json:"stale_refill"`
	Region   RegionResult   `json:"cross_region"`
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
	s.HitNsRatio = s.Hit.Ratio
	s.ExtraAllocs = s.Hit.ExtraAllocs
	s.StampedeLoaderCalls = s.Stampede.LoaderCalls
	s.StaleReads = s.Stale.StaleReads + s.Region.StaleAfterBound
	s.StaleReadsPlain = s.Stale.StaleReadsPlain
	return s, nil
}
