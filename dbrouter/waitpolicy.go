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

// observeWriterRTT records d, the duration of a writer position query that
// started at start. The first sample may include the dial of the
// connection (several round trips): it is followed by a second query on the
// then warm connection, so the estimate starts from a real round trip.
func (rt *Router) observeWriterRTT(ctx context.Context, d time.Duration) {
	first := rt.writerRTT.get() == 0
	rt.writerRTT.observe(d)
	if !first {
		return
	}
	start := time.Now()
	if _, err := rt.queryPosition(ctx, rt.wdb(), rt.dialect.writerQuery(), rt.dialect.parseWriter); err == nil {
		rt.writerRTT.observe(time.Since(start))
	}
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
// oldest remembered write that covers it (0: none does).
func (c *writeClock) age(need *position, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var age time.Duration
	for _, w := range c.ring {
		if w.pos != nil && w.pos.covers(need) {
			age = max(age, now.Sub(w.at))
		}
	}
	return age
}

// readWaitBudget returns how long a read that needs need may wait for
// reader r before it goes elsewhere; 0 means: go elsewhere now.
//
// Without a measured writer round trip yet, or with a writer at most two
// polls away (unless Config.PreferWriter: the readers, then those of other
// regions, come before the writer), it is the lag heuristic: r's recent
// lag plus a quarter and two polls, at most MaxWait. Otherwise a read
// elsewhere costs the writer's round trip, and r is worth waiting for only
// while its expected catch-up plus its own round trip costs less:
//   - r known to be behind for longer than that (stalled, or far behind:
//     its lag keeps growing) gets 0;
//   - r expected to catch up in time (its recent lag, minus how old need is
//     known to be, from this router's writes and the writer's position
//     reads) gets that catch-up plus a quarter and two polls, if that fits
//     in the difference of the round trips;
//   - r expected to be too slow but not known to be behind (need may be
//     older than it looks), or expected to have need already although it
//     is not known to (it may be stalled), gets a probe: two of its round
//     trips and a poll, at most a quarter of the difference.
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
		return min(recent*5/4+2*cfg.PollInterval, cfg.MaxWait)
	}
	now := time.Now()
	in := waitInputs{recentLag: recent, readerRTT: r.rtt.get(), writerRTT: wrtt, poll: cfg.PollInterval, maxWait: cfg.MaxWait, preferWriter: cfg.PreferWriter}
	if behind, age, _ := r.unmet(now); behind {
		in.behindFor = age
	}
	// The writer had need when a position read found it at or past need,
	// or when a write of this router returned a position at or past it:
	// need is at least that old.
	in.needAge = rt.writes.age(need, now)
	rt.wsample.mu.Lock()
	if last := rt.wsample.last; last != nil && last.pos.covers(need) {
		in.needAge = max(in.needAge, now.Sub(last.at))
	}
	rt.wsample.mu.Unlock()
	return waitBudget(in)
}

// waitInputs are what the wait-or-go policy knows about one reader.
type waitInputs struct {
	recentLag time.Duration // the reader's smoothed lag
	behindFor time.Duration // how long it has lacked a position it is known to lack (0: none)
	needAge   time.Duration // how old the needed position is known to be, at least (0: unknown)
	readerRTT time.Duration // round trip to the reader (0: not measured)
	writerRTT time.Duration // round trip to the writer
	poll      time.Duration // Config.PollInterval
	maxWait   time.Duration // Config.MaxWait
	// preferWriter is Config.PreferWriter.
	preferWriter bool
}

// waitBudget is readWaitBudget's policy once the writer's round trip is
// known.
func waitBudget(in waitInputs) time.Duration {
	if !in.preferWriter && in.writerRTT <= 2*in.poll {
		// A writer this near costs no latency worth saving, and the
		// readers (then those of other regions) come before it.
		return min(in.recentLag*5/4+2*in.poll, in.maxWait)
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
