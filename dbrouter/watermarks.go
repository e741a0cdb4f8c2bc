package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// WatermarkStore shares what the monitors learn about readers between the
// processes of a fleet, so that one query to a reader serves every process
// (see the package documentation for the arithmetic). The router never
// stores secrets in it, and parses what it reads as hostile input.
// Implementations must be safe for concurrent use, and should fail fast
// (a short client timeout): a failing store makes the router track the
// readers itself. Package dbrouter/memcachestore implements it on memcached
// and documents a Redis implementation command by command.
type WatermarkStore interface {
	// Get returns the value last stored under key, or "" if there is none
	// (or it expired). err is for failures of the store only.
	Get(ctx context.Context, key string) (string, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key, value string, ttl time.Duration) error
	// Claim atomically takes key for ttl unless a claim of key taken less
	// than its own ttl ago still holds it: of all the callers that claim
	// key while a claim holds it, none wins, and once it has expired
	// exactly one wins. The ttl is tens of milliseconds: a store whose
	// expiry is coarser (memcached: seconds) keeps the deadline in the
	// value. The router polls a reader only when it wins, and the others
	// read what it published. A failure of the store must be returned as
	// err, never as a lost claim: nobody would then poll the reader.
	//
	// A store that can also say when the claim holding key expires
	// implements [ClaimDeadliner] as well; one that keeps a budget of
	// claims per key, [ClaimBudgeter] (the router then uses that for the
	// claims of reads that wait, and Claim for the background checks).
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// ClaimDeadliner is an optional interface of a [WatermarkStore] (found by
// type assertion, like database/sql's optional driver interfaces): a claim
// that also returns when the claim holding key expires. With it, processes
// that lost a claim look for the holder's result when it is due and claim
// again as soon as the claim expires; without it, they assume a claim of
// their own ttl taken at the time they asked, which can make reads wait up
// to one ttl longer. Package dbrouter/memcachestore implements it. A
// wrapper of a store (for metrics, say) must forward both methods or
// neither: an embedded store's ClaimUntil would bypass the wrapper's Claim.
type ClaimDeadliner interface {
	// ClaimUntil is [WatermarkStore.Claim] that also returns the time the
	// claim holding key expires: the caller's own if won, the holder's if
	// lost, or the zero time if unknown. A time further than ttl from now
	// is treated as unknown.
	ClaimUntil(ctx context.Context, key string, ttl time.Duration) (won bool, until time.Time, err error)
}

// ClaimBudgeter is an optional interface of a [WatermarkStore]: claims
// that share a budget, so that a fleet may query a reader again as soon as
// the previous query is published while reads still wait, and still
// queries it no more often than once per interval on average. With it, a
// demand claim holds the key only while its query runs (hold, a few
// milliseconds), and the key's budget (at most burst claims at once, one
// more per interval) bounds the fleet's queries; without it, every claim
// holds the key for a whole interval, and reads that need a position newer
// than the holder's wait for that interval to end. Package
// dbrouter/memcachestore implements it, and documents a Redis version. A
// wrapper of a store must forward it along with Claim and ClaimUntil, or
// none of them.
type ClaimBudgeter interface {
	// ClaimBudget wins key unless another claim's hold still runs or the
	// budget is spent: the budget is the generic cell rate algorithm,
	// with a theoretical arrival time (TAT) kept with the key; a claim at
	// now may win if TAT <= now + (burst-1)*interval, and winning sets
	// TAT to max(TAT, now) + interval. Of all the callers that claim key
	// at once, at most one wins. It returns when the latest winner's
	// hold ends (the caller's own if won) and when a claim may win next
	// (the zero time if unknown). A time further than interval from now
	// is treated as unknown. Like Claim, a failure of the store is an
	// error, never a lost claim; a value the key holds that no claim of
	// this interval and burst writes (one in the far future, say) is
	// taken over.
	ClaimBudget(ctx context.Context, key string, hold, interval time.Duration, burst int) (won bool, held, next time.Time, err error)
}

// sharedBurst is the burst of a reader's demand budget (see
// [ClaimBudgeter]): the fleet may query a reader this many times in a row
// while reads wait, then once per PollInterval. sharedMerge is how many
// claims in a row the budget spaces before a process leaves one to the
// fleet (see checkBudget).
const (
	sharedBurst = 3
	sharedMerge = 3
)

// claim claims key in st, with the claim's expiry when st reports it (zero
// if unknown).
func claim(ctx context.Context, st WatermarkStore, key string, ttl time.Duration) (bool, time.Time, error) {
	if d, ok := st.(ClaimDeadliner); ok {
		return d.ClaimUntil(ctx, key, ttl)
	}
	won, err := st.Claim(ctx, key, ttl)
	return won, time.Time{}, err
}

// watermarkPrefix starts every key the router uses in a WatermarkStore;
// the reader's [Endpoint.Name] follows, so names must be the same in every
// process of the fleet.
const watermarkPrefix = "regiondb/dbrouter/"

// The shared value: "v1 <position text> <lag ns> <fresh-as-of unix ns>
// <healthy 0|1> <checked-at unix ns>", checked-at being when the query
// that read the position started.
func formatShared(wm *position, lag, freshAsOf int64, healthy bool, at time.Time) string {
	h := "0"
	if healthy {
		h = "1"
	}
	pos := wm.String()
	if pos == "" {
		pos = "-"
	}
	return "v1 " + pos + " " + strconv.FormatInt(lag, 10) + " " + strconv.FormatInt(freshAsOf, 10) + " " + h + " " +
		strconv.FormatInt(at.UnixNano(), 10)
}

type sharedState struct {
	wm        *position
	lag       int64
	freshAsOf int64
	healthy   bool
	at        time.Time
}

// parseShared parses a shared value, whose position must be of kind (the
// router's dialect): the store is as hostile as any network peer.
func parseShared(s string, kind streamKind) (sharedState, bool) {
	f := strings.Fields(s)
	if len(f) != 6 || f[0] != "v1" {
		return sharedState{}, false
	}
	var st sharedState
	var err error
	if f[1] != "-" {
		if st.wm, err = parsePositionText(f[1]); err != nil || !st.wm.only(kind) {
			return sharedState{}, false
		}
	}
	var at int64
	if st.lag, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return sharedState{}, false
	}
	if st.freshAsOf, err = strconv.ParseInt(f[3], 10, 64); err != nil {
		return sharedState{}, false
	}
	if at, err = strconv.ParseInt(f[5], 10, 64); err != nil {
		return sharedState{}, false
	}
	st.healthy, st.at = f[4] == "1", time.Unix(0, at)
	// A time in the future or a negative lag is no process's measurement.
	if now := time.Now().Add(time.Minute).UnixNano(); st.lag < 0 || st.freshAsOf > now || at > now || (f[4] != "0" && f[4] != "1") {
		return sharedState{}, false
	}
	return st, true
}

