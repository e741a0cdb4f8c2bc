package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// generalLog turns on the primary's and replicas' general log (to a table)
// for the test and returns a function counting the Query packets whose text
// holds marker, per server.
func generalLog(t *testing.T, s *testserver.Stack) func(marker string) map[string]int {
	t.Helper()
	admins := map[string]*sql.DB{}
	for _, name := range []string{"m1", "r1", "r2"} {
		db, err := sql.Open("mysql", s.AdminDSN(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		for _, q := range []string{"SET GLOBAL log_output = 'TABLE'", "SET GLOBAL general_log = 1"} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s on %s: %v", q, name, err)
			}
		}
		t.Cleanup(func() { db.Exec("SET GLOBAL general_log = 0") })
		admins[name] = db
	}
	return func(marker string) map[string]int {
		out := map[string]int{}
		for name, db := range admins {
			var n int
			if err := db.QueryRow("SELECT COUNT(*) FROM mysql.general_log WHERE command_type IN ('Query', 'Prepare', 'Execute') "+
				"AND INSTR(CONVERT(argument USING utf8mb4), ?) > 0 AND INSTR(CONVERT(argument USING utf8mb4), 'general_log') = 0", marker).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[name] = n
		}
		return out
	}
}

// TestCombinedOneRoundTrip: a write of a scope and the reads after it, one
// before any monitor can have seen the write, each reach their server as
// one packet (the server's general log), and every read sees the write.
func TestCombinedOneRoundTrip(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.MonitorInterval = time.Hour // no background poll can tell the router what r1 has
	rt := openRouter(t, cfg)
	// Each monitor polls once at start; none after that.
	waitFor(t, 10*time.Second, "the monitors' first polls", func() bool { return rt.Stats().MonitorQueries >= 2 })
	count := generalLog(t, s)
	marker := fmt.Sprintf("rt1-%d", time.Now().UnixNano())
	ctx := NewContext(ctxT(t))
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 0)", k); err != nil {
		t.Fatal(err)
	}
	ctx = NewContext(ctxT(t))
	res, err := rt.ExecContext(ctx, "UPDATE kv SET v = 1 WHERE k = ? -- "+marker, k)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("RowsAffected %d, want 1", n)
	}
	before := rt.Stats()
	const reads = 5
	for i := range reads {
		var v int
		if err := rt.QueryRowContext(ctx, "SELECT /* "+marker+" */ v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if v != 1 {
			t.Fatalf("read %d: v = %d, want 1", i, v)
		}
	}
	after := rt.Stats()
	got := count(marker)
	if got["m1"] != 1 {
		t.Errorf("writer got %d packets for the write, want 1", got["m1"])
	}
	if got["r1"] != reads || got["r2"] != 0 {
		t.Errorf("readers got %v packets for %d reads, want all on r1, one each", got, reads)
	}
	if after.Waits != before.Waits || after.MonitorQueries != before.MonitorQueries || after.ReadsWriter != before.ReadsWriter {
		t.Errorf("reads waited in process (%d), sent monitor queries (%d) or went to the writer (%d)",
			after.Waits-before.Waits, after.MonitorQueries-before.MonitorQueries, after.ReadsWriter-before.ReadsWriter)
	}
	if rt.Token(ctx) == "" {
		t.Error("no token after a write")
	}
}

// TestCombinedGuardFails: with r1's apply stopped, a read that needs the
// scope's write fails its guard on r1 (the statement does not run there)
// and is answered by the writer; r1 is not excluded.
func TestCombinedGuardFails(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.MonitorInterval = time.Hour
	cfg.MaxWait = 50 * time.Millisecond
	rt := openRouter(t, cfg)
	ctx := NewContext(ctxT(t))
	if err := s.Stall(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Resume(context.Background(), "r1")
		waitReplicated(t, s)
	})
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 7)", k); err != nil {
		t.Fatal(err)
	}
	before := rt.Stats()
	var v int
	if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 7 {
		t.Fatalf("v = %d, want 7", v)
	}
	after := rt.Stats()
	if after.ReadsWriter-before.ReadsWriter != 1 {
		t.Errorf("reads to the writer: %d, want 1", after.ReadsWriter-before.ReadsWriter)
	}
	for _, r := range rt.rdrs() {
		if !r.healthy.Load() {
			t.Errorf("%s excluded after a guard failure", r.spec.Name)
		}
	}
}

