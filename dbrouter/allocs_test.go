package dbrouter

import (
	"context"
	"database/sql"
	"testing"
)

// TestReadAllocs pins the allocations the router adds to a read over a
// driver that does no I/O (counts, not timings): the Router's
// QueryRowContext adds the *sql.Row it returns (a raw pool's stays on the
// caller's stack); the routing *sql.DB adds the *sql.Conn and the method
// value database/sql allocates to lend the reader's connection (its rows
// wrapper is the logical connection's own while no other rows are open).
func TestReadAllocs(t *testing.T) {
	raw, rt, scoped := openNopRouter(t)
	db := rt.DB()
	type queryRower interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}
	allocs := func(q queryRower, ctx context.Context) float64 {
		t.Helper()
		var v int64
		read := func() {
			if err := q.QueryRowContext(ctx, benchQuery, "k").Scan(&v); err != nil {
				t.Fatal(err)
			}
		}
		read() // open the pools' connections
		return testing.AllocsPerRun(200, read)
	}
	base := allocs(raw, context.Background())
	for _, tc := range []struct {
		name  string
		q     queryRower
		ctx   context.Context
		extra float64
	}{
		{"router", rt, context.Background(), 1},
		{"router-scope", rt, scoped, 1},
		{"db", db, context.Background(), 2},
		{"db-scope", db, scoped, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := allocs(tc.q, tc.ctx); got > base+tc.extra {
				t.Errorf("%s read: %v allocs, raw %v: want at most %v more", tc.name, got, base, tc.extra)
			}
		})
	}
	// Rows left open on a connection of the routing pool: the next
	// statement on it gets rows of its own, and both read correctly.
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r1, err := conn.QueryContext(scoped, benchQuery, "k")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := conn.QueryContext(scoped, benchQuery, "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*sql.Rows{r2, r1} {
		var v int64
		if !r.Next() {
			t.Fatalf("no row: %v", r.Err())
		}
		if err := r.Scan(&v); err != nil || v != 1 {
			t.Fatalf("got %d, %v; want 1", v, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
