package dbrouter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The wait-or-go policy: a read that needs a position a reader is not known
// to have either waits for that reader or goes elsewhere (another reader
// known to have it, else the writer). Waiting is worth it only while the
// reader is expected to catch up sooner than a read elsewhere would answer:
// the policy compares the reader's expected catch-up with the measured round
// trips to the reader and to the writer (docs/dbrouter.md, "Wait or go").

// rttEstimate is a round-trip estimate of one endpoint, from the monitor's
// position queries. It follows lower samples at once and higher ones by an
// eighth of the difference, so that a sample that included a connection's
// dial or a scheduling hiccup moves it little, while a path that really got
// slower is followed within a few samples. Zero means no sample yet. Safe
// for concurrent use.
type rttEstimate struct {
	ns atomic.Int64
}

func (e *rttEstimate) observe(d time.Duration) {
	d = max(d, time.Microsecond)
	for {
		old := e.ns.Load()
		n := int64(d)
		if old != 0 && n > old {
			n = old + (n-old)/8
		}
		if e.ns.CompareAndSwap(old, n) {
			return
		}
	}
}

func (e *rttEstimate) get() time.Duration { return time.Duration(e.ns.Load()) }

// observeWriterRTT records d, the duration of a writer position query. The
// first sample may include the dial of the connection (several round
// trips): it is followed by a second query on the then warm connection, so
// the estimate starts from a real round trip; observeWriterRTT then returns
// that query's position and start (ok), which the caller uses in place of
// the first's: the reader's lag measured from the first would include the
// dial too (a router's first lag estimate of a reader 600 ms, with a writer
// 150 ms away; issue 11).
func (rt *Router) observeWriterRTT(ctx context.Context, d time.Duration) (p *position, start time.Time, ok bool) {
	first := rt.writerRTT.get() == 0
	rt.writerRTT.observe(d)
	if !first {
		return nil, time.Time{}, false
	}
	start = time.Now()
	p, err := rt.queryPosition(ctx, rt.wdb(), rt.dialect.writerQuery(), rt.dialect.parseWriter)
	if err != nil {
		return nil, time.Time{}, false
	}
	rt.writerRTT.observe(time.Since(start))
	return p, start, true
}

// writeClock remembers when this router's latest writes returned their
// positions: a read that needs at most one of them needs a write at least
// that old. Safe for concurrent use.
type writeClock struct {
	mu   sync.Mutex // protects ring and next
	ring [16]struct {
		pos *position
		at  time.Time
	}
	next int
}

