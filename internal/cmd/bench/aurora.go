package main

import (
	"context"
	"flag"
	"time"

	"github.com/go-sql-driver/mysql"

	auroraharness "github.com/regiondb/regiondb/internal/harness/aurora"
	"github.com/regiondb/regiondb/internal/testserver"
)

// aurora (`make bench-aurora`) runs the Aurora harness (package
// internal/harness/aurora) against the local stack made to look like Aurora
// MySQL by internal/aurorashim. Run it with `make bench-aurora`. Its last
// line is one JSON object:
//
//	{"lb_reader_violations":0,"lb_reader_control":N,"lb_reader_reads_by_readers":R,
//	 "rollback_stale_reads":0,"rollback_control":N,"failover_flaps":0,
//	 "failover_error_window_ms":X,"failover_stale_dns_ms":5000,
//	 "failover_control_flaps":F,"failover_control_error_window_ms":W,
//	 "failover_writers":["tokyo-a","tokyo-b"],"failover_control_writers":[...],
//	 "probes_per_process_per_s":Y,"probe_conns_per_process_per_s":Z,
//	 "writer_conns_per_region":{"ap-northeast-1":A,"us-east-1":B},
//	 "writer_conns_with_forwarding":{"us-east-1":0},"forwarded_writes":F,
//	 "forwarded_sessions_on_writer":S,"forwarding_stale_reads":0,"forwarding_control":N}
//
// lb_reader_control and rollback_control are the stale reads of the naive
// controls (one watermark for a load-balanced endpoint; a heartbeat without
// the writer's identity) and must be above zero. The failover_control_*
// keys are today's configuration (cluster endpoints only) in the same
// failover: its writer search may take the reader endpoint, which DNS
// balances onto the new writer, for the writer ("cluster-ro" among
// failover_control_writers). probes_per_process_per_s
// counts the connections the process opened to each instance per second
// while no writer could be found (an upper bound of the probes: what a
// writer coming up gets from each process); probe_conns_per_process_per_s
// is the same summed over the three instances. writer_conns_per_region is
// the most connections the three routers of each region held to the writer
// at once under a write-then-read load; writer_conns_with_forwarding is the
// us-east-1 figure with write forwarding on there (forwarded_writes of
// them went through the emulated forwarding reader of internal/aurorashim,
// which held at most forwarded_sessions_on_writer sessions on the writer
// itself, as Aurora's reader would). forwarding_stale_reads counts the
// us-east-1 pairs that missed their write with forwarding (must be 0);
// forwarding_control the same with forwarded sessions that ignore SESSION
// consistency (must be above 0).
func aurora(fs *flag.FlagSet) runFunc {
	reads := fs.Int("reads", 200, "write-then-read pairs per router in the read-your-writes scenarios")
	stale := fs.Duration("stale-dns", 5*time.Second, "how long the cluster writer endpoint names the old writer after the failover")
	outage := fs.Duration("outage", 6*time.Second, "how long the writer search finds no writer")
	return func(ctx context.Context, s *testserver.Stack, logf logFunc) (any, error) {
		_ = mysql.SetLogger(&mysql.NopLogger{})
		return auroraharness.Run(ctx, s, auroraharness.Config{Reads: *reads, StaleDNS: *stale, Outage: *outage, Logf: logf})
	}
}
