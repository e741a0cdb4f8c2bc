package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// notifier wakes all reads waiting for a change of any monitor state.
type notifier struct {
	mu sync.Mutex    // protects ch
	ch chan struct{} // closed and replaced on each change
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) broadcast() {
	n.mu.Lock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
	n.mu.Unlock()
}

// Restart backoff of a failed background goroutine (see supervise).
const (
	restartMin = 100 * time.Millisecond
	restartMax = 10 * time.Second
)

// supervise runs fn, one of the router's background loops, until ctx is
// done. If fn panics (a driver or a WatermarkStore may) or returns early,
// supervise logs it through Config.Logger, calls failed, and runs fn again
// after a backoff that doubles from restartMin to restartMax (and starts
// over once fn has run for restartMax). It calls rt.wg.Done when it returns.
func (rt *Router) supervise(ctx context.Context, name string, fn func(context.Context), failed func()) {
	defer rt.wg.Done()
	backoff := restartMin
	for {
		start := time.Now()
		stack, err := runGuarded(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > restartMax {
			backoff = restartMin
		}
		if failed != nil {
			failed()
		}
		rt.cfg.Logger.LogAttrs(ctx, slog.LevelError, "dbrouter: background goroutine failed; restarting",
			slog.String("goroutine", name), slog.String("error", err.Error()),
			slog.Duration("backoff", backoff), slog.String("stack", stack))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, restartMax)
	}
}

// runGuarded runs fn and turns a panic into an error (with the stack).
func runGuarded(ctx context.Context, fn func(context.Context)) (stack string, err error) {
	defer func() {
		if v := recover(); v != nil {
			stack, err = string(debug.Stack()), fmt.Errorf("panic: %v", v)
		}
	}()
	fn(ctx)
	return "", errors.New("returned before Close")
}

// monitorError is the failure hook of r's monitor: until the restarted
// monitor polls r successfully, r takes no reads.
func (rt *Router) monitorError(r *reader) {
	r.healthy.Store(false)
	rt.changed.broadcast()
}

