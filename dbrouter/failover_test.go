package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	failoverharness "github.com/regiondb/regiondb/internal/harness/failover"
	"github.com/regiondb/regiondb/internal/testserver"
)

// failFreshStack puts the stack back in its fresh topology (m1 primary) if a
// fault changed it, recreates the tables of this package's tests, and
// registers the same as cleanup: the tests of this file kill and promote.
func failFreshStack(t *testing.T, s *testserver.Stack) {
	t.Helper()
	reset := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Reset(ctx); err != nil {
			t.Fatalf("reset: %v", err)
		}
		setupDB(t, s)
		if err := failoverharness.Prepare(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(reset)
	if p, err := s.Primary(t.Context()); err != nil || p != "m1" {
		reset()
		return
	}
	st, err := s.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range st.Servers {
		if !sv.Running {
			reset()
			return
		}
	}
	setupDB(t, s)
	if err := failoverharness.Prepare(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}

// TestWriterFailoverStack kills the primary (kill -9) and promotes r1 while a
// write load runs through a router with default settings: the router finds
// the new writer without a restart, and every acknowledged write is on it.
func TestWriterFailoverStack(t *testing.T) {
	s := testserver.Require(t)
	failFreshStack(t, s)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	for i := range cfg.Readers {
		cfg.Readers[i].DSN = s.DSN(cfg.Readers[i].Name, failoverharness.Database)
	}
	cfg.Writer.DSN = s.DSN("m1", failoverharness.Database)
	rt := openRouter(t, cfg)
	res, err := failoverharness.Run(t.Context(), s, rt, failoverharness.Config{
		Warmup: 500 * time.Millisecond, After: 500 * time.Millisecond, RecoverTimeout: 20 * time.Second,
		OutcomeUnknown: func(err error) bool { return errors.Is(err, ErrOutcomeUnknown) },
		Logf:           t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if res.RecoverTime > 10*time.Second {
		t.Errorf("recovered in %v, want <= 10s", res.RecoverTime)
	}
	st := rt.Stats()
	if st.Writer != "r1" || st.Failovers != 1 {
		t.Errorf("writer %q after %d failovers, want r1 after 1", st.Writer, st.Failovers)
	}
	// Read-your-writes still holds after the failover (r2 now replicates
	// from r1).
	ctx := NewContext(t.Context())
	id := time.Now().UnixNano()
	if _, err := rt.ExecContext(ctx, "INSERT INTO acked (id, writer, at) VALUES (?, 99, NOW(6))", id); err != nil {
		t.Fatal(err)
	}
	var w int
	if err := rt.QueryRowContext(ctx, "SELECT writer FROM acked WHERE id = ?", id).Scan(&w); err != nil || w != 99 {
		t.Fatalf("read after failover: %d, %v", w, err)
	}
}

// TestWriterDemotedStack: the configured writer answers but is read-only
// (MySQL error 1290): the first write finds the writer and succeeds.
func TestWriterDemotedStack(t *testing.T) {
	s := testserver.Require(t)
	failFreshStack(t, s)
	ctx := t.Context()
	if err := s.Kill(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, "m1"); err != nil { // back as a read-only replica of r1
		t.Fatal(err)
	}
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
		t.Fatalf("write through a demoted writer: %v", err)
	}
	if st := rt.Stats(); st.Writer != "r1" || st.Failovers != 1 {
		t.Fatalf("writer %q after %d failovers, want r1 after 1", st.Writer, st.Failovers)
	}
}

// TestOutcomeUnknownStack: a write whose connection is killed while it runs,
// and a transaction whose connection is killed before its commit, return
// errors matching ErrOutcomeUnknown, and are not retried.
func TestOutcomeUnknownStack(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	rt := openRouter(t, cfg)
	admin, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := t.Context()
	killRunning := func(marker string) {
		t.Helper()
		var id int64
		waitFor(t, 10*time.Second, "the statement to run", func() bool {
			return admin.QueryRowContext(ctx, "SELECT id FROM information_schema.processlist WHERE info LIKE ?",
				"%"+marker+"%").Scan(&id) == nil
		})
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("write", func(t *testing.T) {
		k := key(t)
		if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 0)", k); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := rt.ExecContext(ctx, "UPDATE kv SET v = v + 1 + 0*SLEEP(5) /* killme-w */ WHERE k = ?", k)
			errc <- err
		}()
		killRunning("killme-w")
		err := <-errc
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
		}
		// Not retried: the row was updated at most once.
		var v int
		if err := rt.QueryRowContext(WithWriter(ctx), "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v > 1 {
			t.Fatalf("v = %d, %v", v, err)
		}
	})

	t.Run("transaction", func(t *testing.T) {
		k := key(t)
		tx, err := rt.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := tx.ExecContext(ctx, "DO SLEEP(5) /* killme-tx */")
			errc <- err
		}()
		killRunning("killme-tx")
		if err := <-errc; !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("statement in a broken transaction: err = %v, want ErrOutcomeUnknown", err)
		}
	})
}

