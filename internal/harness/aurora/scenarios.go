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

// Rollback: an unplanned failover whose new writer lost the last beats, so
// its heartbeat counter restarts far below what a stalled reader shows. The
// router's heartbeat (keyed by the writer's @@server_id) must serve no
// stale read; the control, a heartbeat table without the writer's id (read
// as one stream), serves them from the stalled reader.
func Rollback(ctx context.Context, s *testserver.Stack, cfg Config, rep *Report) error {
	if err := fresh(ctx, s); err != nil {
		return err
	}
	m1, err := sql.Open("mysql", s.DSN("m1", Database))
	if err != nil {
		return err
	}
	defer m1.Close()
	// The beats before the failover: counter 1000 from writer m1
	// (@@server_id 1), in both tables.
	for _, q := range []string{
		"CREATE TABLE hb_keyed (id INT PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL, ts TIMESTAMP(6) NOT NULL)",
		"CREATE TABLE hb_plain (id INT PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL, ts TIMESTAMP(6) NOT NULL)",
		"INSERT INTO hb_keyed VALUES (1, 1000, NOW(6)), (2, @@server_id, NOW(6))",
		"INSERT INTO hb_plain VALUES (1, 1000, NOW(6))",
	} {
		if _, err := m1.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if err := s.WaitReplicated(ctx); err != nil {
		return err
	}
	open := func(table string) (*dbrouter.Router, error) {
		return dbrouter.Open(dbrouter.Config{
			Region: testserver.SecondaryRegion,
			Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", Database)},
			Readers: []dbrouter.Endpoint{
				{Name: "r1", DSN: s.DSN("r1", Database), Region: testserver.PrimaryRegion},
				{Name: "r2", DSN: s.DSN("r2", Database), Region: testserver.SecondaryRegion},
			},
			Dialect: dbrouter.DialectHeartbeat, HeartbeatTable: table,
			MaxWait:   300 * time.Millisecond,
			TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: []byte("auroraharness-token-key-0123456789")}},
		})
	}
	keyed, err := open("hb_keyed")
	if err != nil {
		return err
	}
	defer keyed.Close()
	plain, err := open("hb_plain")
	if err != nil {
		return err
	}
	defer plain.Close()
	// Both routers must have seen r2 at the old counter.
	deadline := time.Now().Add(10 * time.Second)
	for keyed.Stats().MonitorQueries < 2 || plain.Stats().MonitorQueries < 2 {
		if time.Now().After(deadline) {
			return errors.New("monitors did not poll the readers")
		}
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}

	// The failover: m1 stops taking writes, r1 takes over, r2 (the reader
	// of this region) stalls before it applies anything of r1's.
	if err := setReadOnly(ctx, s, "m1"); err != nil {
		return err
	}
	if err := s.Promote(ctx, "r1"); err != nil {
		return err
	}
	if err := s.Stall(ctx, "r2"); err != nil {
		return err
	}
	defer s.Resume(context.WithoutCancel(ctx), "r2")
	r1, err := sql.Open("mysql", s.DSN("r1", Database))
	if err != nil {
		return err
	}
	defer r1.Close()
	// The new writer lost the last beats: its counter restarts at 5.
	beat := func(first bool) error {
		qs := []string{
			"UPDATE hb_keyed SET seq = IF(id = 1, seq + 1, @@server_id), ts = NOW(6) WHERE id IN (1, 2)",
			"UPDATE hb_plain SET seq = seq + 1, ts = NOW(6) WHERE id = 1",
		}
		if first {
			qs = []string{
				"UPDATE hb_keyed SET seq = IF(id = 1, 5, @@server_id), ts = NOW(6) WHERE id IN (1, 2)",
				"UPDATE hb_plain SET seq = 5, ts = NOW(6) WHERE id = 1",
			}
		}
		for _, q := range qs {
			if _, err := r1.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	if err := beat(true); err != nil {
		return err
	}
	count := func(rt *dbrouter.Router) (int64, error) {
		var n int64
		for i := 0; i < cfg.Reads/4; i++ {
			sctx := dbrouter.NewContext(ctx)
			k := newKey("rollback")
			var err error
			for try := 0; try < 50; try++ { // the first writes wait for the writer search
				if _, err = rt.ExecContext(sctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err == nil {
					break
				}
				if err := pause(ctx, 20*time.Millisecond); err != nil {
					return 0, err
				}
			}
			if err != nil {
				return 0, err
			}
			// The next beat passes the write on the new writer.
			if err := beat(false); err != nil {
				return 0, err
			}
			var v int
			switch err := rt.QueryRowContext(sctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); {
			case errors.Is(err, sql.ErrNoRows):
				n++
			case err != nil:
				return 0, err
			}
		}
		return n, nil
	}
	if rep.RollbackControl, err = count(plain); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if rep.RollbackStaleReads, err = count(keyed); err != nil {
		return err
	}
	cfg.Logf("bench-aurora: heartbeat rollback: %d stale reads with the writer-keyed heartbeat, %d with the control", rep.RollbackStaleReads, rep.RollbackControl)
	return nil
}

func setReadOnly(ctx context.Context, s *testserver.Stack, server string) error {
	db, err := sql.Open("mysql", s.AdminDSN(server))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "SET GLOBAL read_only = 1")
	return err
}

// pause waits d or until ctx ends (pacing a load, not synchronising).
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// writeLoop writes every 5 ms until stop is closed and records, per write,
// when it ended, whether it failed and the writer it went to.
type writeLoop struct {
	mu     sync.Mutex // protects events
	events []writeEvent
	wg     sync.WaitGroup
}

type writeEvent struct {
	at     time.Time
	err    error
	writer string
}

func startWrites(ctx context.Context, rt *dbrouter.Router, stop <-chan struct{}) *writeLoop {
	l := &writeLoop{}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := rt.ExecContext(wctx, "INSERT INTO kv (k, v) VALUES (?, 1)", newKey("fo"))
			cancel()
			l.mu.Lock()
			l.events = append(l.events, writeEvent{at: time.Now(), err: err, writer: rt.Stats().Writer})
			l.mu.Unlock()
			pause(ctx, 5*time.Millisecond)
		}
	}()
	return l
}