// monitor runs the monitor of reader r until ctx is done. It polls r
//   - at start and then every MonitorInterval (with ±10 % jitter), reading
//     the writer's position first, to measure lag and health;
//   - while a read waits for a position r is not known to have, at most once
//     per PollInterval (reader only), and while a bounded-staleness read
//     waits for a freshness check (writer, then reader);
//   - after a write of this router, if r is local and nothing else tells
//     the router that r has applied it (the post-write watch, below).
//
// The post-write watch: a read whose position the router knows r has goes
// without a guard (see readconn.go), so after a write the router should
// learn when its local readers apply it, but only if nothing else tells it
// first: reads on r (their samples and guards) and in-process waits do. So
// noteWrite sets r's watch (merged with a newer write's), and the monitor
// looks again after a quiet window of two PollIntervals (watchQuiet): if r
// is known to have the position, or reads were sent to r meanwhile (or a
// guarded read is in flight, or reads wait for r in process), nothing is
// sent (with reads flowing, the window starts over); else one query, run
// by a goroutine of the monitor (one at a time), waits on the server
// (MonitorTimeout/2) for the position and then reads r's applied position,
// so that the router learns the moment r applies it. A wait that times out
// is tried again after another quiet window, at most watchTries times;
// then the watch ends, and none starts again on r until r's watermark
// moves (a stalled reader costs no more). Readers that are the current
// writer, dialects without a server-side wait (the heartbeat), and routers
// with a shared WatermarkStore (a query per write and process would exceed
// the fleet's budget) get no watch.
func (rt *Router) monitor(ctx context.Context, r *reader) {
	cfg := &rt.cfg
	if cfg.Watermarks != nil {
		r.shared.startStore()
		defer r.shared.stopStore()
	}
	var w watchState
	if rt.watchOn {
		w.timer = time.NewTimer(time.Hour)
		w.timer.Stop()
		defer w.timer.Stop()
		w.done = make(chan watchResult, 1)
		defer func() {
			if w.inflight {
				<-w.done // bounded by MonitorTimeout, and ctx
			}
		}()
	}
	jitter := func() time.Duration {
		d := cfg.MonitorInterval
		return d - d/10 + rand.N(d/5+1)
	}
	bg := time.NewTimer(0)
	defer bg.Stop()
	spacing := time.NewTimer(0)
	defer spacing.Stop()
	<-spacing.C
	var lastPoll, next time.Time
	// watchEvent handles an event of the post-write watch: the end of its
	// quiet window (fired) or the result of its query. The watch runs
	// beside the demand loop below too, which a reader that stays behind
	// (a freshness chase of a stalled reader) can keep running for long.
	watchEvent := func(fired bool, res watchResult) {
		if fired {
			w.fire = nil
			rt.watchCheck(ctx, r, &w)
		} else {
			w.inflight = false
			rt.watchDone(ctx, r, res)
		}
		rt.watchArm(r, &w)
	}
	for {
		background := false
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-bg.C:
			background = true
			bg.Reset(jitter())
		case <-w.fire:
			watchEvent(true, watchResult{})
		case res := <-w.done:
			watchEvent(false, res)
		}
		for {
			rt.watchArm(r, &w)
			need, age, fresh := r.unmet(time.Now())
			if !background && !need {
				break
			}
			// Back off while a position stays missing (a stalled
			// reader): the n-th poll of one episode comes after about
			// age/8, so a 2 s stall costs ~20 polls, not 200.
			gap := max(cfg.PollInterval, min(age/8, cfg.MonitorInterval))
			if background {
				gap = cfg.PollInterval
			}
			wait := time.Until(lastPoll.Add(gap))
			if !next.IsZero() {
				wait = time.Until(next) // the shared store's schedule (see checkShared)
			}
			if wait > 0 {
				spacing.Reset(wait)
			spaced:
				for {
					select {
					case <-ctx.Done():
						return
					case <-spacing.C:
						break spaced
					case <-bg.C:
						background = true
						bg.Reset(jitter())
						break spaced
					case <-r.kick:
						// A new demand is seen after the spacing;
						// a new watch now.
						rt.watchArm(r, &w)
					case <-w.fire:
						watchEvent(true, watchResult{})
					case res := <-w.done:
						watchEvent(false, res)
					}
				}
			}
			lastPoll = time.Now()
			var waited bool
			if waited, next = rt.check(ctx, r, background, fresh); waited {
				lastPoll = time.Time{} // a server-side wait needs no spacing
			}
			background = false
			select {
			case <-w.fire:
				watchEvent(true, watchResult{})
			case res := <-w.done:
				watchEvent(false, res)
			default:
			}
		}
		if !r.healthy.Load() {
			// Retry a failing reader sooner, so that it gets reads
			// again soon after it recovers.
			bg.Reset(min(jitter(), time.Second))
		}
		rt.watchArm(r, &w)
	}
}

// watchTries is how many wait queries one post-write watch sends at most
// (each waits MonitorTimeout/2 on the server: about 2 s of lag by default).
const watchTries = 4

// watchState is the monitor's side of r's post-write watch (see monitor).
// Only the monitor goroutine uses it.
type watchState struct {
	timer    *time.Timer
	fire     <-chan time.Time // timer.C while the quiet window runs, else nil
	told     int64            // r.told when the window started
	inflight bool             // a wait query runs; its result comes on done
	done     chan watchResult
}

// watchResult is what a watch's wait query found: r's applied position,
// read after the wait, by a query that started at start.
type watchResult struct {
	want  *position // the position waited for
	pos   *position
	start time.Time
	end   time.Time
	err   error
}

// watchQuiet is the quiet window of the post-write watch: a read sent to a
// reader within it tells the router the reader's position without a query.
func (rt *Router) watchQuiet() time.Duration { return 2 * rt.cfg.PollInterval }

// watchArm starts the quiet window of r's watch if one is set and neither
// a window nor a query runs.
func (rt *Router) watchArm(r *reader, w *watchState) {
	if !rt.watchOn || w.fire != nil || w.inflight {
		return
	}
	if p, _, _ := r.watched(); p.empty() {
		return
	}
	w.told = r.told.Load()
	w.timer.Reset(rt.watchQuiet())
	w.fire = w.timer.C
}

