package failover

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// oracleDB sends every write to the stack's current primary as the stack
// itself reports it: a perfect failover client, used to check the harness
// (it needs no router).
type oracleDB struct {
	s *testserver.Stack

	mu      sync.Mutex // protects primary, db, checked
	primary string
	db      *sql.DB
	checked time.Time
}

func (o *oracleDB) current(ctx context.Context, failed bool) (*sql.DB, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.db == nil || (failed && time.Since(o.checked) > 50*time.Millisecond) {
		o.checked = time.Now()
		p, err := o.s.Primary(ctx)
		if err != nil {
			return nil, err
		}
		if p != o.primary || o.db == nil {
			if o.db != nil {
				o.db.Close()
			}
			db, err := sql.Open("mysql", o.s.DSN(p, ""))
			if err != nil {
				return nil, err
			}
			o.primary, o.db = p, db
		}
	}
	return o.db, nil
}

func (o *oracleDB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	db, err := o.current(ctx, false)
	if err != nil {
		return nil, err
	}
	r, err := db.ExecContext(ctx, q, args...)
	if err != nil {
		_, _ = o.current(ctx, true)
	}
	return r, err
}

func (o *oracleDB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	db, _ := o.current(ctx, false)
	return db.QueryRowContext(ctx, q, args...)
}

func (o *oracleDB) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.db != nil {
		o.db.Close()
	}
}

func resetStack(t *testing.T, s *testserver.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Reset(ctx); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if err := Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// TestHarnessSeesFailure checks the harness itself: a client that follows
// the stack's primary recovers and loses nothing; a plain *sql.DB pinned to
// the old primary does not recover (the naive control fails); and the
// read-back notices a missing acknowledged write.
func TestHarnessSeesFailure(t *testing.T) {
	s := testserver.Require(t)
	ctx := t.Context()
	t.Cleanup(func() { resetStack(t, s) })

	t.Run("oracle client recovers, loses nothing", func(t *testing.T) {
		resetStack(t, s)
		o := &oracleDB{s: s}
		defer o.Close()
		res, err := Run(ctx, s, o, Config{Warmup: 500 * time.Millisecond, After: 300 * time.Millisecond, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		if err := res.Check(); err != nil {
			t.Fatal(err)
		}
		if res.AckedAfterKill == 0 || res.Acked <= res.AckedAfterKill || res.NewPrimary != "r1" {
			t.Fatalf("unexpected result: %v (primary %s)", res, res.NewPrimary)
		}
		// The read-back sees a missing acknowledged write.
		db, err := sql.Open("mysql", s.DSN(res.NewPrimary, Database))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DELETE FROM acked WHERE id = ?", res.acked[0]); err != nil {
			t.Fatal(err)
		}
		have, err := readBack(ctx, s.DSN(res.NewPrimary, Database))
		lost := 0
		for _, id := range res.acked {
			if !have[id] {
				lost++
			}
		}
		if err != nil || lost != 1 {
			t.Fatalf("read-back after deleting one acked row: lost %d, %v; want 1", lost, err)
		}
	})

	t.Run("naive control pinned to m1 fails", func(t *testing.T) {
		resetStack(t, s)
		db, err := sql.Open("mysql", s.DSN("m1", ""))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		res, err := Run(ctx, s, db, Config{Warmup: 300 * time.Millisecond, RecoverTimeout: 3 * time.Second, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		if !errors.Is(res.Check(), ErrNotRecovered) || res.Failed == 0 {
			t.Fatalf("the naive control recovered: %v", res)
		}
	})
}