// Failover: an in-region failover (tokyo-a → tokyo-b) while the cluster
// writer endpoint keeps naming tokyo-a for StaleDNS and every instance's
// replica_host_status shows two writer rows (the old one older). The router
// opened with OpenAurora must settle on tokyo-b once (no flapping), within
// a bounded error window. The control is today's configuration (Open with
// the cluster writer and reader endpoints): its writer search can take the
// reader endpoint, which DNS balances onto the new writer, for the writer.
func Failover(ctx context.Context, s *testserver.Stack, cfg Config, rep *Report) error {
	flaps, window, writers, err := failover(ctx, s, cfg, false)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	rep.FailoverControlFlaps, rep.FailoverControlErrorWindowMS, rep.FailoverControlWriters = flaps, window, writers
	if rep.FailoverFlaps, rep.FailoverErrorWindowMS, rep.FailoverWriters, err = failover(ctx, s, cfg, true); err != nil {
		return err
	}
	rep.StaleDNSMS = cfg.StaleDNS.Milliseconds()
	cfg.Logf("bench-aurora: failover: error window %d ms, %d flaps (control: %d ms, %d flaps)",
		rep.FailoverErrorWindowMS, rep.FailoverFlaps, window, flaps)
	return nil
}

func failover(ctx context.Context, s *testserver.Stack, cfg Config, aurora bool) (flaps, windowMS int64, writers []string, err error) {
	if err := fresh(ctx, s); err != nil {
		return 0, 0, nil, err
	}
	c, err := newCluster(ctx, s, false)
	if err != nil {
		return 0, 0, nil, err
	}
	ccfg, err := c.config(c.shim, testserver.PrimaryRegion)
	if err != nil {
		return 0, 0, nil, err
	}
	var rt *dbrouter.Router
	if aurora {
		rt, err = dbrouter.OpenAurora(ctx, c.instances(ccfg, c.shim))
	} else {
		rt, err = dbrouter.Open(ccfg)
	}
	if err != nil {
		return 0, 0, nil, err
	}
	defer rt.Close()
	if err := waitReady(ctx, rt); err != nil {
		return 0, 0, nil, err
	}
	stop := make(chan struct{})
	loop := startWrites(ctx, rt, stop)
	halt := func() {
		close(stop)
		loop.wg.Wait()
	}
	if err := pause(ctx, 300*time.Millisecond); err != nil {
		halt()
		return 0, 0, nil, err
	}
	start := time.Now()
	c.res.Repoint(writerEndpoint, cfg.StaleDNS, s.Addr("r1"))
	if err := c.shim.Failover(ctx, "r1"); err != nil {
		halt()
		return 0, 0, nil, err
	}
	// The old writer's row lingers beside the new one's.
	now := time.Now()
	rows := []aurorashim.Row{
		{ServerID: "tokyo-a", SessionID: aurorashim.WriterSession, Updated: now.Add(-time.Second)},
		{ServerID: "tokyo-b", SessionID: aurorashim.WriterSession, Updated: now},
		{ServerID: "tokyo-c", SessionID: "session-tokyo-c", Updated: now},
	}
	for _, sv := range []string{"m1", "r1", "r2"} {
		if err := c.shim.SetRows(ctx, sv, rows, nil); err != nil {
			halt()
			return 0, 0, nil, err
		}
	}
	// Run past the stale DNS window.
	perr := pause(ctx, cfg.StaleDNS+time.Second)
	halt()
	if perr != nil {
		return 0, 0, nil, perr
	}
	var lastErr time.Time
	prev := ""
	changes := int64(0)
	for _, e := range loop.events {
		if e.err != nil && !e.at.Before(start) {
			lastErr = e.at
		}
		if e.err == nil && e.writer != prev {
			if prev != "" {
				changes++
			}
			prev = e.writer
			writers = append(writers, e.writer)
		}
	}
	// One writer change is the failover; more are flaps.
	flaps = max(changes-1, rt.Stats().Failovers-1, 0)
	if !lastErr.IsZero() {
		// From the failover's start to the last failed write.
		windowMS = lastErr.Sub(start).Milliseconds()
	}
	if aurora && prev != "tokyo-b" {
		return 0, 0, nil, fmt.Errorf("writes ended on %q, want tokyo-b", prev)
	}
	return flaps, windowMS, writers, nil
}