// watchCheck runs at the end of r's quiet window: it sends the watch's
// wait query if r is still not known to have the watched position and
// nothing else will tell (see monitor).
func (rt *Router) watchCheck(ctx context.Context, r *reader, w *watchState) {
	p, tries, waiters := r.watched()
	switch {
	case p.empty():
		return
	case rt.isWriter(r):
		r.endWatch(false)
		return
	case r.told.Load() != w.told || r.guarding.Load() > 0 || waiters:
		return // reads tell; watchArm starts another window
	case tries >= watchTries:
		r.endWatch(true)
		return
	}
	q := waitThenRead(rt.dialect, p, rt.cfg.MonitorTimeout/2)
	if q == "" {
		r.endWatch(false)
		return
	}
	r.watchTry()
	r.polls.Add(1)
	rt.monitorQueries.Add(1)
	rt.stats.watchQueries.Add(1)
	w.inflight = true
	done := w.done
	go func() { done <- rt.watchQuery(ctx, r, p, q) }()
}

// watchQuery runs the watch's query q, a wait for p, on r. It runs on a
// goroutine of r's monitor, which waits for it before it returns.
func (rt *Router) watchQuery(ctx context.Context, r *reader, p *position, q string) (res watchResult) {
	defer func() {
		if v := recover(); v != nil {
			// A driver's panic: the monitor goes on (a panic of its
			// own would restart it, see supervise).
			res = watchResult{want: p, err: fmt.Errorf("panic: %v", v)}
			rt.cfg.Logger.LogAttrs(ctx, slog.LevelError, "dbrouter: post-write watch query panicked",
				slog.String("reader", r.spec.Name), slog.String("error", res.err.Error()), slog.String("stack", string(debug.Stack())))
		}
	}()
	res.want, res.start = p, time.Now()
	qctx, cancel := context.WithTimeout(ctx, rt.cfg.MonitorTimeout)
	defer cancel()
	var waited sql.NullInt64
	var s sql.NullString
	if res.err = r.db.QueryRowContext(qctx, q).Scan(&waited, &s); res.err == nil {
		res.pos, res.err = rt.dialect.parseReader(s.String)
	}
	res.end = time.Now()
	return res
}

// watchDone records what a watch's query found. A failed query is left to
// the monitor's own checks (which judge r's health); the watch tries again
// after a quiet window.
//
// A wait of the watch is a guard without a read: where lags count from the
// write (see lagFromWrite), it measures r's lag as a guard does (noteWait),
// with the age of the position waited for: so the router learns a
// reader's lag after each write, without a read that waits for it. A wait
// that timed out also marks r as behind since that write (watchBehind).
func (rt *Router) watchDone(ctx context.Context, r *reader, res watchResult) {
	if res.err != nil {
		return
	}
	passed := res.pos.covers(res.want)
	if !passed {
		r.watchMiss(res.want)
	}
	if rt.lagFromWrite() {
		age, _ := rt.writes.age(res.want, res.start)
		r.noteWait(age, res.end.Sub(res.start), passed)
	}
	// Read after the wait: an upper bound of what r served before start.
	r.sample.record(res.pos, res.start)
	rt.update(ctx, r, res.pos, nil, time.Time{}, time.Time{}, res.start)
}

// waitThenRead returns one statement that waits (at most timeout) for r to
// apply p and then reads r's applied position, or "" if the dialect has no
// server-side wait for p. Both parts are one-column SELECTs without FROM;
// MariaDB and MySQL evaluate a select list left to right, so the position
// is read after the wait returned.
func waitThenRead(d dialect, p *position, timeout time.Duration) string {
	w := d.waitQuery(p, timeout)
	if w == "" {
		return ""
	}
	return w + ", " + strings.TrimPrefix(d.readerQuery(), "SELECT ")
}

// check brings r's state up to date for the monitor loop: from the shared
// [WatermarkStore] if one is configured (see checkShared), else by querying
// r. It reports whether r was queried with a server-side wait that
// succeeded (no spacing needed before the next one), and, with a store, when
// to look again if the need remains (zero: the usual spacing).
func (rt *Router) check(ctx context.Context, r *reader, background, fresh bool) (bool, time.Time) {
	if rt.cfg.Watermarks == nil {
		return rt.query(ctx, r, background, fresh), time.Time{}
	}
	return rt.checkShared(ctx, r, background, fresh)
}

