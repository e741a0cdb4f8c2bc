package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/regiondb/regiondb/internal/testserver"
)

// openTracedRouter opens a router on the stack whose spans go to the
// returned in-memory recorder.
func openTracedRouter(t *testing.T, s *testserver.Stack) (*Router, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.TracerProvider = tp
	return openRouter(t, cfg), rec
}

// spanEndpoints returns the endpoint of each ended span, by span name.
func spanEndpoints(rec *tracetest.SpanRecorder) []string {
	var out []string
	for _, s := range rec.Ended() {
		ep, _ := telSpanAttr(s.Attributes(), attrEndpoint)
		out = append(out, s.Name()+"@"+ep.AsString())
	}
	return out
}

func TestRoutingDBStack(t *testing.T) {
	s := testserver.Require(t)
	rt, rec := openTracedRouter(t, s)
	db := rt.DB()
	if got, err := rt.GetDBConn(); got != db || err != nil {
		t.Fatalf("GetDBConn = %p, %v; want DB() %p", got, err, db)
	}
	ctx := ctxT(t)

	t.Run("routing", func(t *testing.T) {
		if got := serverID(t, ctx, db, "SELECT @@server_id"); got != idR1 {
			t.Errorf("read ran on %d, want r1", got)
		}
		if got := serverID(t, ctx, db, "SELECT @@server_id FOR UPDATE"); got != idM1 {
			t.Errorf("locking read ran on %d, want m1", got)
		}
		var id int
		if err := db.QueryRow("SELECT @@server_id").Scan(&id); err != nil || id != idR1 {
			t.Errorf("context-less read ran on %d (%v), want r1", id, err)
		}
	})

	t.Run("read your writes with the local reader stalled", func(t *testing.T) {
		rctx := NewContext(ctx)
		if err := s.Stall(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Resume(context.Background(), "r1") })
		k := key(t)
		before := rt.Stats()
		if _, err := db.ExecContext(rctx, "INSERT INTO kv (k, v) VALUES (?, 7)", k); err != nil {
			t.Fatal(err)
		}
		if rt.WrittenPosition(rctx) == "" {
			t.Fatal("a write through the routing pool did not advance the scope")
		}
		var v int
		if err := db.QueryRowContext(rctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 7 {
			t.Fatalf("read own write: %d, %v", v, err)
		}
		if after := rt.Stats(); after.ReadsLocal != before.ReadsLocal {
			t.Errorf("a read went to the stalled local reader")
		}
		if err := s.Resume(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("transactions", func(t *testing.T) {
		rctx := NewContext(ctx)
		rec.Reset()
		k := key(t)
		tx, err := db.BeginTx(rctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := serverID(t, rctx, tx, "SELECT @@server_id"); got != idM1 {
			t.Errorf("read in a read-write transaction ran on %d", got)
		}
		if _, err := tx.ExecContext(rctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if rt.WrittenPosition(rctx) == "" {
			t.Error("commit did not advance the scope")
		}
		eps := strings.Join(spanEndpoints(rec), " ")
		if want := "BEGIN@m1 SELECT@m1 INSERT@m1 COMMIT@m1"; eps != want {
			t.Errorf("spans %q, want %q", eps, want)
		}
		// A read-only transaction goes to a reader that has the scope's
		// position (r1, not stalled).
		waitReplicated(t, s)
		tx, err = db.BeginTx(rctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := serverID(t, rctx, tx, "SELECT @@server_id"); got != idR1 {
			t.Errorf("read-only transaction ran on %d, want r1", got)
		}
		var v int
		if err := tx.QueryRowContext(rctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 1 {
			t.Errorf("read-only transaction: %d, %v", v, err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("prepared statements run where routing sends them", func(t *testing.T) {
		rec.Reset()
		sel, err := db.PrepareContext(ctx, "SELECT @@server_id")
		if err != nil {
			t.Fatal(err)
		}
		defer sel.Close()
		var id int
		if err := sel.QueryRowContext(ctx).Scan(&id); err != nil || id != idR1 {
			t.Errorf("prepared read ran on %d (%v)", id, err)
		}
		ins, err := rt.PrepareContext(ctx, "INSERT INTO kv (k, v) VALUES (?, ?)")
		if err != nil {
			t.Fatal(err)
		}
		defer ins.Close()
		if _, err := ins.ExecContext(ctx, key(t), 3); err != nil {
			t.Fatal(err)
		}
		eps := strings.Join(spanEndpoints(rec), " ")
		if want := "SELECT@r1 INSERT@m1"; eps != want {
			t.Errorf("spans %q, want %q", eps, want)
		}
	})

	t.Run("session state pins the connection to the writer", func(t *testing.T) {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got := serverID(t, ctx, conn, "SELECT @@server_id"); got != idR1 {
			t.Errorf("read before session state ran on %d", got)
		}
		if _, err := conn.ExecContext(ctx, "SET @regiondb_x = 42"); err != nil {
			t.Fatal(err)
		}
		if got := serverID(t, ctx, conn, "SELECT @regiondb_x"); got != 42 {
			t.Errorf("user variable = %d, want 42", got)
		}
		if got := serverID(t, ctx, conn, "SELECT @@server_id"); got != idM1 {
			t.Errorf("read after session state ran on %d, want m1", got)
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 5)", key(t)); err != nil {
			t.Fatal(err)
		}
		var id int64
		if err := conn.QueryRowContext(ctx, "SELECT LAST_INSERT_ID() IS NOT NULL").Scan(&id); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("physical connections follow statements, not held connections", func(t *testing.T) {
		var conns []*sql.Conn
		for range 20 {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			serverID(t, ctx, c, "SELECT @@server_id")
		}
		inUse := rt.rdrs()[0].db.Stats().InUse + rt.curWriter().db.Stats().InUse
		for _, c := range conns {
			c.Close()
		}
		if inUse != 0 {
			t.Errorf("20 idle held connections of the routing pool hold %d physical ones", inUse)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := rt.curWriter().db.Stats().InUse; n != 1 {
			t.Errorf("an open transaction holds %d writer connections, want 1", n)
		}
		tx.Rollback()
		if n := rt.curWriter().db.Stats().InUse; n != 0 {
			t.Errorf("after rollback %d writer connections are in use", n)
		}
	})
}

func TestRoutingDBClosed(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	db := rt.DB()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.ExecContext(context.Background(), "DO 1"); !errors.Is(err, ErrClosed) {
		t.Errorf("closing the routing pool left the router open: %v", err)
	}
	var n int
	if err := rt.QueryRowContext(context.Background(), "SELECT 1").Scan(&n); err == nil {
		t.Error("QueryRowContext of a closed router returned a row")
	}
	if _, err := rt.BeginTx(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("BeginTx: %v", err)
	}
	if _, err := rt.GetDBConn(); !errors.Is(err, ErrClosed) {
		t.Errorf("GetDBConn: %v", err)
	}
	if err := rt.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSessionStmt(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"SELECT a FROM t WHERE id = ?", false},
		{"SELECT @@server_id", false},
		{"SELECT '@x' FROM t", false},
		{"UPDATE t SET a = 1", false},
		{"set @x = 1", true},
		{"/* c */ SET NAMES utf8mb4", true},
		{"SELECT @x", true},
		{"SELECT GET_LOCK('a', 1)", true},
		{"CREATE TEMPORARY TABLE tmp (a INT)", true},
		{"CREATE TABLE t2 (a INT)", false},
		{"INSERT INTO t VALUES (1)", true},
		{"LOCK TABLES t WRITE", true},
		{"SELECT SQL_CALC_FOUND_ROWS a FROM t LIMIT 1", true},
	} {
		if got := sessionStmt(tc.q); got != tc.want {
			t.Errorf("sessionStmt(%q) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

// TestRoutingDBReaderDiesStack: with the local reader stopped, reads of the
// routing pool are retried elsewhere like the Router's own (the caller sees
// no error), also inside a held *sql.Conn.
func TestRoutingDBReaderDiesStack(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	db := rt.DB()
	ctx := ctxT(t)
	if id := serverID(t, ctx, db, "SELECT @@server_id"); id != idR1 {
		t.Fatalf("first read on %d", id)
	}
	if err := s.Stop(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Start(context.Background(), "r1"); err != nil {
			t.Errorf("restart r1: %v", err)
		}
	})
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 4 {
		var q interface {
			QueryRowContext(context.Context, string, ...any) *sql.Row
		} = db
		if i%2 == 1 {
			q = conn
		}
		var id int
		if err := q.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
			t.Fatalf("read %d with r1 down: %v", i, err)
		}
		if id == idR1 || id == 0 {
			t.Errorf("read %d served by %d", i, id)
		}
	}
}

// TestRoutingDBWriterDemotedStack: the configured writer answers but is
// read-only; the routing pool's first write and first transaction find the
// writer and succeed.
func TestRoutingDBWriterDemotedStack(t *testing.T) {
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
	db := rt.DB()
	if _, err := db.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 1)", key(t)); err != nil {
		t.Fatalf("write through a demoted writer: %v", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 2)", key(t)+"-tx"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if st := rt.Stats(); st.Writer != "r1" || st.Failovers != 1 {
		t.Fatalf("writer %q after %d failovers, want r1 after 1", st.Writer, st.Failovers)
	}
}
