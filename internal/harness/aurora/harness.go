// Package aurora measures dbrouter's Aurora paths on the local stack
// through the Aurora shim (internal/aurorashim): a load-balanced reader
// endpoint over two instances with one stalled, an unplanned failover that
// rolls the heartbeat back, a failover behind stale DNS, a writer search
// that finds nothing, and the writer connections of each region. Each
// correctness scenario also runs a naive control (today's configuration or
// a heartbeat without writer identity) that must fail, proving it can see
// the failure. internal/cmd/bench aurora prints the report as JSON.
package aurora

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/aurorashim"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Database is the database the scenarios write to.
const Database = "regiondb_aurora"

// Endpoint names of the fake cluster.
const (
	writerEndpoint = "app.cluster-abc.ap-northeast-1.rds.test:3306"
	readerEndpoint = "app.cluster-ro-abc.ap-northeast-1.rds.test:3306"
	// The secondary cluster's reader endpoint of a Global Database, where
	// write forwarding is enabled.
	readerEndpointUS = "app.cluster-ro-def.us-east-1.rds.test:3306"
)

// Config sizes the scenarios. Zero fields get defaults.
type Config struct {
	// Reads is the number of write-then-read pairs of the read-your-writes
	// scenarios (per router).
	Reads int
	// StaleDNS is how long the cluster writer endpoint keeps naming the old
	// writer after a failover.
	StaleDNS time.Duration
	// Outage is how long the writer search scenario finds no writer.
	Outage time.Duration
	// Logf, if not nil, receives progress lines.
	Logf func(format string, args ...any)
}

// Report is the figures of issue 16 that the stack can show.
type Report struct {
	LBReaderViolations    int64 `json:"lb_reader_violations"`
	LBReaderControl       int64 `json:"lb_reader_control"`
	LBReaderReads         int64 `json:"lb_reader_reads_by_readers"`
	RollbackStaleReads    int64 `json:"rollback_stale_reads"`
	RollbackControl       int64 `json:"rollback_control"`
	FailoverFlaps         int64 `json:"failover_flaps"`
	FailoverErrorWindowMS int64 `json:"failover_error_window_ms"`
	StaleDNSMS            int64 `json:"failover_stale_dns_ms"`
	// The failover under today's configuration (cluster endpoints only).
	FailoverControlFlaps         int64 `json:"failover_control_flaps"`
	FailoverControlErrorWindowMS int64 `json:"failover_control_error_window_ms"`
	// The endpoints that took the successful writes, in order.
	FailoverWriters        []string `json:"failover_writers"`
	FailoverControlWriters []string `json:"failover_control_writers"`
	// ProbesPerProcessPerS is the connections one process opened to each
	// instance per second while no writer could be found (what a writer
	// coming up receives from each process of the fleet);
	// ProbeConnsPerProcessPerS is the same summed over every instance.
	ProbesPerProcessPerS     float64          `json:"probes_per_process_per_s"`
	ProbeConnsPerProcessPerS float64          `json:"probe_conns_per_process_per_s"`
	WriterConnsPerRegion     map[string]int64 `json:"writer_conns_per_region"`
	// WriterConnsWithForwarding is WriterConnsPerRegion's us-east-1 figure
	// with write forwarding on in us-east-1; ForwardedWrites counts the
	// writes its routers forwarded, and ForwardedSessions the most
	// forwarded sessions the reader held on the writer at once (Aurora's,
	// not the routers'). ForwardingStaleReads counts the us-east-1
	// write-then-read pairs that missed their write with forwarding (must
	// be 0); ForwardingControl the same with sessions that ignore SESSION
	// consistency (EVENTUAL: must be above 0).
	WriterConnsWithForwarding map[string]int64 `json:"writer_conns_with_forwarding"`
	ForwardedWrites           int64            `json:"forwarded_writes"`
	ForwardedSessions         int64            `json:"forwarded_sessions_on_writer"`
	ForwardingStaleReads      int64            `json:"forwarding_stale_reads"`
	ForwardingControl         int64            `json:"forwarding_control"`
}