// query queries r: a server-side wait for the pending position if the
// dialect has one and this is no background or freshness check, else a
// position poll.
//
// A reader that is the current writer gets no server-side wait: it has every
// write the router made since it became the writer, and MariaDB's wait would
// time out on it (see mariaDialect.waitQuery).
func (rt *Router) query(ctx context.Context, r *reader, background, fresh bool) bool {
	if !background && !fresh && !rt.isWriter(r) && rt.waitApplied(ctx, r) {
		return true
	}
	// While writes are forwarded, the background check does not read the
	// writer's position: that would keep a connection to the writer in
	// every process of the region (forward.go).
	rt.poll(ctx, r, (background && !rt.forwarding()) || fresh)
	return false
}

// poll reads r's applied position (after the writer's, with fresh) and
// updates r's state.
func (rt *Router) poll(ctx context.Context, r *reader, fresh bool) {
	cfg := &rt.cfg
	var wpos *position
	var wAt, wDone time.Time
	if fresh {
		wAt = time.Now()
		p, err := rt.queryPosition(ctx, rt.wdb(), rt.dialect.writerQuery(), rt.dialect.parseWriter)
		if err == nil {
			wpos = p
			if p2, at, ok := rt.observeWriterRTT(ctx, time.Since(wAt)); ok {
				wpos, wAt = p2, at
			}
			wDone = time.Now()
		} else if ctx.Err() == nil && classifyFailure(ctx, err).serverFailure() {
			// The writer does not answer: find out whether another
			// endpoint is writable (reads then stop waiting for
			// positions that no survivor has; see Router.writerGone).
			rt.search.kick()
		}
	}
	start := time.Now()
	r.polls.Add(1)
	rt.monitorQueries.Add(1)
	p, err := rt.queryPosition(ctx, r.db, rt.dialect.readerQuery(), rt.dialect.parseReader)
	if err != nil && rt.dialect.kind() == streamBeat && isErrno(err, erNoSuchTable) {
		// The heartbeat table has not reached r yet: on a new cluster
		// the beater creates it when the monitors start, and an Aurora
		// instance that joins can be polled before it has it. r
		// answers and has applied nothing, as when the row is missing:
		// it serves reads that need no position.
		if !r.noBeatTable.Swap(true) {
			cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: no heartbeat table on the reader yet: no position applied",
				slog.String("reader", r.spec.Name), slog.String("error", err.Error()))
		}
		p, err = rt.dialect.parseReader("")
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if r.healthy.Swap(false) {
			cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: reader excluded: monitor query failed",
				slog.String("reader", r.spec.Name), slog.String("error", err.Error()))
		}
		rt.changed.broadcast()
		return
	}
	r.rtt.observe(time.Since(start))
	// A position read is also an upper bound of what r served before it
	// started (see [Router.settle]).
	r.sample.record(p, start)
	if wpos != nil {
		rt.wsample.record(wpos, wAt)
	}
	rt.update(ctx, r, p, wpos, wAt, wDone, start)
}

// sampler shares position reads of one source among the reads that need
// one taken after a given time: a read started after that time serves
// them all, whoever started it. Safe for concurrent use.
type sampler struct {
	mu   sync.Mutex  // protects last and cur
	last *sample     // the newest completed read
	cur  *sampleCall // the newest read in flight, or nil
}

// sample is a position read that started at at.
type sample struct {
	pos *position
	at  time.Time
}

type sampleCall struct {
	at   time.Time
	done chan struct{} // closed when pos and err are set
	pos  *position
	err  error
}

// record keeps p, read by a query that started at at, if it is the newest.
func (s *sampler) record(p *position, at time.Time) {
	s.mu.Lock()
	switch {
	case s.last == nil:
		s.last = &sample{pos: p, at: at}
	case s.last.at.Before(at):
		// In place: the fields are read under mu only.
		s.last.pos, s.last.at = p, at
	}
	s.mu.Unlock()
}

