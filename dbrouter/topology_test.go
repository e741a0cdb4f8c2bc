package dbrouter

import (
	"strings"
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
		t.Errorf("the joined instance got no reads (the writer served them)")
	}

	// It comes back.
	set(writer, tokyoB, virginia)
	eventually(t, "tokyo-b to come back", func() bool { return !b.removed.Load() })
	rt.Close()
	if max := int64(time.Since(opened)/interval) + 1; rt.aurora.reads > max {
		t.Errorf("%d topology reads in %v, want at most %d (one per interval)", rt.aurora.reads, time.Since(opened), max)
	}
}