// loadShared applies the shared state of r, if any, and reports whether it
// settles the monitor's need: for a check (background or freshness), a
// state checked less than a MonitorInterval (resp. PollInterval) ago; for
// demand, a watermark that covers every pending position.
// at is when the query of the state read started (zero if none), err is
// the store's.
func (rt *Router) loadShared(ctx context.Context, r *reader, check bool) (settled bool, at time.Time, err error) {
	var v string
	if err := r.shared.call(ctx, rt.storeLimit(r), func() (err error) {
		v, err = rt.cfg.Watermarks.Get(ctx, watermarkPrefix+r.spec.Name)
		return err
	}); err != nil || v == "" {
		return false, time.Time{}, err
	}
	st, ok := parseShared(v, rt.dialect.kind())
	if !ok {
		rt.stats.positionsRejected.Add(1)
		return false, time.Time{}, nil
	}
	if st.wm != nil {
		for {
			old := r.wm.Load()
			if old.covers(st.wm) || r.wm.CompareAndSwap(old, merge(old, st.wm)) {
				break
			}
		}
	}
	if f := r.freshAsOf.Load(); st.freshAsOf > f {
		r.freshAsOf.CompareAndSwap(f, st.freshAsOf)
	}
	age := time.Since(st.at)
	if check && age < rt.cfg.MonitorInterval {
		r.lagNanos.Store(st.lag)
		r.recentLag.Store(max(r.recentLag.Load()*3/4, st.lag))
		r.healthy.Store(st.healthy)
	}
	wm := r.wm.Load()
	r.mu.Lock()
	settled = false
	if !r.pending.empty() && wm.covers(r.pending) {
		sample := time.Since(r.pendingSince)
		r.pending, r.pendingFresh = nil, time.Time{}
		r.recentLag.Store(max(r.recentLag.Load()*3/4, int64(sample)))
		settled = r.wantFresh == 0
	} else if r.pending.empty() {
		settled = r.wantFresh == 0 || age < rt.cfg.PollInterval
	}
	r.mu.Unlock()
	rt.changed.broadcast()
	if check {
		return age < rt.cfg.MonitorInterval && r.wantFreshNow() == 0, st.at, nil
	}
	return settled, st.at, nil
}

