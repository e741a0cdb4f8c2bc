package main

import (
	"context"
	"flag"

	rywharness "github.com/regiondb/regiondb/internal/harness/ryw"
	"github.com/regiondb/regiondb/internal/testserver"
)

// overhead (`make bench-overhead`) measures dbrouter's read-path overhead over a raw
// *sql.DB on a loopback primary-key SELECT against the local stack's reader
// (interleaved query by query in one process, fresh pools per round; medians
// of the rounds, see rywharness.MeasureOverhead), the same for the routing
// *sql.DB (Router.DB), and the peak physical connections per role of the
// routing *sql.DB and of a hand-split pair under 200 concurrent requests
// (rywharness.MeasureConns). Its last line is {"ns_ratio":...,
// "extra_allocs":...,"db_ns_ratio":...,"db_extra_allocs":...,
// "plain_extra_allocs":...,"sampled_ns_ratio":...,"sampled_extra_allocs":...,
// "conns":{...}}: extra_allocs is for a read of a scope (guard and sample in
// its text), plain_extra_allocs for a read outside any scope, and the
// sampled_ keys compare the scope's read with a raw *sql.DB sending the
// same text (the statement and the sample): the router's own cost, without
// what the sample's second statement costs the server and the driver.
// Run it with `make bench-overhead`.
func overhead(fs *flag.FlagSet) runFunc {
	rounds := fs.Int("rounds", 7, "repeated runs, each with fresh pools")
	pairs := fs.Int("pairs", 61, "interleaved (raw, router) batch pairs per round")
	batch := fs.Int("batch", 200, "queries per batch")
	connsOnly := fs.Bool("conns-only", false, "measure only the peak connections")
	return func(ctx context.Context, s *testserver.Stack, logf logFunc) (any, error) {
		var o rywharness.Overhead
		var err error
		if !*connsOnly {
			o, err = rywharness.MeasureOverhead(ctx, s, rywharness.OverheadConfig{
				Rounds: *rounds, Pairs: *pairs, Batch: *batch, Logf: logf,
			})
			if err != nil {
				return nil, err
			}
		}
		if o.Conns, err = rywharness.MeasureConns(ctx, s, rywharness.ConnsConfig{}); err != nil {
			return nil, err
		}
		logf("peak connections in use (writer, reader): routing *sql.DB %d, %d at %.0f requests/s; hand-split pair %d, %d at %.0f requests/s",
			o.Conns.Routing.Writer, o.Conns.Routing.Reader, o.Conns.Routing.RequestsPerS,
			o.Conns.HandSplit.Writer, o.Conns.HandSplit.Reader, o.Conns.HandSplit.RequestsPerS)
		return o, nil
	}
}
