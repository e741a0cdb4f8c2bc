package dbrouter

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// consistency is a copy of the cache package's contract.
type consistency interface {
	WrittenPosition(ctx context.Context) string
	RequirePosition(ctx context.Context, pos string) (context.Context, func() bool)
	MergePositions(a, b string) string
}

var _ consistency = (*Router)(nil)

func TestMergePositions(t *testing.T) {
	rt := routerFor(t, DialectMariaDB)
	for _, tc := range []struct{ a, b, want string }{
		{"", "", ""},
		{"0:5", "", "0:5"},
		{"", "0:5", "0:5"},
		{"0:5", "0:7", "0:7"},
		{"0:5,1:2", "0:3,2:9", "0:5,1:2,2:9"},
		{"garbage", "0:5", "0:5"},
	} {
		if got := rt.MergePositions(tc.a, tc.b); got != tc.want {
			t.Errorf("MergePositions(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestConsistencyContractStack(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	ctx := NewContext(ctxT(t))
	if p := rt.WrittenPosition(ctx); p != "" {
		t.Fatalf("WrittenPosition before any write = %q", p)
	}
	if err := s.Stall(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r1") })
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 5)", k); err != nil {
		t.Fatal(err)
	}
	pos := rt.WrittenPosition(ctx)
	if pos == "" {
		t.Fatal("no position after a write")
	}
	// Another request (no scope) requires the position, as the cache
	// does before a refill.
	rctx, ok := rt.RequirePosition(context.Background(), pos)
	var v int
	if err := rt.QueryRowContext(rctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 5 {
		t.Fatalf("read with RequirePosition: %d %v", v, err)
	}
	if !ok() {
		t.Errorf("ok() = false although the read had the position")
	}
	// A bounded-staleness read may use the stalled reader: ok says so.
	sctx, ok2 := rt.RequirePosition(WithMaxStaleness(context.Background(), time.Minute), pos)
	rt.QueryRowContext(sctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v)
	if rt.Stats().ReadsLocal > 0 && ok2() {
		t.Errorf("ok() = true after a read from a reader without the position")
	}
	// An unparsable position sends reads to the writer.
	gctx, ok3 := rt.RequirePosition(context.Background(), "not a position")
	if got := serverID(t, gctx, rt, "SELECT @@server_id"); got != idM1 || !ok3() {
		t.Errorf("unparsable position: read on %d, ok %v", got, ok3())
	}
}

// TestPerReaderAndMonotonicStack checks that a token is honoured per
// reader (one reader catching up does not unstick another) and that a user
// never reads older data than an earlier read showed them.
func TestPerReaderAndMonotonicStack(t *testing.T) {
	s := testserver.Require(t)
	tokyo := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	virginia := openRouter(t, stackConfig(t, s, testserver.SecondaryRegion))
	waitReplicated(t, s)
	if err := s.Stall(t.Context(), "r2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r2") })

	// Someone else writes; r1 applies it, r2 (stalled) does not.
	k := key(t)
	wctx := NewContext(t.Context())
	if _, err := tokyo.ExecContext(wctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
		t.Fatal(err)
	}
	wtok := tokyo.Token(wctx)

	t.Run("per reader", func(t *testing.T) {
		// r1 has caught up (Tokyo reads locally); Virginia must still
		// not use r2.
		ctx, _ := tokyo.WithToken(t.Context(), wtok)
		waitFor(t, 5*time.Second, "r1 to serve the token", func() bool {
			before := tokyo.Stats().ReadsLocal
			tokyo.QueryRowContext(ctx, "SELECT 1").Scan(new(int))
			return tokyo.Stats().ReadsLocal > before
		})
		vctx, _ := virginia.WithToken(t.Context(), wtok)
		before := virginia.Stats()
		if id := serverID(t, vctx, virginia, "SELECT @@server_id"); id == idR2 {
			t.Errorf("Virginia read from stalled r2 with a token only r1 has")
		}
		if after := virginia.Stats(); after.ReadsLocal != before.ReadsLocal {
			t.Errorf("local reads %d -> %d", before.ReadsLocal, after.ReadsLocal)
		}
	})
	t.Run("monotonic", func(t *testing.T) {
		// A user with no token reads in Tokyo from r1 and sees the row.
		uctx := NewContext(t.Context())
		var v int
		if err := tokyo.QueryRowContext(uctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Fatalf("Tokyo read: %v", err)
		}
		tok := tokyo.Token(uctx)
		if tok == "" {
			t.Fatal("a read from a reader ahead of another gave no token")
		}
		// In Virginia, with r2 stalled before the row, the user must
		// not see it vanish.
		vctx, _ := virginia.WithToken(t.Context(), tok)
		if err := virginia.QueryRowContext(vctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Errorf("Virginia read went back in time: %v", err)
		}
	})
}

// waitApplied waits until replica has applied everything m1 has now.
func waitApplied(t *testing.T, s *testserver.Stack, replica string) {
	t.Helper()
	m, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var pos string
	if err := m.QueryRow("SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", s.DSN(replica, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res sql.NullInt64
	if err := db.QueryRow("SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil || res.Int64 != 0 {
		t.Fatalf("%s did not catch up with %s: %v %v", replica, pos, res, err)
	}
}

// TestMonotonicServedStack is issue 11's first sequence: v=1 is on both
// readers and both routers know it; r2 stalls; v=2 is written and r1
// applies it, which the Tokyo router does not know yet. A Tokyo read shows
// v=2, so the user's token must make a Virginia read show v=2 too, not v=1
// from r2. Recording the reader's known position instead of what it served
// fails this test.
func TestMonotonicServedStack(t *testing.T) {
	s := testserver.Require(t)
	k := key(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	m, err := sql.Open("mysql", s.DSN("m1", testDB))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Exec("REPLACE INTO kv (k, v) VALUES (?, 1)", k); err != nil {
		t.Fatal(err)
	}
	waitReplicated(t, s)
	tokyo := openRouter(t, cfg)
	vcfg := stackConfig(t, s, testserver.SecondaryRegion)
	virginia := openRouter(t, vcfg)
	waitFor(t, 5*time.Second, "the monitors' first polls", func() bool {
		return tokyo.Stats().MonitorQueries >= 2 && virginia.Stats().MonitorQueries >= 2
	})
	if err := s.Stall(t.Context(), "r2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r2") })
	if _, err := m.Exec("UPDATE kv SET v = 2 WHERE k = ?", k); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s, "r1")

	uctx := NewContext(t.Context())
	var v int
	if err := tokyo.QueryRowContext(uctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 2 {
		t.Fatalf("Tokyo read: %d %v", v, err)
	}
	tok := tokyo.Token(uctx)
	if tok == "" {
		t.Fatal("no token after a read that showed v=2")
	}
	vctx, _ := virginia.WithToken(t.Context(), tok)
	if err := virginia.QueryRowContext(vctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 2 {
		t.Errorf("Virginia read after the Tokyo read of v=2: %d %v", v, err)
	}
}

// TestLocalOnlyStack is issue 11's third sequence: each router knows only
// its own region's reader. A write in Tokyo that r1 has applied must still
// travel in the token, since the Tokyo router cannot know that r2 has it.
func TestLocalOnlyStack(t *testing.T) {
	s := testserver.Require(t)
	k := key(t)
	tcfg := stackConfig(t, s, testserver.PrimaryRegion)
	tcfg.Readers = tcfg.Readers[:1]
	vcfg := stackConfig(t, s, testserver.SecondaryRegion)
	vcfg.Readers = vcfg.Readers[1:]
	tokyo, virginia := openRouter(t, tcfg), openRouter(t, vcfg)
	if err := s.Stall(t.Context(), "r2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r2") })
	wctx := NewContext(t.Context())
	if _, err := tokyo.ExecContext(wctx, "REPLACE INTO kv (k, v) VALUES (?, 3)", k); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s, "r1")
	var v int
	if err := tokyo.QueryRowContext(wctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 3 {
		t.Fatalf("Tokyo read: %d %v", v, err)
	}
	tok := tokyo.Token(wctx)
	if tok == "" {
		t.Fatal("no token although a reader this router does not know may lack the write")
	}
	vctx, _ := virginia.WithToken(t.Context(), tok)
	if err := virginia.QueryRowContext(vctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 3 {
		t.Errorf("Virginia read: %d %v, want 3", v, err)
	}
}
