// Command bench-overhead measures dbrouter's read-path overhead over a raw
// *sql.DB on a loopback primary-key SELECT against the local stack's reader
// (interleaved query by query in one process, fresh pools per round; medians
// of the rounds, see rywharness.MeasureOverhead), the same for the routing
// *sql.DB (Router.DB), and the peak physical connections per role of the
// routing *sql.DB and of a hand-split pair under 200 concurrent requests
// (rywharness.MeasureConns). Its last line is {"ns_ratio":...,
// "extra_allocs":...,"db_ns_ratio":...,"db_extra_allocs":...,"conns":{...}}.
// Run it with `make bench-overhead`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/regiondb/regiondb/internal/rywharness"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	rounds := flag.Int("rounds", 7, "repeated runs, each with fresh pools")
	pairs := flag.Int("pairs", 61, "interleaved (raw, router) batch pairs per round")
	batch := flag.Int("batch", 200, "queries per batch")
	connsOnly := flag.Bool("conns-only", false, "measure only the peak connections")
	flag.Parse()
	log.SetFlags(0)
	s, err := testserver.Lookup()
	if err != nil {
		log.Fatal(err)
	}
	var o rywharness.Overhead
	if !*connsOnly {
		o, err = rywharness.MeasureOverhead(context.Background(), s, rywharness.OverheadConfig{
			Rounds: *rounds, Pairs: *pairs, Batch: *batch,
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	if o.Conns, err = rywharness.MeasureConns(context.Background(), s, rywharness.ConnsConfig{}); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "peak connections in use (writer, reader): routing *sql.DB %d, %d at %.0f requests/s; hand-split pair %d, %d at %.0f requests/s\n",
		o.Conns.Routing.Writer, o.Conns.Routing.Reader, o.Conns.Routing.RequestsPerS,
		o.Conns.HandSplit.Writer, o.Conns.HandSplit.Reader, o.Conns.HandSplit.RequestsPerS)
	b, _ := json.Marshal(o)
	fmt.Println(string(b))
}