// saveShared publishes r's state after this process queried it with a
// query that started at at.
func (rt *Router) saveShared(ctx context.Context, r *reader, at time.Time) {
	v := formatShared(r.wm.Load(), r.lagNanos.Load(), r.freshAsOf.Load(), r.healthy.Load(), at)
	r.shared.call(ctx, rt.storeLimit(r), func() error {
		return rt.cfg.Watermarks.Set(ctx, watermarkPrefix+r.spec.Name, v, 2*rt.cfg.MonitorInterval)
	})
}

// sharedSched is a monitor's view of the fleet's demand claim of its
// reader. Only the reader's monitor goroutine uses it.
type sharedSched struct {
	until time.Time     // when the demand claim last seen expires
	ttl   time.Duration // the ttl this process claimed it with
	ours  bool          // this process holds it
	looks int           // reads of the store since, waiting for the holder's result
	// With a ClaimBudgeter (see checkBudget), until is when a claim may
	// win next, and claimed and due are when the latest claim was won and
	// when its result is due.
	claimed, due time.Time
	spaced       int // claims in a row that the budget spaced (see checkBudget)
	// pubDelay is the smoothed time from a won claim to its publication
	// (a query and a Set): when the others read the result.
	pubDelay time.Duration

	calls  chan *storeCall // to the store goroutine (capacity 1)
	exited chan struct{}   // closed when the store goroutine returns
	last   *storeCall      // the latest call sent
}

// storeCall is one call to the WatermarkStore, run by the store goroutine.
type storeCall struct {
	fn      func() error
	started atomic.Int64  // UnixNano when fn started, 0 before
	done    chan struct{} // closed when fn returned (or panicked)
	err     error         // what fn returned
	panic   any           // what fn panicked with
}

// errStoreSlow stands for a store call that did not return within
// storeLimit, or could not start because the previous one still runs.
var errStoreSlow = errors.New("dbrouter: watermark store too slow")

// startStore starts the store goroutine of r's monitor, which runs the
// monitor's calls to the WatermarkStore so that a hung store costs a check
// at most storeLimit per call. stopStore ends it.
func (sc *sharedSched) startStore() {
	calls, exited := make(chan *storeCall, 1), make(chan struct{})
	sc.calls, sc.exited, sc.last = calls, exited, nil
	go func() {
		defer close(exited)
		for c := range calls {
			func() {
				defer func() {
					c.panic = recover()
					close(c.done)
				}()
				c.started.Store(time.Now().UnixNano())
				c.err = c.fn()
			}()
		}
	}()
}

// stopStore ends the store goroutine and waits for it: for the call in
// flight, if any, at most the store's own timeout.
func (sc *sharedSched) stopStore() {
	close(sc.calls)
	<-sc.exited
}

// storeLimit is how long r's monitor waits for one store call. A read
// waits for r at least 2 PollIntervals + 5/4 of r's recent lag (see
// waitAndPick and lagBudget); two store calls that give up (a Get and a Claim) take
// half of what exceeds one PollInterval, which is left for the query.
func (rt *Router) storeLimit(r *reader) time.Duration {
	if rt.cfg.unguardedStore {
		return 0
	}
	return rt.cfg.PollInterval/2 + time.Duration(r.recentLag.Load())*5/8
}

