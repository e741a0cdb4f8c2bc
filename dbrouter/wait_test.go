package dbrouter

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestWaitBound checks, on a fake clock, that a read whose position no
// reader has waits for lagBudget of the reader's recent lag (here: no lag
// yet, so four PollIntervals) and then goes to the writer, and that once the
// reader has the position the read goes there without waiting.
func TestWaitBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeServer{seq: 10, writer: true, mysql: true}
		r := &fakeServer{seq: 10, mysql: true}
		rt, err := Open(Config{
			Region:       "a",
			Dialect:      DialectMySQL,
			Writer:       Endpoint{Name: "w", Connector: w},
			Readers:      []Endpoint{{Name: "r", Connector: r, Region: "a"}},
			PollInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		synctest.Wait() // the monitor's first check
		ctx := NewContext(t.Context())
		if _, err := rt.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := rt.QueryRowContext(ctx, "SELECT v FROM t").Scan(new(int64)); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 40*time.Millisecond {
			t.Errorf("waited %v, want 4 × PollInterval", waited)
		}
		if w.served() != 1 || r.served() != 0 {
			t.Errorf("writer served %d, reader %d", w.served(), r.served())
		}
		// The reader catches up; the monitor, still chasing the missing
		// position, sees it within its backoff.
		r.set(11)
		time.Sleep(time.Second)
		synctest.Wait()
		start = time.Now()
		if err := rt.QueryRowContext(ctx, "SELECT v FROM t").Scan(new(int64)); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 0 || r.served() != 1 {
			t.Errorf("after catch-up: waited %v, reader served %d", waited, r.served())
		}
		// Its recent lag (about the time it took) now sets the bound.
		if lag := time.Duration(rt.rdrs()[0].recentLag.Load()); lag < 20*time.Millisecond || lag > 2*time.Second {
			t.Errorf("recent lag %v", lag)
		}
		rt.Close()
	})
}
