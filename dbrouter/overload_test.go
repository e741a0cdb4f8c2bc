package dbrouter

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/regiondb/regiondb/internal/testserver"
)

// TestOverloadedWriterIsNotDead fills the writer's connection limit for one
// account (MAX_USER_CONNECTIONS, error 1203 at the handshake, as 1040 is when
// the server's max_connections is reached) and checks that a write fails
// fast with ErrOverloaded, without a writer search, a failover or an
// ErrNoWriter, and that writes succeed again once connections are free.
func TestOverloadedWriterIsNotDead(t *testing.T) {
	s := testserver.Require(t)
	ctx := ctxT(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)

	admin, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, q := range []string{
		"DROP USER IF EXISTS 'tiny'@'127.0.0.1'",
		"CREATE USER 'tiny'@'127.0.0.1' IDENTIFIED BY 'tiny' WITH MAX_USER_CONNECTIONS 2",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + testDB + ".* TO 'tiny'@'127.0.0.1'",
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { admin.Exec("DROP USER IF EXISTS 'tiny'@'127.0.0.1'") })
	waitReplicated(t, s)

	dsn := "tiny:tiny@tcp(" + s.Addr("m1") + ")/" + testDB
	cfg.Writer.DSN = dsn
	cfg.Readers = nil // only the writer: a search would have nothing else to find
	rt := openRouter(t, cfg)
	if _, err := rt.ExecContext(ctx, "REPLACE INTO kv VALUES (?, 1)", key(t)); err != nil {
		t.Fatalf("write before the limit: %v", err)
	}

	// Close the router's idle connection (and wait until the server has
	// let go of it: it ends a closed session asynchronously), then hold the
	// account's two connections from outside the router.
	rt.curWriter().db.SetMaxIdleConns(-1)
	waitFor(t, 10*time.Second, "the server to end the router's session", func() bool {
		var n int
		err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'tiny'").Scan(&n)
		return err == nil && n == 0
	})
	hog, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	var held []*sql.Conn
	for range 2 {
		c, err := hog.Conn(ctx)
		if err != nil {
			t.Fatalf("hog: %v", err)
		}
		held = append(held, c)
	}
	_, err = rt.ExecContext(ctx, "REPLACE INTO kv VALUES (?, 2)", key(t))
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("write at the limit: err = %v, want ErrOverloaded", err)
	}
	if errors.Is(err, ErrNoWriter) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("write at the limit: %v also matches ErrNoWriter/ErrOutcomeUnknown", err)
	}
	if st := rt.Stats(); st.WriterSearches != 0 || st.Failovers != 0 || st.Writer != "m1" {
		t.Fatalf("stats after overload: %+v", st)
	}

	for _, c := range held {
		c.Close()
	}
	hog.Close()
	rt.curWriter().db.SetMaxIdleConns(DefaultMaxIdleConns)
	waitFor(t, 10*time.Second, "a write after the limit is lifted", func() bool {
		_, err := rt.ExecContext(ctx, "REPLACE INTO kv VALUES (?, 3)", key(t))
		return err == nil
	})
}

func TestChooseKeepsOverloadedWriter(t *testing.T) {
	w := &writerSearch{cands: []writerCandidate{{name: "m1"}, {name: "r1"}}}
	full := &connectError{err: &mysql.MySQLError{Number: 1040, Message: "Too many connections"}}
	idx, err := w.choose([]probeResult{{err: full}, {writable: false}}, 0)
	if err != nil || idx != 0 {
		t.Fatalf("choose = %d, %v; want the full current writer", idx, err)
	}
	// Control: a writer that is gone (not full) is not kept.
	if _, err := w.choose([]probeResult{{err: errors.New("refused")}, {writable: false}}, 0); !errors.Is(err, ErrNoWriter) {
		t.Fatalf("choose with a dead writer: err = %v, want ErrNoWriter", err)
	}
}