// TestCombinedGuardRetriesNearWriter: with a writer two polls away or
// nearer (the stack's primary region), a read whose first guard on r1 times
// out while r1 is stalled for 300 ms is sent to r1 again with a wait for the
// rest of MaxWait and answered there, not by the writer (TestCombinedGuardFails,
// with a MaxWait that leaves no rest, is its control: it goes to the writer).
func TestCombinedGuardRetriesNearWriter(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.MonitorInterval = time.Hour
	rt := openRouter(t, cfg)
	ctx := NewContext(ctxT(t))
	k := key(t)
	if err := s.Lag(t.Context(), "r1", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitReplicated(t, s) })
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 9)", k); err != nil {
		t.Fatal(err)
	}
	before := rt.Stats()
	var v int
	if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 9 {
		t.Fatalf("v = %d, want 9", v)
	}
	after := rt.Stats()
	if after.GuardTimeouts == before.GuardTimeouts {
		t.Fatal("the first guard did not time out: the test did not exercise the retry")
	}
	if after.ReadsWriter != before.ReadsWriter || after.ReadsLocal-before.ReadsLocal != 1 {
		t.Errorf("reads: %d to the writer, %d local; want the read answered by r1", after.ReadsWriter-before.ReadsWriter, after.ReadsLocal-before.ReadsLocal)
	}
}

