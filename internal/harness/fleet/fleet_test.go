package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestRun runs a short fleet measurement and checks what the harness must
// see: loops ran without errors, reads that carry their own wait send no
// monitor query while the control's in-process waits do (so the servers'
// counters see them: the figure is measured, not zero by construction), an
// unscoped write costs no position query, and a writer at its connection
// limit gives typed overload errors without any writer search.
func TestRun(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, s, Config{Ns: []int{2}, Warmup: 500 * time.Millisecond, Duration: time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	l := rep.Local[0]
	if l.Reads < 50 || l.Errors > 0 {
		t.Fatalf("workload: %+v", l)
	}
	if c := rep.MonitorControl; c.RouterMonitor == 0 || c.MonitorQPSReader == 0 {
		t.Fatalf("control: no monitor query counted: %+v", c)
	}
	if sh := rep.SharedInProcess; sh.MonitorQPSPerReader == 0 {
		t.Errorf("in-process runs with the shared store: no monitor query counted: %+v", sh)
	}
	if l.MonitorPerRead > 0.05 {
		t.Errorf("monitor queries per read %.3f, want <= 0.05", l.MonitorPerRead)
	}
	if rep.PositionQueriesPerUnscWr > 0.05 {
		t.Errorf("position queries per unscoped write = %.2f, want 0", rep.PositionQueriesPerUnscWr)
	}
	o := rep.Overload
	if o.Searches != 0 || o.TypedErrors != o.Writes || o.NoWriter != 0 {
		t.Errorf("overload: %+v, want every write a typed overload error and no search", o)
	}
}
