// Command bench-fleet runs the fleet harness (package internal/fleetharness)
// against the local stack: N routers in one process (N = 1, 10, 40) under a
// write-then-read-back load, with and without the shared memcached
// WatermarkStore, counting what the servers received. Run it with
// `make bench-fleet`. Its last line is one JSON object:
//
//	{"monitor_queries_per_read":...,"shared":{"monitor_qps_per_reader":...,
//	 "reads_to_writer":...,"p50_penalty_ms":...},"new_conns_per_s_per_router":...,
//	 "position_queries_per_unscoped_write":...,"overload":{"searches":0,"typed_errors":...},...}
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/internal/fleetharness"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	dur := flag.Duration("duration", 6*time.Second, "measured load per fleet size and mode")
	sizes := flag.String("n", "1,10,40", "fleet sizes, comma-separated")
	flag.Parse()
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench-fleet: -n: bad fleet size %q\n", f)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	// The driver logs refused connections through a global logger; the
	// overload phase causes many on purpose.
	_ = mysql.SetLogger(&mysql.NopLogger{})
	s, err := testserver.Lookup()
	if err != nil {
		logf("bench-fleet: %v", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := fleetharness.Run(ctx, s, fleetharness.Config{Ns: ns, Duration: *dur, Logf: logf})
	if err != nil {
		logf("bench-fleet: %v", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
}
