package dbrouter

import (
	"testing"
	"time"
)

func TestWaitBudget(t *testing.T) {
	const ms = time.Millisecond
	base := waitInputs{readerRTT: ms / 2, writerRTT: 150 * ms, poll: 20 * ms, maxWait: time.Second}
	with := func(f func(*waitInputs)) waitInputs { in := base; f(&in); return in }
	for _, tc := range []struct {
		name string
		in   waitInputs
		want time.Duration
	}{
		{"caught-up reader: a probe", base, 21 * ms},
		{"need older than the lag: a probe", with(func(in *waitInputs) { in.recentLag = 100 * ms; in.needAge = 300 * ms }), 21 * ms},
		{"short lag: the lag, a quarter and two polls", with(func(in *waitInputs) { in.recentLag = 80 * ms }), 140 * ms},
		{"lag near the writer's RTT, no room for the margin: a probe", with(func(in *waitInputs) { in.recentLag = 140 * ms }), 21 * ms},
		{"lag above the writer's RTT, need of unknown age: a probe", with(func(in *waitInputs) { in.recentLag = 500 * ms }), 21 * ms},
		{"lag above the writer's RTT, need of this router's write: the writer", with(func(in *waitInputs) { in.recentLag = 500 * ms; in.needAgeExact = true }), 0},
		{"lag above the RTT, need of this router's write, old enough", with(func(in *waitInputs) { in.recentLag = 500 * ms; in.needAge = 450 * ms; in.needAgeExact = true }), 102*ms + ms/2},
		{"caught-up reader, need of this router's write: a probe", with(func(in *waitInputs) { in.needAgeExact = true }), 21 * ms},
		{"lag above the RTT, but need is old enough", with(func(in *waitInputs) { in.recentLag = 500 * ms; in.needAge = 450 * ms }), 102*ms + ms/2},
		{"stalled: behind for longer than the RTT", with(func(in *waitInputs) { in.recentLag = 50 * ms; in.behindFor = 300 * ms }), 0},
		{"behind a little, catching up", with(func(in *waitInputs) { in.behindFor = 60 * ms }), 115 * ms},
		{"lag a little above the RTT difference: a probe", with(func(in *waitInputs) { in.recentLag = 200 * ms }), 21 * ms},
		{"same-region writer: the lag heuristic", with(func(in *waitInputs) { in.writerRTT = ms / 2; in.recentLag = 10 * ms }), 105 * ms},
		{"same-region writer, slow reader: the lag heuristic", with(func(in *waitInputs) { in.writerRTT = ms / 2; in.recentLag = 300 * ms }), 830 * ms},
		{"same-region writer, PreferWriter: the round trips", with(func(in *waitInputs) { in.writerRTT = ms / 2; in.recentLag = 10 * ms; in.preferWriter = true }), 9875 * time.Microsecond},
		{"same-region writer, PreferWriter, stalled reader", with(func(in *waitInputs) { in.writerRTT = ms / 2; in.behindFor = 100 * ms; in.preferWriter = true }), 0},
		{"remote reader as far as the writer", with(func(in *waitInputs) { in.readerRTT = 150 * ms }), 0},
		{"MaxWait caps", with(func(in *waitInputs) { in.writerRTT = 3 * time.Second; in.recentLag = 2 * time.Second }), time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := waitBudget(tc.in); got != tc.want {
				t.Errorf("waitBudget(%+v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestRTTEstimate(t *testing.T) {
	var e rttEstimate
	if e.get() != 0 {
		t.Fatal("estimate before any sample")
	}
	e.observe(450 * time.Millisecond) // a dial and a query
	e.observe(150 * time.Millisecond)
	if got := e.get(); got != 150*time.Millisecond {
		t.Fatalf("after a lower sample: %s, want 150ms", got)
	}
	e.observe(950 * time.Millisecond) // one slow sample
	if got := e.get(); got != 250*time.Millisecond {
		t.Fatalf("after one higher sample: %s, want 250ms", got)
	}
	for range 50 {
		e.observe(400 * time.Millisecond)
	}
	if got := e.get(); got < 390*time.Millisecond || got > 400*time.Millisecond {
		t.Fatalf("after a lasting rise to 400ms: %s", got)
	}
}

func TestReadWaitBudget(t *testing.T) {
	rt := &Router{cfg: Config{MaxWait: time.Second, PollInterval: 20 * time.Millisecond, MaxLag: time.Minute}}
	rt.wcur.Store(&writerTarget{cand: 0})
	newReader := func(wm string, lag time.Duration) *reader {
		r := &reader{cand: 1}
		r.healthy.Store(true)
		r.wm.Store(mustPos(t, wm))
		r.recentLag.Store(int64(lag))
		r.rtt.observe(time.Millisecond)
		return r
	}
	need := mustPos(t, "0:10")
	if got := rt.readWaitBudget(newReader("0:10", 0), need); got != time.Second {
		t.Errorf("reader that has need: %s, want MaxWait", got)
	}
	if got := rt.readWaitBudget(newReader("0:5", 900*time.Millisecond), need); got != time.Second {
		t.Errorf("no writer RTT yet: %s, want the lag heuristic capped by MaxWait", got)
	}
	rt.writerRTT.observe(150 * time.Millisecond)
	if got := rt.readWaitBudget(newReader("0:5", 60*time.Millisecond), need); got != 115*time.Millisecond {
		t.Errorf("lag well below the writer RTT: %s, want 115ms", got)
	}
	if got := rt.readWaitBudget(newReader("0:5", 100*time.Millisecond), need); got != 22*time.Millisecond {
		t.Errorf("lag near the writer RTT: %s, want a 22ms probe", got)
	}
	stalled := newReader("0:5", 100*time.Millisecond)
	stalled.demand(need, false, time.Now().Add(-time.Second))
	stalled.release(false)
	if got := rt.readWaitBudget(stalled, need); got != 0 {
		t.Errorf("reader behind for 1 s: %s, want 0", got)
	}
	unhealthy := newReader("0:5", 0)
	unhealthy.healthy.Store(false)
	if got := rt.readWaitBudget(unhealthy, need); got != 0 {
		t.Errorf("unusable reader: %s, want 0", got)
	}
	// need is known to be old: a write of this router returned it 450 ms ago.
	rt.writes.ring[0].pos, rt.writes.ring[0].at = mustPos(t, "0:11"), time.Now().Add(-450*time.Millisecond)
	if got := rt.readWaitBudget(newReader("0:5", 500*time.Millisecond), need); got < 40*time.Millisecond || got > 149*time.Millisecond {
		t.Errorf("slow reader, need of an old write: %s, want its remaining catch-up", got)
	}
	rt.writes = writeClock{}
	rt.noteWrite(mustPos(t, "0:11"))
	if got, exact := rt.writes.age(need, time.Now().Add(time.Second)); got < time.Second || exact {
		t.Errorf("age of a write noted a second ago: %s (exact %v, want false: the write returned 0:11)", got, exact)
	}
	if got, _ := rt.writes.age(mustPos(t, "0:12"), time.Now()); got != 0 {
		t.Errorf("age of a position no write returned: %s, want 0", got)
	}
	rt.noteWrite(need)
	if _, exact := rt.writes.age(need, time.Now()); !exact {
		t.Error("age of a position a write returned: not exact")
	}
	if got := rt.readWaitBudget(newReader("0:5", 500*time.Millisecond), need); got != 0 {
		t.Errorf("slow reader, need a write of this router just returned: %s, want 0 (no probe)", got)
	}
	rt.writes = writeClock{}
	// need is known to be old: the writer had it 450 ms ago (its position
	// read started a writer round trip before).
	rt.wsample.record(mustPos(t, "0:12"), time.Now().Add(-600*time.Millisecond))
	if got := rt.readWaitBudget(newReader("0:5", 500*time.Millisecond), need); got < 40*time.Millisecond || got > 149*time.Millisecond {
		t.Errorf("slow reader, old need: %s, want its remaining catch-up", got)
	}
}

// farWriterRouter returns a router whose writer is 150 ms away, and its
// local reader, at 0:5 with a recent lag of lag and a 0.5 ms round trip.
func farWriterRouter(t *testing.T, lag time.Duration) (*Router, *reader) {
	t.Helper()
	rt := &Router{cfg: Config{MaxWait: time.Second, PollInterval: 20 * time.Millisecond, MaxLag: time.Minute}}
	rt.wcur.Store(&writerTarget{cand: 0})
	rt.writerRTT.observe(150 * time.Millisecond)
	r := &reader{cand: 1}
	r.healthy.Store(true)
	r.wm.Store(mustPos(t, "0:5"))
	r.rtt.observe(time.Millisecond / 2)
	r.recentLag.Store(int64(lag))
	return rt, r
}

// TestGuardTimeoutsKeepLag: probes that time out say the reader is at least
// their wait behind, never that it caught up; the next read of a reader
// known to be 500 ms behind gets a probe, not a wait for a lag the probes
// made up (issue 11: it waited 115 ms, then went to the writer). A guard
// that passed counts the age of its position with its wait.
func TestGuardTimeoutsKeepLag(t *testing.T) {
	const ms = time.Millisecond
	rt, r := farWriterRouter(t, 500*ms)
	lag := func() time.Duration { return time.Duration(r.recentLag.Load()) }
	need := mustPos(t, "0:10")
	probe := rt.readWaitBudget(r, need)
	if probe <= 0 || probe > 40*ms {
		t.Fatalf("reader 500 ms behind, fresh need: budget %s, want a probe", probe)
	}
	waits := 0
	for range 10 {
		r.noteWait(0, probe, false)
		if rt.readWaitBudget(r, need) > probe {
			waits++
		}
	}
	if waits != 0 {
		t.Errorf("%d of 10 reads after timed-out probes waited longer than a probe", waits)
	}
	if got := lag(); got != 500*ms {
		t.Errorf("recent lag after timed-out probes: %s, want 500ms", got)
	}
	r.noteWait(600*ms, 100*ms, false)
	if got := lag(); got != 700*ms {
		t.Errorf("recent lag after a timeout of a position 600 ms old after 100 ms: %s, want 700ms", got)
	}
	// Passed at once: an upper bound, smoothed down; never up.
	r.noteWait(100*ms, ms/2, true)
	if got := lag(); got != 550*ms+ms/8 {
		t.Errorf("recent lag after a guard that passed at once: %s, want 550.125ms", got)
	}
	r.noteWait(2*time.Second, ms/2, true)
	if got := lag(); got != 550*ms+ms/8 {
		t.Errorf("recent lag after a guard for an old position that passed at once: %s, want it unchanged", got)
	}
	// Passed after waiting: a measurement, up at once.
	r.noteWait(250*ms, 500*ms, true)
	if got := lag(); got != 750*ms {
		t.Errorf("recent lag after a guard that waited 500 ms for a position 250 ms old: %s, want 750ms", got)
	}
}

// TestWatchMeasuresLag: with a writer 150 ms away, the post-write watch's
// waits measure the local reader's lag as guards do (issue 11: a reader
// 500 ms behind had a recent lag of 150 ms from an earlier row of the
// grid, so reads at t = 250 ms probed it in vain), and a wait that timed
// out marks the reader behind since the write, so that the next read that
// needs the write goes elsewhere at once, as for a stalled reader.
func TestWatchMeasuresLag(t *testing.T) {
	const ms = time.Millisecond
	rt, r := farWriterRouter(t, 150*ms)
	p := mustPos(t, "0:10")
	rt.noteWrite(p)     // the router's write, in its write clock
	if !r.watchFor(p) { // as noteWrite does for the router's local readers
		t.Fatal("no watch after the write")
	}
	r.watchSince = r.watchSince.Add(-time.Second) // the write returned a second ago
	if got := r.watchBehind(p, time.Now()); got != 0 {
		t.Errorf("behind %s before any wait timed out, want 0", got)
	}
	// A wait sent 40 ms after the write times out after 500 ms.
	start := time.Now()
	rt.watchDone(t.Context(), r, watchResult{want: p, pos: mustPos(t, "0:6"), start: start, end: start.Add(500 * ms)})
	if lag := time.Duration(r.recentLag.Load()); lag < 500*ms {
		t.Errorf("recent lag %s after a wait timed out 500 ms after the write, want at least 500ms", lag)
	}
	if got := r.watchBehind(p, start); got < time.Second {
		t.Errorf("behind %s a second after the write, want at least 1s", got)
	}
	if got := r.watchBehind(mustPos(t, "0:8"), start); got != 0 {
		t.Errorf("behind %s for an older position, want 0 (r may have it)", got)
	}
	// A read needs a newer position (a token's), whose age is unknown: a
	// probe, but for a reader known behind since the write.
	if got := rt.readWaitBudget(r, mustPos(t, "0:11")); got != 0 {
		t.Errorf("budget %s for a reader known behind since the write, want 0", got)
	}
	// The next wait passes after blocking 300 ms: r applied the write
	// about 800 ms after it; the lag rises to that.
	rt.watchDone(t.Context(), r, watchResult{want: p, pos: mustPos(t, "0:10"), start: start.Add(500 * ms), end: start.Add(800 * ms)})
	if lag := time.Duration(r.recentLag.Load()); lag < 800*ms {
		t.Errorf("recent lag %s after a wait passed 800 ms after the write, want at least 800ms", lag)
	}
	if got := r.watchBehind(p, time.Now()); got != 0 {
		t.Errorf("behind %s once r has the write, want 0", got)
	}
}