// after returns a position of the source read by a query that started at
// or after t: a recorded one, one in flight, or one read now with q (in
// the caller's goroutine).
func (s *sampler) after(ctx context.Context, t time.Time, q func(context.Context) (*position, error)) (*position, error) {
	s.mu.Lock()
	if s.last != nil && !s.last.at.Before(t) {
		p := s.last.pos
		s.mu.Unlock()
		return p, nil
	}
	if c := s.cur; c != nil && !c.at.Before(t) {
		s.mu.Unlock()
		select {
		case <-c.done:
			if c.err == nil {
				return c.pos, nil
			}
			// The query of another read failed (perhaps its context):
			// try once more with ours.
			return s.after(ctx, time.Now(), q)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &sampleCall{at: time.Now(), done: make(chan struct{})}
	s.cur = c
	s.mu.Unlock()
	c.pos, c.err = q(ctx)
	s.mu.Lock()
	if s.cur == c {
		s.cur = nil
	}
	s.mu.Unlock()
	close(c.done)
	if c.err != nil {
		return nil, c.err
	}
	s.record(c.pos, c.at)
	return c.pos, nil
}

// update records that r has applied p (as of a query that started at
// start), after a writer position wpos read by a query that started at wAt
// and returned at wDone, if not nil.
//
// r had everything the writer had at wAt (freshness); its lag is counted
// from wDone, as this router's writes count the age of their positions
// (from when the answer arrived, see writeClock): counted from wAt, a
// writer 150 ms away made a reader with no lag look 150 ms behind at every
// background check, and reads then skipped a wait worth making (issue 11).
func (rt *Router) update(ctx context.Context, r *reader, p, wpos *position, wAt, wDone, start time.Time) {
	cfg := &rt.cfg
	now := time.Now()
	wm := r.raise(p)

	// Lag: the time the reader took (or is taking) to apply a position
	// the writer was seen at: a fresh writer position it already has
	// gives the time between the two queries; a pending position it lacks
	// gives its age so far; one it just got gives its catch-up time.
	var lag time.Duration
	known := false
	r.mu.Lock()
	if wpos != nil {
		if wm.covers(wpos) {
			r.freshAsOf.Store(wAt.UnixNano())
			lag, known = max(start.Sub(wDone), 0), true
		} else {
			// Behind at this check: chase the writer's position (see
			// monitor) to measure how far.
			if r.pending.empty() || wm.covers(r.pending) {
				r.pendingSince = wDone
			}
			r.pending = merge(r.pending, wpos)
			r.pendingFresh = wAt
		}
	}
	if !r.pending.empty() {
		if wm.covers(r.pending) {
			if !r.pendingFresh.IsZero() {
				r.freshAsOf.Store(max(r.freshAsOf.Load(), r.pendingFresh.UnixNano()))
			}
			lag, known = max(lag, now.Sub(r.pendingSince)), true
			r.pending, r.pendingFresh = nil, time.Time{}
		} else {
			lag, known = max(lag, now.Sub(r.pendingSince)), true
		}
	}
	r.mu.Unlock()
	if rt.isWriter(r) {
		// The writer is never behind itself.
		lag, known = 0, true
	}
	if known {
		r.lagNanos.Store(int64(lag))
		old := time.Duration(r.recentLag.Load())
		if lag >= old {
			r.recentLag.Store(int64(lag))
		} else {
			r.recentLag.Store(int64(old - (old-lag)/4))
		}
	}
	if !r.healthy.Swap(true) {
		cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "dbrouter: reader answers again", slog.String("reader", r.spec.Name))
	}
	rt.changed.broadcast()
}

// erNoSuchTable is MySQL's and MariaDB's ER_NO_SUCH_TABLE.
const erNoSuchTable = 1146

// queryPosition runs a one-value position query under the monitor timeout.
func (rt *Router) queryPosition(ctx context.Context, db *sql.DB, q string, parse func(string) (*position, error)) (*position, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.MonitorTimeout)
	defer cancel()
	var s sql.NullString
	if err := db.QueryRowContext(ctx, q).Scan(&s); err != nil && err != sql.ErrNoRows {
		return nil, err
	}
	// NULL or no row (a heartbeat row not yet replicated) is "nothing
	// applied": the reader serves no read that needs a position.
	return parse(s.String)
}
