package main

import (
	"context"
	"flag"
	"os"

	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"github.com/regiondb/regiondb/internal/testserver"
)

// cache (`make bench-cache`) measures the cache package against the local stack
// (found through REGIONDB_STACK, as `make bench-cache` runs it under the
// stack command): the hit path (also with a satisfied read-your-writes
// scope) against raw gomemcache, 64 concurrent misses across 4 processes,
// the stale-refill race against a stalled replica with a plain gomemcache
// cache-aside as control, cross-region invalidation, read-your-writes
// through the other region's cache with late or lost invalidations (and a
// control that ignores the scope), and 1000 invalidations during a 5 s
// outage of the other region's memcached. Its last stdout line is one JSON
// object:
//
//	{"hit_ns_ratio":...,"extra_allocs":...,"stampede_loader_calls":...,"stale_reads":0,"stale_reads_plain":...,
//	 "ryw_hits":{"reads":...,"violations":0},"ryw_hits_control":{"reads":...,"violations":...},
//	 "scoped_hit_ns_ratio":...,"invalidations_lost":0}
//
// followed by further keys with the details.
func cache(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, s *testserver.Stack, _ logFunc) (any, error) {
		e, err := cacheharness.Open(ctx, s)
		if err != nil {
			return nil, err
		}
		defer e.Close()
		return cacheharness.All(ctx, e, os.Stdout)
	}
}