// failReadLoad runs eventual reads through rt until stop is closed, counting
// the errors callers see.
func failReadLoad(t *testing.T, rt *Router, k string, stop <-chan struct{}) (wait func() (reads, errs int64, first error)) {
	var wg sync.WaitGroup
	var n, e atomic.Int64
	var mu sync.Mutex
	var firstErr error
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var v int
				err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v)
				cancel()
				n.Add(1)
				if err != nil {
					e.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	return func() (int64, int64, error) {
		wg.Wait()
		return n.Load(), e.Load(), firstErr
	}
}

// TestReaderDeathStack kills the local reader under a read load: no caller
// sees an error (reads are retried on another fresh endpoint), the dead
// reader gets no reads within one monitor interval, and after a restart it
// gets reads again.
func TestReaderDeathStack(t *testing.T) {
	s := testserver.Require(t)
	failFreshStack(t, s)
	ctx := t.Context()
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.MonitorInterval = 500 * time.Millisecond
	rt := openRouter(t, cfg)
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
		t.Fatal(err)
	}
	waitReplicated(t, s)
	stop := make(chan struct{})
	wait := failReadLoad(t, rt, k, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wait()
		}
	}()
	waitFor(t, 10*time.Second, "local reads", func() bool { return rt.Stats().ReadsLocal > 100 })

	if err := s.Kill(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Within one monitor interval the dead reader gets no new reads.
	waitFor(t, 5*time.Second, "one monitor interval", func() bool { return time.Since(killed) > cfg.MonitorInterval })
	local := rt.Stats().ReadsLocal
	before := rt.Stats().ReadsRemote + rt.Stats().ReadsWriter
	waitFor(t, 10*time.Second, "reads elsewhere", func() bool {
		return rt.Stats().ReadsRemote+rt.Stats().ReadsWriter > before+100
	})
	if got := rt.Stats().ReadsLocal; got != local {
		t.Fatalf("the dead reader got %d reads after one monitor interval", got-local)
	}

	// Back after a restart (it catches up: nothing was written meanwhile).
	if err := s.Start(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "reads on the restarted reader", func() bool { return rt.Stats().ReadsLocal > local+100 })

	close(stop)
	stopped = true
	reads, errs, first := wait()
	t.Logf("%d reads, %d errors; %+v", reads, errs, rt.Stats())
	if errs != 0 {
		t.Fatalf("%d of %d reads failed while a fresh endpoint remained; first: %v", errs, reads, first)
	}
}

// TestCallerCancelStack: a read cancelled by its caller does not exclude the
// reader that ran it.
func TestCallerCancelStack(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	rt := openRouter(t, cfg)
	for _, timeout := range []time.Duration{50 * time.Millisecond, 0} {
		ctx, cancel := context.WithTimeout(t.Context(), timeout+time.Millisecond)
		if timeout == 0 {
			cancel()
		}
		var v int
		err := rt.QueryRowContext(ctx, "SELECT SLEEP(2)").Scan(&v)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want the caller's context error", err)
		}
		if !rt.rdrs()[0].healthy.Load() {
			t.Fatal("the caller's cancellation excluded the reader")
		}
	}
	local := rt.Stats().ReadsLocal
	var v int
	if err := rt.QueryRowContext(t.Context(), "SELECT 1").Scan(&v); err != nil || rt.Stats().ReadsLocal != local+1 {
		t.Fatalf("next read: %v, local reads %d -> %d", err, local, rt.Stats().ReadsLocal)
	}
	if rt.search.writer() != 0 || rt.Stats().Failovers != 0 {
		t.Fatal("the caller's cancellation started a writer change")
	}
}

// TestAllDownStack: with every reader dead, reads go to the writer (and are
// counted); with the writer dead too, reads and writes fail quickly with a
// clear error.
func TestAllDownStack(t *testing.T) {
	s := testserver.Require(t)
	failFreshStack(t, s)
	ctx := t.Context()
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	rt := openRouter(t, cfg)
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 3)", k); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"r1", "r2"} {
		if err := s.Kill(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	writerReads := rt.Stats().ReadsWriter
	for range 20 {
		var v int
		if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 3 {
			t.Fatalf("read with all readers dead: %d, %v", v, err)
		}
	}
	if got := rt.Stats().ReadsWriter - writerReads; got != 20 {
		t.Fatalf("%d reads counted as served by the writer, want 20", got)
	}

	if err := s.Kill(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 4)", key(t))
	if !errors.Is(err, ErrNoWriter) {
		t.Fatalf("write with every server dead: %v, want ErrNoWriter", err)
	}
	var v int
	if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err == nil {
		t.Fatal("read with every server dead succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failing took %v, want a quick error", d)
	}
	t.Logf("write error: %v", err)
}
