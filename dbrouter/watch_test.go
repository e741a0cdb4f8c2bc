package dbrouter

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// writerPos returns m1's whole committed position now.
func writerPos(t *testing.T, s *testserver.Stack, rt *Router) *position {
	t.Helper()
	m, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var text string
	if err := m.QueryRow(rt.dialect.writerQuery()).Scan(&text); err != nil {
		t.Fatal(err)
	}
	p, err := rt.dialect.parseWriter(text)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readerNamed returns rt's reader named name.
func readerNamed(t *testing.T, rt *Router, name string) *reader {
	t.Helper()
	for _, r := range rt.rdrs() {
		if r.spec.Name == name {
			return r
		}
	}
	t.Fatalf("no reader %s", name)
	return nil
}

// within polls cond until it holds or d passes, and reports whether it held.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising
	}
	return true
}

// TestPostWriteWatch: a us-east-1 router writes in a scope while its local
// reader r2 is stalled; r2 resumes and applies the write, and no read comes
// in between. The router learns that r2 has the write (the monitor's watch
// waits for it on r2), so the next read of the scope goes without a guard.
// The control, without the watch, does not learn it (no read, no background
// check within the test) and guards the read.
func TestPostWriteWatch(t *testing.T) {
	s := testserver.Require(t)
	for _, watch := range []bool{true, false} {
		name := "watch"
		if !watch {
			name = "control"
		}
		t.Run(name, func(t *testing.T) {
			cfg := stackConfig(t, s, testserver.SecondaryRegion)
			cfg.MonitorInterval = time.Hour
			cfg.unwatched = !watch
			rt := openRouter(t, cfg)
			r2 := readerNamed(t, rt, "r2")
			ctx := NewContext(ctxT(t))
			// Let the monitors' first checks pass.
			waitFor(t, 10*time.Second, "r2's first poll", func() bool { return r2.wm.Load() != nil })
			if err := s.Stall(t.Context(), "r2"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				s.Resume(context.Background(), "r2")
				waitReplicated(t, s)
			})
			k := key(t)
			if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 7)", k); err != nil {
				t.Fatal(err)
			}
			p := writerPos(t, s, rt)
			if r2.wm.Load().covers(p) {
				t.Fatal("the router takes stalled r2 to have the write")
			}
			if watch {
				// The watch's wait runs on r2 before r2 resumes (the
				// router learns when r2 applies the write, not when
				// it looks).
				if !within(10*time.Second, func() bool { return rt.stats.watchQueries.Load() > 0 }) {
					w, tries, waiters := r2.watched()
					t.Fatalf("no watch query: watch %v (tries %d, reads waiting %v), r2 at %v, write at %v, reads told %d", w, tries, waiters, r2.wm.Load(), p, r2.told.Load())
				}
			}
			if err := s.Resume(t.Context(), "r2"); err != nil {
				t.Fatal(err)
			}
			waitApplied(t, s, "r2")
			learned := within(2*time.Second, func() bool { return r2.wm.Load().covers(p) })
			before := rt.stats.guardedReads.Load()
			var v int
			if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != 7 {
				t.Fatalf("v = %d, want 7", v)
			}
			guarded := rt.stats.guardedReads.Load() - before
			if watch && (!learned || guarded != 0) {
				t.Errorf("learned %v that r2 has the write; %d guarded reads after it, want 0", learned, guarded)
			}
			if !watch && (learned || guarded != 1) {
				t.Errorf("control: learned %v that r2 has the write; %d guarded reads, want 1 (the control must fail)", learned, guarded)
			}
			if !watch && rt.stats.watchQueries.Load() != 0 {
				t.Errorf("control sent %d watch queries", rt.stats.watchQueries.Load())
			}
		})
	}
}

// TestPostWriteWatchQuiet: while the scope's own reads follow its writes,
// their guards and samples (or, on the in-process path, the monitor's waits
// for them) tell the router that r1 has each write, so the watch sends no
// query; a write with no read after it gets one (the count sees the
// watch's queries).
func TestPostWriteWatchQuiet(t *testing.T) {
	s := testserver.Require(t)
	for _, inProcess := range []bool{false, true} {
		name := "combined"
		if inProcess {
			// Reads that wait in process: the monitor's own waits tell.
			name = "in-process"
		}
		t.Run(name, func(t *testing.T) { testWatchQuiet(t, s, inProcess) })
	}
}

func testWatchQuiet(t *testing.T, s *testserver.Stack, inProcess bool) {
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.MonitorInterval = time.Hour
	cfg.DisableCombinedStatements = inProcess
	rt := openRouter(t, cfg)
	r1 := readerNamed(t, rt, "r1")
	waitFor(t, 10*time.Second, "r1's first poll", func() bool { return r1.wm.Load() != nil })
	ctx := NewContext(ctxT(t))
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 0)", k); err != nil {
		t.Fatal(err)
	}
	const n = 50
	before := rt.Stats()
	for i := 1; i <= n; i++ {
		if _, err := rt.ExecContext(ctx, "UPDATE kv SET v = ? WHERE k = ?", i, k); err != nil {
			t.Fatal(err)
		}
		var v int
		if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != i {
			t.Fatalf("read %d after writing %d", v, i)
		}
	}
	// The last write's watch ends at its quiet window's end, when the
	// read's guard or sample has shown r1 has it.
	p := writerPos(t, s, rt)
	waitFor(t, 10*time.Second, "r1's watch to end", func() bool {
		w, _, _ := r1.watched()
		return r1.wm.Load().covers(p) && w.empty()
	})
	// A read that went to the writer (a guard that timed out on a loaded
	// machine) tells nothing of r1: its write may take a watch query.
	after := rt.Stats()
	if q, w := rt.stats.watchQueries.Load(), after.ReadsWriter-before.ReadsWriter; q > w {
		t.Errorf("%d watch queries for %d writes each followed by a read (%d reads went to the writer), want at most %d", q, n, w, w)
	}
	// A write with no read after it: the watch asks r1.
	if _, err := rt.ExecContext(ctx, "UPDATE kv SET v = ? WHERE k = ?", n+1, k); err != nil {
		t.Fatal(err)
	}
	if !within(5*time.Second, func() bool { return rt.stats.watchQueries.Load() > 0 }) {
		t.Error("no watch query after a write with no read (the count cannot see the watch)")
	}
}