// TestCombinedWriteResult compares the Result of combined writes (and the
// session's LAST_INSERT_ID() after them) with the plain driver's.
func TestCombinedWriteResult(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	rt := openRouter(t, cfg)
	plain, err := sql.Open("mysql", s.DSN("m1", testDB))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	suffix := fmt.Sprint(time.Now().UnixNano())
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS ai_%s (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS na_%s (id BIGINT PRIMARY KEY, v INT NOT NULL)",
	} {
		for _, tag := range []string{"p", "r"} {
			if _, err := plain.Exec(fmt.Sprintf(q, tag+suffix)); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []string{
		"INSERT INTO ai_%s (v) VALUES (1)",
		"INSERT INTO ai_%s (v) VALUES (2), (3)",
		"UPDATE ai_%s SET v = v + 1 WHERE id > 0",
		"UPDATE ai_%s SET v = v WHERE id > 0",
		"INSERT INTO na_%s (id, v) VALUES (10, 1)",
		"INSERT INTO na_%s (id, v) VALUES (10, 1) ON DUPLICATE KEY UPDATE v = v + 1",
		"INSERT INTO na_%s (id, v) VALUES (10, 2) ON DUPLICATE KEY UPDATE v = 2",
		"UPDATE ai_%s SET v = LAST_INSERT_ID(v) WHERE id = 1",
		"DELETE FROM na_%s WHERE id = 999",
		"INSERT INTO ai_%s (id, v) VALUES (100, 1)",
		"REPLACE INTO na_%s (id, v) VALUES (10, 5)",
	}
	type outcome struct{ id, rows, lastID int64 }
	run := func(ex func(string) (sql.Result, error), q func(string) *sql.Row, tag string) []outcome {
		var out []outcome
		for _, st := range steps {
			res, err := ex(fmt.Sprintf(st, tag+suffix))
			if err != nil {
				t.Fatalf("%s: %v", st, err)
			}
			var o outcome
			o.id, _ = res.LastInsertId()
			o.rows, _ = res.RowsAffected()
			if err := q("SELECT LAST_INSERT_ID()").Scan(&o.lastID); err != nil {
				t.Fatal(err)
			}
			out = append(out, o)
		}
		return out
	}
	pc, err := plain.Conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	want := run(func(q string) (sql.Result, error) { return pc.ExecContext(ctxT(t), q) },
		func(q string) *sql.Row { return pc.QueryRowContext(ctxT(t), q) }, "p")
	// The router's writer pool, on one connection, in a scope: combined.
	ctx := NewContext(ctxT(t))
	wc, err := rt.Writer().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	before := rt.Stats().WritePositionFailures
	got := run(func(q string) (sql.Result, error) { return wc.ExecContext(ctx, q) },
		func(q string) *sql.Row { return wc.QueryRowContext(ctx, q) }, "r")
	for i := range steps {
		if got[i] != want[i] {
			t.Errorf("%s: combined (LastInsertId, RowsAffected, LAST_INSERT_ID()) = %v, plain %v", steps[i], got[i], want[i])
		}
	}
	if rt.Stats().WritePositionFailures != before || rt.WrittenPosition(ctx) == "" {
		t.Error("the combined writes did not advance the scope")
	}
	// A write's own error comes first, unchanged.
	_, err = wc.ExecContext(ctx, fmt.Sprintf("INSERT INTO na_%s (id, v) VALUES (10, 1)", "r"+suffix))
	if err == nil || !strings.Contains(err.Error(), "1062") {
		t.Errorf("duplicate key: %v, want error 1062", err)
	}
	// A transaction's COMMIT in a scope advances it.
	ctx2 := NewContext(ctxT(t))
	tx, err := rt.BeginTx(ctx2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx2, fmt.Sprintf("INSERT INTO ai_%s (v) VALUES (9)", "r"+suffix)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if rt.WrittenPosition(ctx2) == "" {
		t.Error("COMMIT did not advance the scope")
	}
}

// TestOneStatementRule: on a combining pool a text of two statements is
// refused before it is sent, through every entry point; with the user's
// own multiStatements=true it runs unchanged.
func TestOneStatementRule(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	rt := openRouter(t, cfg)
	ctx := NewContext(ctxT(t))
	k := key(t)
	stacked := "SELECT 1; INSERT INTO kv (k, v) VALUES ('" + k + "', 1)"
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrMultiStatement) {
			t.Errorf("%s: %v, want the one-statement error", what, err)
		}
	}
	_, err := rt.QueryContext(ctx, stacked)
	check("Router.QueryContext", err)
	_, err = rt.ExecContext(ctx, stacked)
	check("Router.ExecContext", err)
	_, err = rt.DB().QueryContext(ctx, stacked)
	check("DB().QueryContext", err)
	_, err = rt.Writer().ExecContext(ctx, stacked)
	check("Writer().ExecContext", err)
	_, err = rt.Writer().QueryContext(context.Background(), "SELECT 1 /*! ; DO 1 */")
	check("executable comment", err)
	var n int
	if err := rt.Writer().QueryRowContext(ctx, "SELECT COUNT(*) FROM kv WHERE k = ?", k).Scan(&n); err != nil || n != 0 {
		t.Fatalf("stacked insert ran: n=%d err=%v", n, err)
	}
	// One statement with a final ";" and comments still runs.
	if err := rt.QueryRowContext(ctx, "SELECT 1; -- done").Scan(&n); err != nil || n != 1 {
		t.Errorf("one statement with a final ';': %d, %v", n, err)
	}
	// The user's own multiStatements: texts are theirs.
	cfg2 := stackConfig(t, s, testserver.PrimaryRegion)
	cfg2.Writer.DSN += "&multiStatements=true"
	rt2 := openRouter(t, cfg2)
	if _, err := rt2.ExecContext(ctx, "DO 1; DO 2"); err != nil {
		t.Errorf("user multiStatements: %v", err)
	}
}

// TestGuardStopsText runs the dialect's guard for a position r1 does not
// have, in a multi-statement text before a statement with an effect on the
// session: the guard fails with its distinctive error and the statement
// after it does not run. The control (a guard the reader passes) runs it.
func TestGuardStopsText(t *testing.T) {
	s := testserver.Require(t)
	db, err := sql.Open("mysql", s.DSN("r1", testDB)+"&multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs := mariaDialect{}.combine()
	run := func(pos string) (bool, error) {
		t.Helper()
		if _, err := conn.ExecContext(ctxT(t), "SET @after_guard = NULL"); err != nil {
			t.Fatal(err)
		}
		p, err := parseMariaDBGTIDList(pos)
		if err != nil {
			t.Fatal(err)
		}
		rows, qerr := conn.QueryContext(ctxT(t), cs.guard(p, 20*time.Millisecond)+";\nSET @after_guard = 1")
		if qerr == nil {
			for rows.Next() {
			}
			qerr = rows.Err()
			rows.Close()
		}
		var v sql.NullInt64
		if err := conn.QueryRowContext(ctxT(t), "SELECT @after_guard").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v.Valid, qerr
	}
	ran, err := run("0-1-999999999")
	if !isErrno(err, guardErrSubquery) || ran {
		t.Errorf("guard for a future position: error %v, statement after it ran: %v; want error 1242 and not run", err, ran)
	}
	if ran, err := run("0-1-1"); err != nil || !ran {
		t.Errorf("control, guard for an applied position: error %v, statement after it ran: %v", err, ran)
	}
}

// TestGuardedReadNeverStale: with r1 stalled behind a write, the guard of
// a read whose position r1 lacks in one GTID domain of two (it has domain
// 0's part, not the other's) fails on r1 and the writer answers with the new
// value; once r1 has applied the write, unknown to the router (a read at
// t ≥ L), the guard passes on r1 and the read sees the new value there. The
// controls: a plain read of r1 meanwhile returns the old value, and so does
// the router's read of a scope that needs only the domain-0 part r1 has (a
// guard that checked that domain alone, or no guard, would have served stale
// data). The second domain is never written: a GTID domain of its own would
// stay in the stack's positions for the tests after this one.
func TestGuardedReadNeverStale(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.Readers = cfg.Readers[:1] // r1 only: no other reader to retry on
	cfg.MonitorInterval = time.Hour
	cfg.MaxWait = 50 * time.Millisecond
	rt := openRouter(t, cfg)
	ctx := ctxT(t)
	r1 := rt.rdrs()[0]
	k := key(t)
	write := func(q string) *position {
		t.Helper()
		scope := NewContext(ctx)
		if _, err := rt.ExecContext(scope, q, k); err != nil {
			t.Fatal(err)
		}
		p := trackerFrom(scope).need.Load()
		if p.empty() {
			t.Fatal("no position after a write")
		}
		return p
	}
	p1 := write("INSERT INTO kv (k, v) VALUES (?, 1)")
	waitReplicated(t, s)
	if err := s.Stall(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Resume(context.Background(), "r1")
		waitReplicated(t, s)
	})
	p2 := write("UPDATE kv SET v = 2 WHERE k = ?")
	r1db, err := sql.Open("mysql", s.DSN("r1", testDB))
	if err != nil {
		t.Fatal(err)
	}
	defer r1db.Close()
	var v int
	if err := r1db.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 1 {
		t.Fatalf("control: plain read of the stalled r1: v = %d (%v), want the old value 1", v, err)
	}
	read := func(p *position) (int, Stats, Stats) {
		t.Helper()
		scope := NewContext(ctx)
		trackerFrom(scope).advance(p, false)
		before := rt.Stats()
		var v int
		if err := rt.QueryRowContext(scope, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v, before, rt.Stats()
	}
	// Control: a scope that needs p1 only is served by r1, which has it,
	// and sees the old value.
	if v, b, a := read(p1); v != 1 || a.ReadsWriter != b.ReadsWriter {
		t.Fatalf("control: read needing p1 only: v = %d, %d reads to the writer; want 1 from r1", v, a.ReadsWriter-b.ReadsWriter)
	}
	// p1 and a part of another domain r1 lacks: the guard fails on r1.
	other := &position{parts: []posPart{{key: domainKey(p1.parts[0].key.domain + 7), seq: 1}}}
	need := merge(p1, other)
	if len(need.parts) != 2 || r1.wm.Load().covers(need) {
		t.Fatalf("position %v: want two domains, not known to be on r1", need)
	}
	v, b, a := read(need)
	if v != 2 {
		t.Fatalf("read needing two domains, one of them not on r1: v = %d, want 2 (stale data served)", v)
	}
	if a.GuardTimeouts == b.GuardTimeouts || a.ReadsWriter-b.ReadsWriter != 1 {
		t.Errorf("read needing two domains: %d guard timeouts, %d reads to the writer; want the guard to fail and the writer to answer",
			a.GuardTimeouts-b.GuardTimeouts, a.ReadsWriter-b.ReadsWriter)
	}
	// r1 applies p2; the router does not know (no poll): the guard passes.
	if err := s.Resume(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	var res sql.NullInt64
	if err := r1db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", string(appendGTIDs(nil, p2))).Scan(&res); err != nil || res.Int64 != 0 {
		t.Fatalf("r1 did not apply the write: %v %v", res, err)
	}
	if rt.has(r1, p2) {
		t.Fatal("the router already knows r1 has the position: the read would not carry the guard")
	}
	v, b, a = read(p2)
	if v != 2 || a.ReadsWriter != b.ReadsWriter || a.GuardTimeouts != b.GuardTimeouts {
		t.Errorf("read after r1 applied the write: v = %d, %d reads to the writer, %d guard timeouts; want 2 from r1",
			v, a.ReadsWriter-b.ReadsWriter, a.GuardTimeouts-b.GuardTimeouts)
	}
	if !rt.has(r1, p2) {
		t.Error("the guard that passed did not raise r1's watermark")
	}
}
