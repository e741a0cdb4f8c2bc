package dbrouter

import (
	"context"
	"database/sql"
	"testing"

	failoverharness "github.com/regiondb/regiondb/internal/harness/failover"
	"github.com/regiondb/regiondb/internal/testserver"
)

// uninstrumented turns rt into the uninstrumented baseline of the
// instrumentation benchmarks: no spans, no metrics, no telemetry calls.
func uninstrumented(rt *Router) *Router {
	rt.tel.close()
	rt.tel = nil
	return rt
}

// BenchmarkOtelNoop compares a primary-key read on the stack's local reader
// through a router instrumented with the otel globals and no SDK installed
// (the default) and through an uninstrumented one (compare with benchstat).
func BenchmarkOtelNoop(b *testing.B) {
	s := testserver.Require(b)
	cfg := stackConfig(b, s, testserver.PrimaryRegion)
	cfg.Readers = cfg.Readers[:1]
	for _, bc := range []struct {
		name string
		rt   *Router
	}{
		{"uninstrumented", uninstrumented(openRouter(b, cfg))},
		{"instrumented", openRouter(b, cfg)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var v int
			for b.Loop() {
				_ = bc.rt.QueryRowContext(context.Background(), "SELECT 1").Scan(&v)
			}
		})
	}
}

// BenchmarkOtelNoopRatio measures otel_noop_ratio for make bench-failover:
// ns/op of the instrumented router (no SDK) over the uninstrumented one, in
// paired, interleaved batches in one process (median of the per-pair
// ratios), for a primary-key SELECT on the stack's local reader; and the same
// on a driver that does no I/O (otel_noop_cpu_ratio: the pure CPU cost).
func BenchmarkOtelNoopRatio(b *testing.B) {
	s := testserver.Require(b)
	cfg := stackConfig(b, s, testserver.PrimaryRegion)
	cfg.Readers = cfg.Readers[:1]
	// One router, switched between instrumented and not, so that both
	// sides use the same pool and connections.
	rt := openRouter(b, cfg)
	nop := openRouter(b, Config{
		Region:  "a",
		Writer:  Endpoint{Name: "w", Connector: nopConnector{}},
		Readers: []Endpoint{{Name: "r", Connector: nopConnector{}, Region: "a"}},
	})
	nop.rdrs()[0].wm.Store(&position{parts: []posPart{{key: domainKey(0), seq: 10}}})
	ctx := context.Background()
	read := func(rt *Router, tel *telemetry) func() {
		return func() {
			rt.tel = tel
			var v int64
			if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", "k").Scan(&v); err != nil && err != sql.ErrNoRows {
				b.Fatal(err)
			}
		}
	}
	tel, nopTel := rt.tel, nop.tel
	for b.Loop() {
		ratio, a, i := failoverharness.PairedRatio(read(rt, nil), read(rt, tel), 200, 151)
		b.ReportMetric(ratio, "otel_noop_ratio")
		b.ReportMetric(float64(a.Nanoseconds()), "uninstrumented-ns/op")
		b.ReportMetric(float64(i.Nanoseconds()), "instrumented-ns/op")
		cpu, _, _ := failoverharness.PairedRatio(read(nop, nil), read(nop, nopTel), 2000, 151)
		b.ReportMetric(cpu, "otel_noop_cpu_ratio")
	}
	allocs := func(f func()) float64 { return testing.AllocsPerRun(1000, f) }
	b.ReportMetric(allocs(read(nop, nopTel))-allocs(read(nop, nil)), "extra-allocs/op")
	rt.tel, nop.tel = tel, nopTel // closed by Close
}
