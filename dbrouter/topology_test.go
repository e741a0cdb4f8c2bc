package dbrouter

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/aurorashim"
	"github.com/regiondb/regiondb/internal/testserver"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		tk := time.NewTimer(20 * time.Millisecond)
		<-tk.C
	}
}

// TestAuroraTopologyRefresh: an instance that joins the cluster after
// OpenAurora becomes a reader, and one that leaves stops getting reads,
// with at most one topology read per interval.
func TestAuroraTopologyRefresh(t *testing.T) {
	s := testserver.Require(t)
	sh, cfg := auroraStack(t, s)
	ctx := ctxT(t)
	now := time.Now()
	row := func(id, session, region string) aurorashim.Row {
		return aurorashim.Row{ServerID: id, SessionID: session, Region: region, Updated: now}
	}
	writer := row("tokyo-a", aurorashim.WriterSession, testserver.PrimaryRegion)
	tokyoB := row("tokyo-b", "session-tokyo-b", testserver.PrimaryRegion)
	virginia := row("virginia-a", "session-virginia-a", testserver.SecondaryRegion)
	set := func(rows ...aurorashim.Row) {
		t.Helper()
		var tokyo []aurorashim.Row
		for _, r := range rows {
			if r.Region == testserver.PrimaryRegion {
				tokyo = append(tokyo, r)
			}
		}
		for _, sv := range []string{"m1", "r1", "r2"} {
			if err := sh.SetRows(ctx, sv, tokyo, rows); err != nil {
				t.Fatal(err)
			}
		}
	}
	// virginia-a is not in the cluster yet.
	set(writer, tokyoB)
	const interval = 200 * time.Millisecond
	cfg.AuroraTopologyInterval = interval
	cfg.ReaderPool.MaxIdleConns = -1 // every read connects: counted per instance
	cfg.MonitorInterval = time.Minute
	var logMu sync.Mutex
	var logs strings.Builder
	cfg.Logger = slog.New(slog.NewTextHandler(&auroraLogWriter{mu: &logMu, w: &logs}, nil))
	defer func() {
		if t.Failed() {
			logMu.Lock()
			t.Logf("the router's log:\n%s", logs.String())
			logMu.Unlock()
		}
	}()
	rt, err := OpenAurora(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	opened := time.Now()
	if got := strings.Join(readerNames(rt), ","); got != "tokyo-b/ap-northeast-1" {
		t.Fatalf("readers at open: %s", got)
	}

	set(writer, tokyoB, virginia)
	eventually(t, "virginia-a to join", func() bool {
		return strings.Join(readerNames(rt), ",") == "tokyo-b/ap-northeast-1,virginia-a/us-east-1"
	})
	// Writer searches ask for early reads; the interval still bounds them.
	for range 5 {
		rt.search.kick()
		rt.kickTopology()
	}

	set(writer, virginia)
	var b *reader
	for _, r := range rt.rdrs() {
		if r.spec.Name == "tokyo-b" {
			b = r
		}
	}
	eventually(t, "tokyo-b to leave", b.removed.Load)
	// The connections are counted from when nothing but reads connects:
	// both monitors have had an answer and have nothing to poll for (a
	// failed or unfinished first poll, or a chase of the writer's
	// position, polls again within MonitorInterval), and no writer search,
	// which probes every instance, is running.
	eventually(t, "the monitors and the writer search to settle", func() bool {
		for _, r := range rt.rdrs() {
			if need, _, _ := r.unmet(time.Now()); need || r.rtt.get() == 0 || !r.healthy.Load() {
				return false
			}
		}
		rt.search.mu.Lock()
		defer rt.search.mu.Unlock()
		return rt.search.running == nil
	})
	before, vBefore := sh.ConnectsTo("tokyo-b"), sh.ConnectsTo("virginia-a")
	for range 20 {
		var one int
		if err := rt.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	}
	if got := sh.ConnectsTo("tokyo-b") - before; got != 0 {
		t.Errorf("the removed instance got %d connections for reads, want 0", got)
	}
	if got := sh.ConnectsTo("virginia-a") - vBefore; got == 0 {
		var state []string
		for _, r := range rt.rdrs() {
			state = append(state, fmt.Sprintf("%s healthy=%v removed=%v", r.spec.Name, r.healthy.Load(), r.removed.Load()))
		}
		t.Errorf("the joined instance got no reads (the writer served them); readers %v; stats %+v", state, rt.Stats())
	}

	// It comes back.
	set(writer, tokyoB, virginia)
	eventually(t, "tokyo-b to come back", func() bool { return !b.removed.Load() })
	rt.Close()
	if max := int64(time.Since(opened)/interval) + 1; rt.aurora.reads > max {
		t.Errorf("%d topology reads in %v, want at most %d (one per interval)", rt.aurora.reads, time.Since(opened), max)
	}
}

// TestAuroraJoinedInstanceFailover runs on the Aurora shim over the MariaDB
// stack (there is no local Aurora): virginia-a (r2) joins the cluster after
// OpenAurora, then the writer role fails over to it. The router finds it as
// the writer, since a joined instance is a writer candidate too. The
// control, where a joined instance is a reader only (the behaviour before),
// finds no writer in the same time.
func TestAuroraJoinedInstanceFailover(t *testing.T) {
	run := func(t *testing.T, joinedReadOnly bool) (writer string, err error) {
		s := testserver.Require(t)
		sh, cfg := auroraStack(t, s)
		ctx := ctxT(t)
		now := time.Now()
		writerRow := aurorashim.Row{ServerID: "tokyo-a", SessionID: aurorashim.WriterSession, Region: testserver.PrimaryRegion, Updated: now}
		tokyoB := aurorashim.Row{ServerID: "tokyo-b", SessionID: "session-tokyo-b", Region: testserver.PrimaryRegion, Updated: now}
		virginia := aurorashim.Row{ServerID: "virginia-a", SessionID: "session-virginia-a", Region: testserver.SecondaryRegion, Updated: now}
		set := func(global ...aurorashim.Row) {
			t.Helper()
			for _, sv := range []string{"m1", "r1", "r2"} {
				if err := sh.SetRows(ctx, sv, []aurorashim.Row{writerRow, tokyoB}, global); err != nil {
					t.Fatal(err)
				}
			}
		}
		set(writerRow, tokyoB) // virginia-a is not in the cluster yet
		cfg.AuroraTopologyInterval = 200 * time.Millisecond
		cfg.auroraJoinedReadOnly = joinedReadOnly
		rt := openAurora(t, cfg)
		if got := strings.Join(readerNames(rt), ","); got != "tokyo-b/ap-northeast-1" {
			t.Fatalf("readers at open: %s", got)
		}
		set(writerRow, tokyoB, virginia)
		eventually(t, "virginia-a to join", func() bool {
			return strings.Join(readerNames(rt), ",") == "tokyo-b/ap-northeast-1,virginia-a/us-east-1"
		})
		if err := sh.Failover(ctx, "r2"); err != nil {
			t.Fatal(err)
		}
		// The same bound for the router and the control.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err = rt.ExecContext(NewContext(ctx), "INSERT INTO kv (k, v) VALUES (?, 5)", key(t))
			if err == nil || time.Now().After(deadline) {
				return rt.Stats().Writer, err
			}
		}
	}
	t.Run("control", func(t *testing.T) {
		writer, err := run(t, true)
		t.Logf("control: writer %q, last write error: %v", writer, err)
		if !errors.Is(err, ErrNoWriter) {
			t.Errorf("control: write error %v, writer %q; want ErrNoWriter (the joined instance is no candidate)", err, writer)
		}
	})
	t.Run("router", func(t *testing.T) {
		writer, err := run(t, false)
		if err != nil || writer != "virginia-a" {
			t.Errorf("after the failover to the joined instance: writer %q, write error %v; want virginia-a, no error", writer, err)
		}
	})
}