// call runs fn, a call to the store whose results fn keeps, on the store
// goroutine, and returns fn's error if it returned within limit (limit 0:
// fn runs on the caller's goroutine, for a test's control). Else it returns
// errStoreSlow, and the caller goes on as if the store had failed (fn's
// results are then never read: the late call only writes them). A panic in
// fn is raised again here, in the monitor, whose supervisor logs it.
func (sc *sharedSched) call(ctx context.Context, limit time.Duration, fn func() error) error {
	if limit == 0 {
		return fn()
	}
	if sc.last != nil {
		select {
		case <-sc.last.done:
		default:
			return errStoreSlow // the previous call still runs
		}
	}
	c := &storeCall{fn: fn, done: make(chan struct{})}
	sc.last = c
	sc.calls <- c
	// The limit counts from when fn started: a goroutine that a loaded
	// machine starts late does not make the store slow.
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			if c.panic != nil {
				panic(c.panic)
			}
			return c.err
		case <-t.C:
			start := c.started.Load()
			if start == 0 {
				t.Reset(limit / 4)
				continue
			}
			if left := time.Until(time.Unix(0, start).Add(limit)); left > 0 {
				t.Reset(left)
				continue
			}
			return errStoreSlow
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkShared is check with a WatermarkStore. A process reads the shared
// state first; a read waiting for a position takes the reader's demand
// claim (ttl PollInterval), and only the winner queries the reader and
// publishes. The claim's expiry sets the fleet's schedule:
//
//   - the holder may query again as soon as its claim expires (its query
//     started when it won), not one more PollInterval after it noticed;
//   - a process that lost reads the store when the holder's result is due
//     (the claim's start plus the usual time to query and publish), a few
//     times more shortly after if it is not there yet, and claims again when
//     the claim expires;
//   - a query of the fleet is a server-side wait for the claimer's pending
//     position that then reads the reader's applied position, in one
//     statement, so that what it publishes covers every write the reader
//     has applied, not only the claimer's.
//
// While a position stays missing (a stalled reader), the claim lasts the
// monitor's back-off gap, so the fleet backs off as one process does. If
// the store fails, the process queries the reader itself (and the usual
// spacing applies): a store outage never makes reads wait longer.
func (rt *Router) checkShared(ctx context.Context, r *reader, background, fresh bool) (bool, time.Time) {
	st := rt.cfg.Watermarks
	settled, at, err := rt.loadShared(ctx, r, background || fresh)
	if err != nil {
		rt.stats.storeFallbacks.Add(1)
		return rt.query(ctx, r, background, fresh), time.Time{}
	}
	if settled {
		return false, time.Now()
	}
	if background || fresh {
		var won bool
		err := r.shared.call(ctx, rt.storeLimit(r), func() (err error) {
			won, err = st.Claim(ctx, watermarkPrefix+r.spec.Name+"/check", rt.cfg.MonitorInterval)
			return err
		})
		if err == nil && !won {
			return false, time.Time{} // another process checks; the next round reads its result
		}
		if err != nil {
			rt.stats.storeFallbacks.Add(1)
		}
		start := time.Now()
		waited := rt.query(ctx, r, background, fresh)
		if err == nil {
			rt.saveShared(ctx, r, start)
		}
		return waited, time.Time{}
	}
	sc := &r.shared
	poll := rt.cfg.PollInterval
	if sc.pubDelay == 0 {
		sc.pubDelay = poll / 10
	}
	if b, ok := st.(ClaimBudgeter); ok {
		return rt.checkBudget(ctx, r, b, at)
	}
	now := time.Now()
	if now.Before(sc.until) {
		if sc.ours {
			return false, sc.until
		}
		if due := sc.until.Add(sc.pubDelay - sc.ttl); now.Before(due) {
			return false, due
		}
		claimed := sc.until.Add(-sc.ttl)
		if at.Before(claimed) {
			if sc.looks < 3 {
				// The holder's result is not in yet: look again soon.
				sc.looks++
				return false, minTime(sc.until, now.Add(max(sc.pubDelay/2, poll/40)))
			}
		} else if sc.looks > 0 {
			// It came later than this process expected: expect the
			// holders' results that much later.
			sc.pubDelay = min(sc.pubDelay+(now.Sub(claimed)-sc.pubDelay)/4, poll/2)
			sc.looks = 0
		}
		return false, sc.until
	}
	_, age, _ := r.unmet(now)
	ttl := max(poll, min(age/8, rt.cfg.MonitorInterval))
	var won bool
	var until time.Time
	err = r.shared.call(ctx, rt.storeLimit(r), func() (err error) {
		won, until, err = claim(ctx, st, watermarkPrefix+r.spec.Name+"/demand", ttl)
		return err
	})
	if err != nil {
		rt.stats.storeFallbacks.Add(1)
		return rt.query(ctx, r, false, false), time.Time{}
	}
	start := time.Now()
	switch {
	case until.IsZero() || until.After(start.Add(ttl)):
		// Unknown, or further than a claim of this ttl taken now (a
		// planted value, a clock ahead of ours): claim again after at
		// most one ttl, so that no reading of the store makes reads
		// wait longer than the fleet's schedule.
		until = start.Add(ttl)
	case until.Before(start.Add(sc.pubDelay)):
		until = start.Add(sc.pubDelay) // (a clock behind ours) no spinning
	}
	sc.until, sc.ttl, sc.ours, sc.looks = until, ttl, won, 0
	if !won {
		if due := until.Add(sc.pubDelay - ttl); start.Before(due) {
			return false, due
		}
		return false, until
	}
	rt.queryShared(ctx, r)
	rt.saveShared(ctx, r, start)
	d := time.Since(start)
	sc.pubDelay = min(max(sc.pubDelay+(d-sc.pubDelay)/4, poll/20), poll/2)
	return false, until
}

// checkBudget is checkShared's demand schedule with a store that keeps a
// budget of claims ([ClaimBudgeter]): a claim holds the key while its
// query runs (hold: about 3/2 of the usual time to query and publish), so
// that once the holder's result is in, reads that still wait (a position
// written after the holder's) get the next query at once, as long as the
// budget (sharedBurst in a row, one per PollInterval on average, one per
// back-off gap while a position stays missing) allows:
//
//   - the winner queries (queryShared) and publishes, then claims again
//     as soon as its hold ends if its reads still wait; a claim won as
//     reads come in waits up to 3/40 of a PollInterval (1.5 ms) for the
//     positions of the rest of their group first;
//   - a process whose last sharedMerge claims the budget spaced (its
//     reads come in more groups than the budget serves as they come, say
//     three groups a cycle of 20 ms each, which then wait for a query each,
//     in step with the budget) lets one claim pass if its reads have
//     waited less than half a PollInterval: the group it would serve joins
//     the next, and the fewer groups are served as they come;
//   - a process that lost reads the store when the holder's result is due
//     (the claim plus the usual time to query and publish), a few times
//     more shortly after if it is not in yet, and claims again when a
//     claim may win (the hold's end, or the budget's next claim).
func (rt *Router) checkBudget(ctx context.Context, r *reader, st ClaimBudgeter, at time.Time) (bool, time.Time) {
	sc := &r.shared
	poll := rt.cfg.PollInterval
	now := time.Now()
	if now.Before(sc.until) {
		if sc.ours {
			return false, sc.until
		}
		if now.Before(sc.due) {
			return false, sc.due
		}
		if at.Before(sc.claimed) {
			if sc.looks < 3 {
				// The holder's result is not in yet: look again soon.
				sc.looks++
				return false, minTime(sc.until, now.Add(max(sc.pubDelay/2, poll/40)))
			}
		} else if sc.looks > 0 {
			// It came later than this process expected: expect the
			// holders' results that much later.
			sc.pubDelay = min(sc.pubDelay+(now.Sub(sc.claimed)-sc.pubDelay)/4, poll/2)
			sc.looks = 0
		}
		return false, sc.until
	}
	_, age, _ := r.unmet(now)
	interval := max(poll, min(age/8, rt.cfg.MonitorInterval))
	if sc.spaced >= sharedMerge && age < poll/2 {
		// The budget spaced this process's last claims: its reads come
		// in more groups than the budget serves as they come, and each
		// group waits for a query of its own. Leave one claim to the
		// fleet, so that the group it would serve joins the next one
		// (unless its reads have waited half a PollInterval already:
		// one more interval would take them near their wait bound).
		// It looks for another process's result as one that lost does.
		sc.spaced = 0
		sc.until, sc.ours, sc.looks = now.Add(interval), false, 0
		sc.claimed, sc.due = now, now.Add(sc.pubDelay)
		return false, sc.due
	}
	// A claim won as the reads' positions come in waits a little for the
	// group's later ones, so that one query serves the group.
	linger := max(poll*3/40-age, 0)
	hold := min(max(sc.pubDelay*3/2, poll/20), poll/2) + linger
	var won bool
	var held, next time.Time
	err := r.shared.call(ctx, rt.storeLimit(r), func() (err error) {
		won, held, next, err = st.ClaimBudget(ctx, watermarkPrefix+r.spec.Name+"/demand", hold, interval, sharedBurst)
		return err
	})
	if err != nil {
		rt.stats.storeFallbacks.Add(1)
		return rt.query(ctx, r, false, false), time.Time{}
	}
	start := time.Now()
	// Unknown times, or times further than a claim of this interval taken
	// now can set (a planted value, a clock ahead of ours), count as one
	// interval, so that no reading of the store makes reads wait longer
	// than a fleet without a budget would; a time in the past (a clock
	// behind ours) as a moment from now, so that nobody spins.
	limit := start.Add(interval)
	if next.IsZero() || next.After(limit) {
		next = limit
	}
	if held.IsZero() || held.After(next) {
		held = minTime(start.Add(hold), next)
	}
	next = later(next, held, start.Add(poll/40))
	sc.until, sc.ours, sc.looks = next, won, 0
	sc.claimed = later(held.Add(-hold), start.Add(-hold))
	sc.due = sc.claimed.Add(sc.pubDelay)
	if !won {
		if start.Before(sc.due) {
			return false, minTime(sc.due, sc.until)
		}
		return false, sc.until
	}
	if next.After(held.Add(poll / 40)) {
		sc.spaced++
	} else {
		sc.spaced = 0
	}
	if linger > 0 {
		t := time.NewTimer(linger)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, time.Time{}
		}
	}
	rt.queryShared(ctx, r)
	rt.saveShared(ctx, r, start)
	d := time.Since(start) - linger
	sc.pubDelay = min(max(sc.pubDelay+(d-sc.pubDelay)/4, poll/20), poll/2)
	return false, later(sc.until, time.Now())
}

