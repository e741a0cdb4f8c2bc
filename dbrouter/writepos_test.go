package dbrouter

import (
	"context"
	"database/sql"
	"testing"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestUnscopedWritesReadNoPosition counts, on the writer's own Questions
// counter, the statements that writes through the router cost: a write
// outside any read-your-writes scope costs exactly its own statement, and
// (the control, which shows the counter sees position reads) a write in a
// scope costs one more, the read of its position.
func TestUnscopedWritesReadNoPosition(t *testing.T) {
	s := testserver.Require(t)
	ctx := ctxT(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	admin, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	conn, err := admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	questions := func() int64 {
		var n int64
		if err := conn.QueryRowContext(ctx, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'QUESTIONS'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	k := key(t)
	perWrite := func(ctx context.Context) float64 {
		const n = 50
		if _, err := rt.ExecContext(ctx, "REPLACE INTO kv VALUES (?, 0)", k); err != nil { // warm the pool
			t.Fatal(err)
		}
		a := questions()
		for i := range n {
			if _, err := rt.ExecContext(ctx, "REPLACE INTO kv VALUES (?, ?)", k, i); err != nil {
				t.Fatal(err)
			}
		}
		return float64(questions()-a-1) / n // less the counter's own query
	}
	unscoped := perWrite(ctx)
	scoped := perWrite(NewContext(ctx))
	t.Logf("questions per write: unscoped %.2f, scoped %.2f", unscoped, scoped)
	if scoped < unscoped+0.99 {
		t.Fatalf("control: a scoped write cost %.2f questions, an unscoped one %.2f: the counter does not see the position read", scoped, unscoped)
	}
	// The writes are prepared statements; whatever they count as, a
	// position read would add a whole question to each.
	if unscoped >= scoped-0.99 || unscoped > 1.01 {
		t.Fatalf("an unscoped write cost %.2f questions, want 1 (no position read)", unscoped)
	}
}