// Probes: the writer stops taking writes and nothing is promoted for
// Outage; every write triggers or joins a writer search. It counts every
// connection the process opens meanwhile (an upper bound of the probes),
// per instance and per second, and summed over the instances.
func Probes(ctx context.Context, s *testserver.Stack, cfg Config, rep *Report) error {
	if err := fresh(ctx, s); err != nil {
		return err
	}
	c, err := newCluster(ctx, s, true)
	if err != nil {
		return err
	}
	ccfg, err := c.config(c.shim, testserver.PrimaryRegion)
	if err != nil {
		return err
	}
	ccfg.HeartbeatPeriod = 0 // the beater's election would add writer connections
	rt, err := dbrouter.OpenAurora(ctx, c.instances(ccfg, c.shim))
	if err != nil {
		return err
	}
	defer rt.Close()
	// Warm the pools, then stop the writer taking writes.
	for i := 0; i < 20; i++ {
		if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 1)", newKey("warm")); err != nil {
			return err
		}
	}
	before := c.shim.Connects()
	searches := rt.Stats().WriterSearches
	if err := c.shim.SetWritable(ctx, "m1", false); err != nil {
		return err
	}
	start := time.Now()
	stop := make(chan struct{})
	loop := startWrites(ctx, rt, stop)
	perr := pause(ctx, cfg.Outage)
	close(stop)
	loop.wg.Wait()
	elapsed := time.Since(start).Seconds()
	if err := c.shim.SetWritable(ctx, "m1", true); err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	probes := float64(c.shim.Connects() - before)
	endpoints := float64(len(c.shim.Instances))
	rep.ProbesPerProcessPerS = round2(probes / endpoints / elapsed)
	rep.ProbeConnsPerProcessPerS = round2(probes / elapsed)
	cfg.Logf("bench-aurora: writer search: %.0f connections in %.1f s over %d searches", probes, elapsed, rt.Stats().WriterSearches-searches)
	return nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// forwarding is how the us-east-1 routers of writerConns write.
type forwarding int

const (
	noForwarding forwarding = iota
	forwardSession
	forwardEventual // the naive control: forwarded sessions ignore SESSION
)

// WriterConns: three routers per region under a write-and-read load; the
// most connections the routers of each region held open to the writer
// instance at once. It runs again with write forwarding on in us-east-1
// (writer_conns_with_forwarding, and the read-your-writes of the us-east-1
// pairs: forwarding_stale_reads), and once more with forwarded sessions
// that ignore SESSION consistency (the control: forwarding_control > 0).
func WriterConns(ctx context.Context, s *testserver.Stack, cfg Config, rep *Report) error {
	conns, _, _, err := writerConns(ctx, s, cfg, noForwarding)
	if err != nil {
		return err
	}
	rep.WriterConnsPerRegion = conns
	cfg.Logf("bench-aurora: writer connections per region (3 routers each): %v", conns)
	conns, st, stale, err := writerConns(ctx, s, cfg, forwardSession)
	if err != nil {
		return fmt.Errorf("forwarding: %w", err)
	}
	rep.WriterConnsWithForwarding = map[string]int64{testserver.SecondaryRegion: conns[testserver.SecondaryRegion]}
	rep.ForwardedWrites, rep.ForwardedSessions, rep.ForwardingStaleReads = st.forwarded, st.sessions, stale
	cfg.Logf("bench-aurora: with forwarding in us-east-1: writer connections %v, %d writes forwarded over at most %d sessions, %d stale reads",
		conns, st.forwarded, st.sessions, stale)
	if _, _, rep.ForwardingControl, err = writerConns(ctx, s, cfg, forwardEventual); err != nil {
		return fmt.Errorf("forwarding control: %w", err)
	}
	cfg.Logf("bench-aurora: forwarding control (EVENTUAL sessions): %d stale reads", rep.ForwardingControl)
	return nil
}

