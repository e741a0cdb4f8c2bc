package aurora

import (
	"context"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestCorrectness runs the read-your-writes scenarios: each control must
// fail (it proves the scenario can see a stale read) and the router must
// not.
func TestCorrectness(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := fresh(context.Background(), s); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	cfg := Config{Reads: 40, Logf: t.Logf}
	cfg.defaults()
	rep := &Report{}
	if err := LBReader(ctx, s, cfg, rep); err != nil {
		t.Fatal(err)
	}
	if rep.LBReaderControl == 0 || rep.LBReaderViolations != 0 || rep.LBReaderReads == 0 {
		t.Errorf("load-balanced endpoint: control %d stale reads (want > 0), instances %d (want 0), %d reads by readers (want > 0)",
			rep.LBReaderControl, rep.LBReaderViolations, rep.LBReaderReads)
	}
	if err := Rollback(ctx, s, cfg, rep); err != nil {
		t.Fatal(err)
	}
	if rep.RollbackControl == 0 || rep.RollbackStaleReads != 0 {
		t.Errorf("heartbeat rollback: control %d stale reads (want > 0), keyed heartbeat %d (want 0)",
			rep.RollbackControl, rep.RollbackStaleReads)
	}
}

// TestFailoverStaleDNS: after a failover behind 5 s of stale DNS and two
// writer rows, the router settles on the new instance once, well within the
// stale window. (The control's outcome depends on where DNS balancing sends
// its probes, so it is reported, not asserted.)
func TestFailoverStaleDNS(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := fresh(context.Background(), s); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	cfg := Config{Logf: t.Logf}
	cfg.defaults()
	flaps, window, writers, err := failover(ctx, s, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if flaps != 0 || window > 5000 || len(writers) != 2 || writers[1] != "tokyo-b" {
		t.Errorf("%d flaps, error window %d ms, writers %v; want 0 flaps, at most 5000 ms, [tokyo-a tokyo-b]", flaps, window, writers)
	}
}

// TestForwarding: with write forwarding on in us-east-1, the routers there
// hold no connection to the writer and read their writes; the control,
// forwarded sessions that ignore SESSION consistency, misses writes.
func TestForwarding(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := fresh(context.Background(), s); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	cfg := Config{Logf: t.Logf}
	cfg.defaults()
	conns, st, stale, err := writerConns(ctx, s, cfg, forwardSession)
	if err != nil {
		t.Fatal(err)
	}
	// Writes hold no writer connection; only a read that no reader served
	// in time may open one (none on an idle machine).
	if stale != 0 || st.forwarded == 0 || conns[testserver.SecondaryRegion] > st.readsWriter {
		t.Errorf("forwarding: %d stale reads (want 0), %d writes forwarded (want > 0), %d us-east-1 connections to the writer (want 0, or at most the %d reads that fell back to it)",
			stale, st.forwarded, conns[testserver.SecondaryRegion], st.readsWriter)
	}
	_, _, ctl, err := writerConns(ctx, s, cfg, forwardEventual)
	if err != nil {
		t.Fatal(err)
	}
	if ctl == 0 {
		t.Errorf("control (EVENTUAL sessions): no stale read; the scenario cannot see the failure")
	}
}
