package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// readKV reads k's value through rt in ctx and says how long it took.
func readKV(rt *Router, ctx context.Context, k string) (int, time.Duration, error) {
	start := time.Now()
	var v int
	err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v)
	return v, time.Since(start), err
}

// TestRegionLossStack (issue 13): every database server of the writer's
// region (m1 and r1) is killed at once. A us-east-1 router keeps serving
// reads from r2 (eventual ones, a scope whose writes r2 has, a read that
// allows a minute of staleness); a scope that wrote something r2 never
// applied gets ErrPositionUnavailable quickly, not after MaxWait; writes fail
// within 1 s with ErrNoWriter. After r2 is promoted across regions, the
// routers of both regions write again within 10 s without a restart, and
// the scope that failed reads again (on the new writer).
//
// The control: a read that allows only 1 ms of staleness is refused too
// (the router does not pass r2 off as fresh).
func TestRegionLossStack(t *testing.T) {
	s := testserver.Require(t)
	failFreshStack(t, s)
	cfgUS := stackConfig(t, s, testserver.SecondaryRegion)
	cfgUS.MaxWait = 2 * time.Second // a wait would show
	us := openRouter(t, cfgUS)
	tokyo := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	ctx := t.Context()
	var last error
	const upsert = "INSERT INTO kv (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)"

	// Scope A wrote something r2 has applied; scope B something r2 lacks.
	kA, kB := key(t)+"a", key(t)+"b"
	ctxA, ctxB := NewContext(ctx), NewContext(ctx)
	if _, err := us.ExecContext(ctxA, upsert, kA, 1); err != nil {
		t.Fatal(err)
	}
	if v, _, err := readKV(us, ctxA, kA); err != nil || v != 1 {
		t.Fatalf("read A before the outage: %d, %v", v, err)
	}
	waitReplicated(t, s)
	defer func() {
		if t.Failed() {
			t.Logf("last scope B error: %v; stats %+v", last, us.Stats())
		}
	}()
	// A new scope that must see A (its earlier reads may have been served
	// by r1, which monotonic reads would then have to bound).
	ctxA, err := us.WithToken(NewContext(ctx), us.Token(ctxA))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stall(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if _, err := us.ExecContext(ctxB, upsert, kB, 2); err != nil {
		t.Fatal(err)
	}
	// r2 has received B (not applied it): the promotion applies it.
	waitRelayed(t, s, "r2")
	if err := s.KillRegion(ctx, testserver.PrimaryRegion); err != nil {
		t.Fatal(err)
	}

	// Writes fail fast with ErrNoWriter.
	for i := range 5 {
		start := time.Now()
		_, err := us.ExecContext(ctx, upsert, key(t), i)
		took := time.Since(start)
		if !errors.Is(err, ErrNoWriter) {
			t.Fatalf("write %d with the writer's region gone: %v, want ErrNoWriter", i, err)
		}
		if took > time.Second {
			t.Errorf("write %d failed after %v, want <= 1s", i, took)
		}
	}
	// Reads that r2 can serve are served.
	for i := range 5 {
		if v, _, err := readKV(us, ctx, kA); err != nil || v != 1 {
			t.Fatalf("eventual read %d: %d, %v", i, v, err)
		}
		if v, _, err := readKV(us, ctxA, kA); err != nil || v != 1 {
			t.Fatalf("scope A read %d: %d, %v", i, v, err)
		}
		if v, _, err := readKV(us, WithMaxStaleness(ctx, time.Minute), kA); err != nil || v != 1 {
			t.Fatalf("read allowing 1 min of staleness %d: %d, %v", i, v, err)
		}
	}
	// Reads that need what r2 lacks fail fast with the typed error.
	for i := range 5 {
		_, took, err := readKV(us, ctxB, kB)
		if !errors.Is(err, ErrPositionUnavailable) || !errors.Is(err, ErrNoWriter) {
			t.Fatalf("scope B read %d: %v, want ErrPositionUnavailable", i, err)
		}
		t.Logf("scope B read %d: ErrPositionUnavailable after %v", i, took.Round(time.Microsecond))
		// The first read may wait for r2 as long as its lag said when the
		// writer was found gone; the later ones fail at once.
		if limit := map[bool]time.Duration{true: time.Second, false: 100 * time.Millisecond}[i == 0]; took > limit {
			t.Errorf("scope B read %d failed after %v, want <= %v (MaxWait is %v)", i, took, limit, cfgUS.MaxWait)
		}
		_, took, err = readKV(us, WithMaxStaleness(ctx, time.Millisecond), kA)
		if !errors.Is(err, ErrPositionUnavailable) {
			t.Fatalf("control: read allowing 1 ms of staleness %d: %v, want ErrPositionUnavailable", i, err)
		}
		if took > 100*time.Millisecond {
			t.Errorf("control read %d failed after %v, want fast", i, took)
		}
	}

	// Cross-region promotion: both regions write again within 10 s.
	if err := s.Promote(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	for name, rt := range map[string]*Router{"us-east-1": us, "ap-northeast-1": tokyo} {
		k := key(t) + name
		waitFor(t, 10*time.Second-time.Since(promoted), name+" writing again", func() bool {
			_, err := rt.ExecContext(ctx, upsert, k, 3)
			return err == nil
		})
		t.Logf("%s writes again %v after the promotion", name, time.Since(promoted).Round(time.Millisecond))
		if w := rt.Stats().Writer; w != "r2" {
			t.Errorf("%s: writer %q, want r2", name, w)
		}
	}
	// Scope B reads again, on the new writer. Whether it sees B is the
	// database's business: B reached r2's relay log, but an asynchronous
	// promotion may drop it (then it is a lost write, not a stale read).
	waitFor(t, 5*time.Second, "scope B reading again", func() bool {
		v, _, err := readKV(us, ctxB, kB)
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
		last = err
		if err == nil {
			t.Logf("scope B reads %d after the promotion (2: B survived, 0: B was lost with m1)", v)
		}
		return err == nil
	})
}

// waitRelayed waits until replica's IO thread has received everything m1
// has committed (Gtid_IO_Pos), whether or not its SQL thread applied it.
func waitRelayed(t *testing.T, s *testserver.Stack, replica string) {
	t.Helper()
	m, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var want string
	if err := m.QueryRow("SELECT @@global.gtid_binlog_pos").Scan(&want); err != nil {
		t.Fatal(err)
	}
	r, err := sql.Open("mysql", s.AdminDSN(replica))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	waitFor(t, 10*time.Second, replica+" receiving "+want, func() bool {
		rows, err := r.Query("SHOW SLAVE STATUS")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if !rows.Next() {
			return false
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			if c == "Gtid_IO_Pos" {
				return vals[i].String == want
			}
		}
		return false
	})
}

// TestPositionUnavailableError: the error matches ErrPositionUnavailable and
// the search's ErrNoWriter, names the endpoints' answers, and no other
// sentinel.
func TestPositionUnavailableError(t *testing.T) {
	serr := &noWriterError{names: []string{"m1", "r2"}, errs: []error{errors.New("connection refused"), nil}}
	err := error(&positionUnavailableError{search: serr})
	if !errors.Is(err, ErrPositionUnavailable) || !errors.Is(err, ErrNoWriter) {
		t.Fatalf("%v does not match ErrPositionUnavailable and ErrNoWriter", err)
	}
	if errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrOverloaded) {
		t.Fatalf("%v matches an unrelated sentinel", err)
	}
	want := "dbrouter: no reachable server has what the read must observe: dbrouter: no writable server: m1: connection refused; r2: read-only"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}
