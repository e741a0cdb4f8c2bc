package main

import (
	"context"
	"flag"
	"os"
	"time"

	sessionharness "github.com/regiondb/regiondb/internal/harness/session"
	"github.com/regiondb/regiondb/internal/testserver"
)

// session (`make bench-session`) measures the session package against the local
// stack (found through REGIONDB_STACK, as `make bench-session` runs it under
// the stack command): DynamoDB writes per read-only request at steady state
// (with a touch on every request as control), cross-region anomalies of
// users alternating regions while the table replicates with a 1 s delay
// (with the cookie's version/home-region mechanism, and without it as
// control), and lost updates under concurrent changes (conditional merge,
// and a blind read-modify-write as control); a regional outage (us-east-1's
// dynalite stopped for 20 s of 60, with the fallback to Tokyo's replica and
// without), a home region that is unreachable, concurrent writes from both
// regions, and a logout racing a change (tombstones, and the old algorithm
// as control). Its last stdout line is one JSON object:
//
//	{"writes_per_readonly_request":...,"cross_region_anomalies":0,"cross_region_anomalies_without":...}
//
// followed by further keys with the details.
func session(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, s *testserver.Stack, _ logFunc) (any, error) {
		e, err := sessionharness.Open(ctx, s, "bench_sessions", time.Second)
		if err != nil {
			return nil, err
		}
		defer e.Close(context.Background())
		return sessionharness.All(ctx, e, os.Stdout)
	}
}