// noteWrite records that a write of this router committed p by now, and
// sets the post-write watch of the local readers not known to have p (see
// Router.monitor).
func (rt *Router) noteWrite(p *position) {
	if p.empty() {
		return
	}
	c := &rt.writes
	c.mu.Lock()
	c.ring[c.next].pos, c.ring[c.next].at = p, time.Now()
	c.next = (c.next + 1) % len(c.ring)
	c.mu.Unlock()
	if !rt.watchOn {
		return
	}
	set := rt.rset.Load()
	for _, r := range set.all[:set.nLocal] {
		if !rt.isWriter(r) && r.watchFor(p) {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	}
}

// age returns how old need is known to be at now, at least: the age of the
// oldest remembered write that covers it (0: none does); exact when one of
// them returned need itself: the writer did not have need before that
// write, so need is no older than that either.
func (c *writeClock) age(need *position, now time.Time) (age time.Duration, exact bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.ring {
		if w.pos != nil && w.pos.covers(need) {
			age = max(age, now.Sub(w.at))
			exact = exact || need.covers(w.pos)
		}
	}
	return age, exact
}

// readWaitBudget returns how long a read that needs need may wait for
// reader r before it goes elsewhere; 0 means: go elsewhere now.
//
// Without a measured writer round trip yet, or with a writer at most two
// polls away (unless Config.PreferWriter: the readers, then those of other
// regions, come before the writer), it is the lag heuristic (lagBudget),
// at most MaxWait. Otherwise a read
// elsewhere costs the writer's round trip, and r is worth waiting for only
// while its expected catch-up plus its own round trip costs less:
//   - r known to be behind for longer than that (stalled, or far behind:
//     its lag keeps growing) gets 0;
//   - r expected to catch up in time (its recent lag, minus how old need is
//     known to be, from this router's writes and the writer's position
//     reads) gets that catch-up plus a quarter and two polls, if that fits
//     in the difference of the round trips;
//   - r expected to be too slow gets 0 when need is no older than it looks
//     (a write of this router returned it), else (need may be older) a
//     probe: two of its round trips and a poll, at most a quarter of the
//     difference; so does r expected to have need already although it is
//     not known to (it may be stalled).
func (rt *Router) readWaitBudget(r *reader, need *position) time.Duration {
	cfg := &rt.cfg
	if cfg.MaxWait <= 0 || !r.usable(cfg.MaxLag) {
		return 0
	}
	if rt.has(r, need) {
		return cfg.MaxWait
	}
	recent := time.Duration(r.recentLag.Load())
	wrtt := rt.writerRTT.get()
	if wrtt == 0 {
		return min(lagBudget(recent, cfg.PollInterval), cfg.MaxWait)
	}
	now := time.Now()
	in := waitInputs{recentLag: recent, readerRTT: r.rtt.get(), writerRTT: wrtt, poll: cfg.PollInterval, maxWait: cfg.MaxWait, preferWriter: cfg.PreferWriter}
	if behind, age, _ := r.unmet(now); behind {
		in.behindFor = age
	}
	in.behindFor = max(in.behindFor, r.watchBehind(need, now))
	in.needAge, in.needAgeExact = rt.needAge(need, now)
	return waitBudget(in)
}

// needAge returns how old need is known to be at now, at least (0:
// unknown), counted as this router's writes count it, from when the
// writer's answer arrived. The writer had need when a position read found
// it at or past need (by the end of that read: its start plus the writer's
// round trip), or when a write of this router returned a position at or
// past it: need is at least that old. exact reports that need is no older
// either (see writeClock.age).
func (rt *Router) needAge(need *position, now time.Time) (age time.Duration, exact bool) {
	age, exact = rt.writes.age(need, now)
	rt.wsample.mu.Lock()
	if last := rt.wsample.last; last != nil && last.pos.covers(need) {
		age = max(age, now.Sub(last.at)-rt.writerRTT.get())
	}
	rt.wsample.mu.Unlock()
	return age, exact
}

// lagFromWrite reports whether the lags that guards and watches measure
// count from the write (the age of the position waited for, plus the
// wait), as the wait-or-go policy subtracts that age (see waitBudget);
// the lag heuristic (a writer at most two polls away, or no writer round
// trip measured yet) counts a reader's lag from the read, as the wait alone.
func (rt *Router) lagFromWrite() bool {
	w := rt.writerRTT.get()
	return w != 0 && (rt.cfg.PreferWriter || w > 2*rt.cfg.PollInterval)
}

// lagBudget is the lag heuristic: how long a read that needs a position
// waits for a reader whose smoothed lag is recent, when going elsewhere
// saves nothing worth the writer's load: 5/2 of the lag and four polls.
// The read waits in its guard, one server-side wait with no look at the
// reader in between, and a loaded reader's smoothed lag runs below the
// tail of its lags. Until MariaDB's guard evaluated its wait once (issue
// 11), a guard that timed out waited again, which hid half of that behind
// 5/4 and two polls; with 5/4 and two polls waited once, bench-fleet's 40
// routers (a saturated machine) saw 4 043 guard timeouts in 11 513 reads,
// each a second round trip to the reader, and 162 in 23 697 with this.
func lagBudget(recent, poll time.Duration) time.Duration {
	return recent*5/2 + 4*poll
}

// waitInputs are what the wait-or-go policy knows about one reader.
type waitInputs struct {
	recentLag time.Duration // the reader's smoothed lag
	behindFor time.Duration // how long it has lacked a position it is known to lack (0: none)
	needAge   time.Duration // how old the needed position is known to be, at least (0: unknown)
	// needAgeExact reports that the needed position is no older than
	// needAge either: a write of this router returned it.
	needAgeExact bool
	readerRTT    time.Duration // round trip to the reader (0: not measured)
	writerRTT    time.Duration // round trip to the writer
	poll         time.Duration // Config.PollInterval
	maxWait      time.Duration // Config.MaxWait
	// preferWriter is Config.PreferWriter.
	preferWriter bool
}

// waitBudget is readWaitBudget's policy once the writer's round trip is
// known.
func waitBudget(in waitInputs) time.Duration {
	if !in.preferWriter && in.writerRTT <= 2*in.poll {
		// A writer this near costs no latency worth saving, and the
		// readers (then those of other regions) come before it.
		return min(lagBudget(in.recentLag, in.poll), in.maxWait)
	}
	spare := max(in.writerRTT, 2*in.poll) - in.readerRTT
	if spare <= 0 || in.behindFor > spare {
		return 0
	}
	probe := min(2*in.readerRTT+in.poll, spare/4, in.maxWait)
	remaining := max(in.recentLag, in.behindFor) - in.needAge
	if wait := remaining*5/4 + 2*in.poll; remaining > 0 && wait <= spare {
		return max(probe, min(wait, in.maxWait))
	}
	if remaining > 0 && in.needAgeExact {
		// Expected too late, and need is no older than it looks: the
		// probe would only delay the read elsewhere (the grid's reads
		// that went to the writer paid its 21 ms: ratio 1.14).
		return 0
	}
	// Should have it already (or is stalled), or expected too late (but
	// need may be older than it looks): one look.
	return probe
}

// waitBound is waitAndPick's bound for r: the wait-or-go budget for a read
// that needs a position, the lag heuristic for a bounded-staleness read and
// while the writer is gone (there is nowhere else to go).
func (rt *Router) waitBound(r *reader, need *position, stale time.Duration) time.Duration {
	if _, gone := rt.search.gone(); stale > 0 || need.empty() || gone != nil {
		return time.Duration(r.recentLag.Load())*5/4 + 2*rt.cfg.PollInterval
	}
	return rt.readWaitBudget(r, need)
}