type fwdStats struct {
	forwarded, sessions int64
	readsWriter         int64 // us-east-1 reads that fell back to the writer
}

func writerConns(ctx context.Context, s *testserver.Stack, cfg Config, fwd forwarding) (map[string]int64, fwdStats, int64, error) {
	var st fwdStats
	if err := fresh(ctx, s); err != nil {
		return nil, st, 0, err
	}
	c, err := newCluster(ctx, s, true)
	if err != nil {
		return nil, st, 0, err
	}
	conns := map[string]int64{}
	type group struct {
		region string
		shim   *aurorashim.Shim
		rts    []*dbrouter.Router
	}
	var groups []group
	defer func() {
		for _, g := range groups {
			for _, rt := range g.rts {
				rt.Close()
			}
		}
	}()
	for _, region := range []string{testserver.PrimaryRegion, testserver.SecondaryRegion} {
		sh := c.withShim()
		sh.ForwardEventual = fwd == forwardEventual
		g := group{region: region, shim: sh}
		for i := 0; i < 3; i++ {
			ccfg, err := c.config(sh, region)
			if err != nil {
				return nil, st, 0, err
			}
			if fwd != noForwarding && region == testserver.SecondaryRegion {
				dsn := strings.Replace(s.DSN("m1", Database), s.Addr("m1"), readerEndpointUS, 1)
				fc, err := sh.ForwardingConnector(dsn)
				if err != nil {
					return nil, st, 0, err
				}
				ccfg.WriteForwarding = map[string]dbrouter.Endpoint{
					region: {Name: "forward-" + region, DSN: dsn, Connector: fc, Region: region},
				}
			}
			rt, err := dbrouter.OpenAurora(ctx, c.instances(ccfg, sh))
			if err != nil {
				return nil, st, 0, err
			}
			g.rts = append(g.rts, rt)
		}
		groups = append(groups, g)
	}
	// The heartbeat runs (a Tokyo router beats) before the load starts.
	if err := waitReady(ctx, groups[0].rts[0]); err != nil {
		return nil, st, 0, err
	}
	// Count from here: OpenAurora's own short connection to the writer
	// (confirming it at start-up, closed at once) is not held.
	for _, g := range groups {
		g.shim.ResetPeak()
	}
	var wg sync.WaitGroup
	var stale atomic.Int64
	errs := make(chan error, 64)
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, g := range groups {
		for _, rt := range g.rts {
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for lctx.Err() == nil {
						// The pair runs to its end under ctx: lctx only says
						// when to stop starting pairs (a pair cut short by
						// a deadline would fall back or lose its position).
						missed, err := writeRead(ctx, rt)
						if err != nil {
							errs <- err
							return
						}
						if missed && err == nil && g.region == testserver.SecondaryRegion {
							stale.Add(1)
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, st, 0, err
	}
	for _, g := range groups {
		conns[g.region] = g.shim.PeakOpen("tokyo-a")
		if g.region == testserver.SecondaryRegion {
			st.sessions = g.shim.ForwardedPeak()
			for _, rt := range g.rts {
				rs := rt.Stats()
				st.forwarded += rs.WritesForwarded
				st.readsWriter += rs.ReadsWriter
				cfg.Logf("bench-aurora: us-east-1 router: %d writes (%d forwarded), reads local %d remote %d writer %d forced %d, waits %d, position failures %d",
					rs.Writes, rs.WritesForwarded, rs.ReadsLocal, rs.ReadsRemote, rs.ReadsWriter, rs.ReadsForced, rs.Waits, rs.WritePositionFailures)
			}
		}
	}
	if fwd != noForwarding && st.forwarded == 0 {
		return nil, st, 0, errors.New("no write was forwarded")
	}
	return conns, st, stale.Load(), nil
}
