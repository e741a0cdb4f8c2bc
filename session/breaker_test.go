package session

import (
	"testing"
	"time"
)

// TestBreaker walks the breaker through an outage with explicit times:
// closed, opened by a failure, one probe per interval, closed by a probe's
// success, and the recovery window after it.
func TestBreaker(t *testing.T) {
	b := breaker{interval: time.Second}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	if local, probe := b.route(t0); !local || probe {
		t.Fatal("closed: every call goes to the local table, none is a probe")
	}
	if !b.failure(t0) || b.failure(t0) || !b.isOpen() {
		t.Fatal("the first failure opens the breaker, the second does not open it again")
	}
	if local, _ := b.route(at(500 * time.Millisecond)); local {
		t.Fatal("open, before the probe interval: calls go to the fallback")
	}
	if local, probe := b.route(at(time.Second)); !local || !probe {
		t.Fatal("open, after the probe interval: one call probes the local table")
	}
	if local, _ := b.route(at(time.Second)); local {
		t.Fatal("only one probe at a time")
	}
	b.failure(at(time.Second)) // the probe failed
	if local, _ := b.route(at(1500 * time.Millisecond)); local {
		t.Fatal("a failed probe waits for the next interval")
	}
	if _, probe := b.route(at(2 * time.Second)); !probe {
		t.Fatal("the next interval probes again")
	}
	b.release() // the probe said nothing (cancelled)
	if _, probe := b.route(at(2 * time.Second)); !probe {
		t.Fatal("a released probe lets another call probe")
	}
	if !b.success(at(3*time.Second)) || b.isOpen() {
		t.Fatal("a successful probe closes the breaker")
	}
	// Recovery window: the outage lasted 3 s; for 3 s + recoveryMargin,
	// copies written before the close are also read from the fallback.
	closed := at(3 * time.Second).UnixMilli()
	if !b.recovering(at(4*time.Second), closed-1) {
		t.Fatal("a copy written before the close, inside the window: recovering")
	}
	if b.recovering(at(4*time.Second), closed+1) {
		t.Fatal("a copy written after the close is not suspect")
	}
	if b.recovering(at(6*time.Second+recoveryMargin), closed-1) {
		t.Fatal("after the window nothing is suspect")
	}
}
