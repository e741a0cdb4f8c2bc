package dbrouter

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// WatermarkStore shares what the monitors learn about readers between the
// processes of a fleet, so that one query to a reader serves every process
// (see the package documentation for the arithmetic). A memcached or Redis
// client is a natural implementation; the router never stores secrets in
// it. Implementations must be safe for concurrent use.
type WatermarkStore interface {
	// Get returns the value last stored under key, or "" if there is none
	// (or it expired). err is for failures of the store only.
	Get(ctx context.Context, key string) (string, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key, value string, ttl time.Duration) error
	// Claim atomically creates key for ttl and reports whether it did: of
	// all the callers that claim the same key while it exists, exactly one
	// gets true (memcached "add", Redis "SET NX PX").
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// watermarkPrefix starts every key the router uses in a WatermarkStore;
// the reader's [Endpoint.Name] follows, so names must be the same in every
// process of the fleet.
const watermarkPrefix = "regiondb/dbrouter/"

// The shared value: "v1 <position text> <lag ns> <fresh-as-of unix ns>
// <healthy 0|1> <checked-at unix ns>".
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
func (rt *Router) loadShared(ctx context.Context, r *reader, check bool) bool {
	v, err := rt.cfg.Watermarks.Get(ctx, watermarkPrefix+r.spec.Name)
	if err != nil || v == "" {
		return false
	}
	st, ok := parseShared(v, rt.dialect.kind())
	if !ok {
		rt.stats.positionsRejected.Add(1)
		return false
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
	settled := false
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
		return age < rt.cfg.MonitorInterval && r.wantFreshNow() == 0
	}
	return settled
}

func (r *reader) wantFreshNow() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wantFresh
}

// saveShared publishes r's state after this process queried it.
func (rt *Router) saveShared(ctx context.Context, r *reader) {
	v := formatShared(r.wm.Load(), r.lagNanos.Load(), r.freshAsOf.Load(), r.healthy.Load(), time.Now())
	rt.cfg.Watermarks.Set(ctx, watermarkPrefix+r.spec.Name, v, 2*rt.cfg.MonitorInterval)
}