func (c *Config) defaults() {
	if c.Reads == 0 {
		c.Reads = 100
	}
	if c.StaleDNS == 0 {
		c.StaleDNS = 5 * time.Second
	}
	if c.Outage == 0 {
		c.Outage = 6 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Run runs every scenario and leaves the stack in its fresh topology.
func Run(ctx context.Context, s *testserver.Stack, cfg Config) (*Report, error) {
	cfg.defaults()
	rep := &Report{}
	steps := []struct {
		name string
		fn   func(context.Context, *testserver.Stack, Config, *Report) error
	}{
		{"load-balanced reader endpoint", LBReader},
		{"heartbeat rollback", Rollback},
		{"failover behind stale DNS", Failover},
		{"writer search without a writer", Probes},
		{"writer connections per region", WriterConns},
	}
	for _, st := range steps {
		cfg.Logf("bench-aurora: %s", st.name)
		if err := st.fn(ctx, s, cfg, rep); err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return rep, fresh(ctx, s)
}

// fresh resets the stack and creates the scenarios' table.
func fresh(ctx context.Context, s *testserver.Stack) error {
	if err := s.Reset(ctx); err != nil {
		return err
	}
	db, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + Database,
		"CREATE TABLE IF NOT EXISTS " + Database + ".kv (k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return s.WaitReplicated(ctx)
}

// cluster is the shim and the Config of a fake Aurora cluster.
type cluster struct {
	s     *testserver.Stack
	shim  *aurorashim.Shim
	res   *aurorashim.Resolver
	hosts map[string]string
}

// newCluster makes the stack a fake Aurora cluster: with global, a Global
// Database (m1, r1 in ap-northeast-1, r2 in us-east-1); without, one
// regional cluster of three instances in ap-northeast-1. The reader
// endpoint balances over r1 and r2.
func newCluster(ctx context.Context, s *testserver.Stack, global bool) (*cluster, error) {
	res := &aurorashim.Resolver{}
	res.Set(writerEndpoint, s.Addr("m1"))
	res.Set(readerEndpoint, s.Addr("r1"), s.Addr("r2"))
	r2 := aurorashim.Instance{Server: "r2", ID: "tokyo-c", Region: testserver.PrimaryRegion}
	hosts := map[string]string{testserver.PrimaryRegion: "?.abc.ap-northeast-1.rds.test:3306"}
	if global {
		r2 = aurorashim.Instance{Server: "r2", ID: "virginia-a", Region: testserver.SecondaryRegion}
		hosts[testserver.SecondaryRegion] = "?.def.us-east-1.rds.test:3306"
		res.Set(readerEndpointUS, s.Addr("r2"))
	}
	insts := []aurorashim.Instance{
		{Server: "m1", ID: "tokyo-a", Region: testserver.PrimaryRegion},
		{Server: "r1", ID: "tokyo-b", Region: testserver.PrimaryRegion},
		r2,
	}
	for _, in := range insts {
		h := hosts[in.Region]
		res.Set(strings.Replace(h, "?", in.ID, 1), s.Addr(in.Server))
	}
	c := &cluster{s: s, res: res, hosts: hosts,
		shim: &aurorashim.Shim{Stack: s, Resolver: res, Global: global, Instances: insts}}
	return c, c.shim.Setup(ctx)
}

// withShim returns a shim that shares c's tables and resolver but counts
// connections on its own (one per group of routers).
func (c *cluster) withShim() *aurorashim.Shim {
	return &aurorashim.Shim{Stack: c.s, Resolver: c.res, Global: c.shim.Global, Instances: c.shim.Instances}
}

// config returns a Config naming only the cluster endpoints, as most Aurora
// users configure it (today's behaviour when opened with Open).
func (c *cluster) config(sh *aurorashim.Shim, region string) (dbrouter.Config, error) {
	ep := func(name, addr string) (dbrouter.Endpoint, error) {
		dsn := strings.Replace(c.s.DSN("m1", Database), c.s.Addr("m1"), addr, 1)
		conn, err := sh.Connector(dsn)
		return dbrouter.Endpoint{Name: name, DSN: dsn, Connector: conn, Region: testserver.PrimaryRegion}, err
	}
	w, err := ep("cluster", writerEndpoint)
	if err != nil {
		return dbrouter.Config{}, err
	}
	r, err := ep("cluster-ro", readerEndpoint)
	if err != nil {
		return dbrouter.Config{}, err
	}
	return dbrouter.Config{
		Region: region, Writer: w, Readers: []dbrouter.Endpoint{r},
		Aurora: true, Dialect: dbrouter.DialectHeartbeat, HeartbeatPeriod: 20 * time.Millisecond,
		MaxWait:   300 * time.Millisecond,
		TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: []byte("auroraharness-token-key-0123456789")}},
	}, nil
}

// instances turns a cluster-endpoint Config into one for OpenAurora.
func (c *cluster) instances(cfg dbrouter.Config, sh *aurorashim.Shim) dbrouter.Config {
	cfg.AuroraInstanceHosts = c.hosts
	cfg.NewConnector = sh.Connector
	return cfg
}

var keySeq atomic.Int64

func newKey(tag string) string {
	return fmt.Sprintf("%s-%d-%d", tag, time.Now().UnixNano(), keySeq.Add(1))
}

// writeRead writes a fresh row and reads it back in one read-your-writes
// scope; it reports whether the read missed the row (a stale read).
func writeRead(ctx context.Context, rt *dbrouter.Router) (stale bool, err error) {
	sctx := dbrouter.NewContext(ctx)
	k := newKey("ryw")
	if _, err := rt.ExecContext(sctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
		return false, err
	}
	var v int
	err = rt.QueryRowContext(sctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	return false, err
}

// waitReady waits until the heartbeat runs and the monitors know the
// readers: a write-read pair succeeds with its read served by a reader.
func waitReady(ctx context.Context, rt *dbrouter.Router) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := rt.Stats()
		_, err := writeRead(ctx, rt)
		after := rt.Stats()
		if err == nil && after.ReadsLocal+after.ReadsRemote > before.ReadsLocal+before.ReadsRemote {
			return nil
		}
		if err == nil {
			err = errors.New("no read was served by a reader")
		}
		if time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// LBReader: a reader endpoint that DNS balances over r1 and r2, with r2
// stalled. The control (Open: one watermark for the endpoint, today's
// behaviour) serves stale reads; OpenAurora (one watermark per instance)
// must serve none.
func LBReader(ctx context.Context, s *testserver.Stack, cfg Config, rep *Report) error {
	if err := fresh(ctx, s); err != nil {
		return err
	}
	c, err := newCluster(ctx, s, false)
	if err != nil {
		return err
	}
	run := func(aurora bool) (stale, byReaders int64, err error) {
		ccfg, err := c.config(c.shim, testserver.PrimaryRegion)
		if err != nil {
			return 0, 0, err
		}
		// No idle reader connections: each read connects anew, so the
		// endpoint's DNS balancing applies per read (as across a fleet
		// whose pools churn), in both runs.
		ccfg.ReaderPool.MaxIdleConns = -1
		var rt *dbrouter.Router
		if aurora {
			rt, err = dbrouter.OpenAurora(ctx, c.instances(ccfg, c.shim))
		} else {
			rt, err = dbrouter.Open(ccfg)
		}
		if err != nil {
			return 0, 0, err
		}
		defer rt.Close()
		if err := waitReady(ctx, rt); err != nil {
			return 0, 0, err
		}
		if err := s.Stall(ctx, "r2"); err != nil {
			return 0, 0, err
		}
		defer s.Resume(context.WithoutCancel(ctx), "r2")
		before := rt.Stats()
		var n atomic.Int64
		var firstErr error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < cfg.Reads/4; i++ {
					st, err := writeRead(ctx, rt)
					if err != nil {
						mu.Lock()
						firstErr = cmpErr(firstErr, err)
						mu.Unlock()
						return
					}
					if st {
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		after := rt.Stats()
		cfg.Logf("bench-aurora: aurora=%v: reads local %d remote %d writer %d, waits %d; reader endpoint dials r1 %d r2 %d",
			aurora, after.ReadsLocal-before.ReadsLocal, after.ReadsRemote-before.ReadsRemote, after.ReadsWriter-before.ReadsWriter,
			after.Waits-before.Waits, c.res.Dials(readerEndpoint, s.Addr("r1")), c.res.Dials(readerEndpoint, s.Addr("r2")))
		return n.Load(), after.ReadsLocal + after.ReadsRemote - before.ReadsLocal - before.ReadsRemote, firstErr
	}
	ctl, _, err := run(false)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	got, byReaders, err := run(true)
	if err != nil {
		return err
	}
	rep.LBReaderControl, rep.LBReaderViolations, rep.LBReaderReads = ctl, got, byReaders
	cfg.Logf("bench-aurora: load-balanced endpoint: %d stale reads with one watermark per endpoint, %d with one per instance (%d reads by readers)", ctl, got, byReaders)
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
