package dbrouter

import (
	"context"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestReadRetriedWhenReaderDiesStack stops the local reader: a QueryContext
// that fails on it is retried once elsewhere (the caller sees no error), the
// reader gets no reads while it is down, and it gets reads again once it is
// back (an issue-4 behaviour built on the failure classification).
func TestReadRetriedWhenReaderDiesStack(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	ctx := ctxT(t)
	if id := serverID(t, ctx, rt, "SELECT @@server_id"); id != idR1 {
		t.Fatalf("first read on %d", id)
	}
	if err := s.Stop(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	started := false
	t.Cleanup(func() {
		if !started {
			if err := s.Start(context.Background(), "r1"); err != nil {
				t.Errorf("restart r1: %v", err)
			}
		}
	})
	for i := range 5 {
		rows, err := rt.QueryContext(ctx, "SELECT @@server_id")
		if err != nil {
			t.Fatalf("read %d with r1 down: %v", i, err)
		}
		var id int
		for rows.Next() {
			rows.Scan(&id)
		}
		rows.Close()
		if id == idR1 || id == 0 {
			t.Errorf("read %d served by %d", i, id)
		}
	}
	if rt.rdrs()[0].healthy.Load() {
		t.Error("r1 still counted healthy")
	}
	started = true
	if err := s.Start(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "reads on r1 again", func() bool {
		return serverID(t, ctx, rt, "SELECT @@server_id") == idR1
	})
}