// queryShared queries r for the fleet (see checkShared): with a dialect
// that has a server-side wait and a pending position, one statement that
// waits (at most a PollInterval) and then reads r's applied position; else
// a position poll.
func (rt *Router) queryShared(ctx context.Context, r *reader) {
	r.mu.Lock()
	target := r.pending
	r.mu.Unlock()
	var q string
	if !target.empty() && !rt.isWriter(r) && !r.wm.Load().covers(target) {
		q = waitThenRead(rt.dialect, target, rt.cfg.PollInterval)
	}
	if q == "" {
		rt.poll(ctx, r, false)
		return
	}
	start := time.Now()
	r.polls.Add(1)
	rt.monitorQueries.Add(1)
	qctx, cancel := context.WithTimeout(ctx, rt.cfg.MonitorTimeout)
	var res sql.NullInt64
	var s sql.NullString
	err := r.db.QueryRowContext(qctx, q).Scan(&res, &s)
	cancel()
	var p *position
	if err == nil {
		p, err = rt.dialect.parseReader(s.String)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if r.healthy.Swap(false) {
			rt.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: reader excluded: monitor query failed",
				slog.String("reader", r.spec.Name), slog.String("error", err.Error()))
		}
		rt.changed.broadcast()
		return
	}
	r.sample.record(p, start)
	rt.update(ctx, r, p, nil, time.Time{}, time.Time{}, start)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// later returns the latest of ts.
func later(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}
