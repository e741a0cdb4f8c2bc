package session

import (
	"sync"
	"sync/atomic"
	"time"
)

// recoveryMargin is added to an outage's duration to give the window after
// the local table is back in which sessions last written before its return
// are also read from the region that served during the outage: the time
// Global Tables need to deliver what was written there meanwhile.
const recoveryMargin = 10 * time.Second

// breaker tracks whether the local table is available. Closed, every call
// goes to the local table. The first call that finds it unavailable (after
// the SDK's retries) opens it: calls then go to the fallback region's
// table, except that once per probe interval one call tries the local table
// again (a probe), and its success closes the breaker. It starts no
// goroutine: probes ride on requests.
type breaker struct {
	interval time.Duration
	open     atomic.Bool // the fast path reads only this

	// closedMS and untilMS (epoch ms) are when the breaker last closed
	// after an outage and the end of the recovery window that followed.
	closedMS, untilMS atomic.Int64

	mu        sync.Mutex // protects the fields below
	openedAt  time.Time
	nextProbe time.Time
	probing   bool
}

// route says whether a call should go to the local table, and whether that
// call is a probe (whose outcome must be reported with success or failure).
func (b *breaker) route(now time.Time) (local, probe bool) {
	if !b.open.Load() {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return true, false
	}
	if b.probing || now.Before(b.nextProbe) {
		return false, false
	}
	b.probing = true
	return true, true
}

// success records a call to the local table that worked: it closes the
// breaker. It reports whether this call closed it.
func (b *breaker) success(now time.Time) bool {
	if !b.open.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return false
	}
	b.closedMS.Store(now.UnixMilli())
	b.untilMS.Store(now.Add(now.Sub(b.openedAt) + recoveryMargin).UnixMilli())
	b.open.Store(false)
	b.probing = false
	return true
}

// failure records that the local table was unavailable. It reports whether
// this call opened the breaker.
func (b *breaker) failure(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	b.nextProbe = now.Add(b.interval)
	if b.open.Load() {
		return false
	}
	b.openedAt = now
	b.open.Store(true)
	return true
}

// release ends a probe whose outcome said nothing about availability (the
// request was cancelled, or the call was rejected as invalid).
func (b *breaker) release() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// isOpen reports whether calls currently go to the fallback region.
func (b *breaker) isOpen() bool { return b.open.Load() }

// recovering reports whether a local copy written at writtenMS (epoch ms)
// may be older than what the fallback region received during the last
// outage: now is inside the recovery window (the outage's duration plus
// [recoveryMargin] after the breaker closed) and the copy was written
// before the breaker closed.
func (b *breaker) recovering(now time.Time, writtenMS int64) bool {
	return now.UnixMilli() < b.untilMS.Load() && writtenMS <= b.closedMS.Load()
}
