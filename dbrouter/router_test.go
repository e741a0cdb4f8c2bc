package dbrouter

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// DBTX is a copy of the interface sqlc generates.
type DBTX interface {
	ExecContext(context.Context, string, ...interface{}) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...interface{}) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...interface{}) *sql.Row
}

// sqlDB is the part of *sql.DB whose signatures the Router copies.
type sqlDB interface {
	DBTX
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
	PingContext(context.Context) error
	Close() error
}

var (
	_ DBTX  = (*Router)(nil)
	_ sqlDB = (*Router)(nil)
	_ sqlDB = (*sql.DB)(nil)
)

func serverID(t *testing.T, ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string) int {
	t.Helper()
	var id int
	if err := q.QueryRowContext(ctx, query).Scan(&id); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return id
}

// Server ids of the stack: m1 1, r1 2, r2 3.
const (
	idM1 = 1
	idR1 = 2
	idR2 = 3
)

func TestRoutingStack(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	ctx := ctxT(t)
	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"select", "SELECT @@server_id", idR1},
		{"comment first", "/* hi */ -- x\n SELECT @@server_id", idR1},
		{"for update", "SELECT @@server_id FROM DUAL FOR UPDATE", idM1},
		{"lock in share mode", "SELECT @@server_id FROM DUAL LOCK IN SHARE MODE", idM1},
		{"locking function", "SELECT @@server_id + GET_LOCK('x', 0) * 0", idM1},
		{"executable comment", "/*!50000 SELECT */ @@server_id", idM1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := serverID(t, ctx, rt, tc.query); got != tc.want {
				t.Errorf("%q ran on server %d, want %d", tc.query, got, tc.want)
			}
		})
	}
	t.Run("WithWriter", func(t *testing.T) {
		if got := serverID(t, WithWriter(ctx), rt, "SELECT @@server_id"); got != idM1 {
			t.Errorf("forced read ran on %d", got)
		}
	})
	t.Run("read-only tx", func(t *testing.T) {
		tx, err := rt.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if got := serverID(t, ctx, tx, "SELECT @@server_id"); got != idR1 {
			t.Errorf("read-only tx ran on %d", got)
		}
	})
	t.Run("read-write tx", func(t *testing.T) {
		tx, err := rt.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if got := serverID(t, ctx, tx, "SELECT @@server_id"); got != idM1 {
			t.Errorf("read-write tx ran on %d", got)
		}
	})
	t.Run("remote region", func(t *testing.T) {
		rt2 := openRouter(t, stackConfig(t, s, testserver.SecondaryRegion))
		if got := serverID(t, ctx, rt2, "SELECT @@server_id"); got != idR2 {
			t.Errorf("us-east-1 read ran on %d", got)
		}
	})
}

func TestReadYourWritesStalledReaderStack(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	ctx := NewContext(ctxT(t))
	k := key(t)
	if err := s.Stall(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r1") })
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
		t.Fatal(err)
	}
	if rt.WrittenPosition(ctx) == "" {
		t.Fatal("no written position after a write")
	}
	var v int
	if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
		t.Fatalf("read own write with r1 stalled: %v", err)
	}
	st := rt.Stats()
	if st.ReadsLocal != 0 {
		t.Errorf("a read went to the stalled local reader: %+v", st)
	}
	// The token travels to a router in the other region.
	tok := rt.Token(ctx)
	if tok == "" || len(tok) >= 100 {
		t.Fatalf("token %q", tok)
	}
	rt2 := openRouter(t, stackConfig(t, s, testserver.SecondaryRegion))
	ctx2, err := rt2.WithToken(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt2.QueryRowContext(ctx2, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
		t.Fatalf("read in the other region: %v", err)
	}
	if err := s.Resume(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	// Once r1 has caught up, reads with the token go local again.
	waitFor(t, 10*time.Second, "a local read", func() bool {
		before := rt.Stats().ReadsLocal
		if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return rt.Stats().ReadsLocal > before
	})
}

// TestHeartbeatDialectStack runs the heartbeat dialect (meant for Aurora)
// for real on MariaDB: the heartbeat row works on every engine.
func TestHeartbeatDialectStack(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.Dialect = DialectHeartbeat
	cfg.HeartbeatPeriod = 20 * time.Millisecond
	rt := openRouter(t, cfg)
	ctx := NewContext(ctxT(t))
	waitFor(t, 10*time.Second, "the heartbeat to reach r1", func() bool {
		wctx := NewContext(ctx)
		if _, err := rt.ExecContext(wctx, "DO 0"); err != nil {
			t.Fatal(err)
		}
		before := rt.Stats().ReadsLocal
		rt.QueryRowContext(wctx, "SELECT 1").Scan(new(int))
		return rt.Stats().ReadsLocal > before
	})
	if err := s.Stall(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r1") })
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 9)", k); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 9 {
		t.Fatalf("read own write with r1 stalled: %d %v", v, err)
	}
	if err := s.Resume(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a local read of the write", func() bool {
		before := rt.Stats().ReadsLocal
		if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 9 {
			t.Fatalf("read: %d %v", v, err)
		}
		return rt.Stats().ReadsLocal > before
	})
}

// TestWritePathsAdvanceScopeStack checks every way a write reaches the
// writer: a transaction's commit and a writing query's rows (INSERT ...
// RETURNING) advance the scope like ExecContext does.
func TestWritePathsAdvanceScopeStack(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	if err := s.Stall(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r1") })
	t.Run("transaction", func(t *testing.T) {
		ctx := NewContext(t.Context())
		k := key(t)
		tx, err := rt.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
			t.Fatal(err)
		}
		if rt.WrittenPosition(ctx) != "" {
			t.Error("position advanced before commit")
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if rt.WrittenPosition(ctx) == "" {
			t.Fatal("commit did not advance the scope")
		}
		var v int
		if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Errorf("read after commit: %v", err)
		}
	})
	t.Run("insert returning", func(t *testing.T) {
		ctx := NewContext(t.Context())
		k := key(t)
		rows, err := rt.QueryContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 2) RETURNING v", k)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if rt.WrittenPosition(ctx) == "" {
			t.Fatal("INSERT ... RETURNING did not advance the scope")
		}
		var v int
		if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 2 {
			t.Errorf("read after RETURNING: %d %v", v, err)
		}
	})
	t.Run("rollback", func(t *testing.T) {
		ctx := NewContext(t.Context())
		tx, err := rt.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		tx.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 3)", key(t))
		tx.Rollback()
		if rt.WrittenPosition(ctx) != "" {
			t.Error("a rolled back transaction advanced the scope")
		}
	})
}
