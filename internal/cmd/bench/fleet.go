package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	fleetharness "github.com/regiondb/regiondb/internal/harness/fleet"
	"github.com/regiondb/regiondb/internal/testserver"
)

// fleet (`make bench-fleet`) runs the fleet harness (package internal/harness/fleet)
// against the local stack: N routers in one process (N = 1, 10, 40) under a
// write-then-read-back load, with and without the shared memcached
// WatermarkStore, counting what the servers received. Run it with
// `make bench-fleet`. Its last line is one JSON object:
//
//	{"monitor_queries_per_read":...,"shared":{"monitor_qps_per_reader":...,
//	 "reads_to_writer":...,"p50_penalty_ms":...},"new_conns_per_s_per_router":...,
//	 "position_queries_per_unscoped_write":...,"overload":{"searches":0,"typed_errors":...},...}
func fleet(fs *flag.FlagSet) runFunc {
	dur := fs.Duration("duration", 6*time.Second, "measured load per fleet size and mode")
	sizes := fs.String("n", "1,10,40", "fleet sizes, comma-separated")
	return func(ctx context.Context, s *testserver.Stack, logf logFunc) (any, error) {
		var ns []int
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-n: bad fleet size %q", f)
			}
			ns = append(ns, n)
		}
		// The driver logs refused connections through a global logger; the
		// overload phase causes many on purpose.
		_ = mysql.SetLogger(&mysql.NopLogger{})
		return fleetharness.Run(ctx, s, fleetharness.Config{Ns: ns, Duration: *dur, Logf: logf})
	}
}
