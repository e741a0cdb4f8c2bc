package cache

import (
	"sync/atomic"
	"time"
)

// breaker stops calls to memcached after threshold consecutive transport
// faults, for cooldown; then it lets one call probe, and closes on its
// success. All fields are atomics: the closed-breaker path is two loads.
type breaker struct {
	threshold int32
	cooldown  time.Duration

	failures  atomic.Int32 // consecutive transport faults
	openUntil atomic.Int64 // unix ns until which calls are refused; 0 when closed
	probeAt   atomic.Int64 // unix ns when the half-open probe started; 0 if none
}

// allow reports whether a call may go to memcached now.
func (b *breaker) allow() bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	now := time.Now().UnixNano()
	if now < until {
		return false
	}
	// Half-open: one probe per cooldown (a probe whose outcome was never
	// recorded does not wedge the breaker).
	p := b.probeAt.Load()
	if p != 0 && now-p < int64(b.cooldown) {
		return false
	}
	return b.probeAt.CompareAndSwap(p, now)
}

// success records a call that reached memcached; it reports whether the
// breaker closed because of it.
func (b *breaker) success() (closed bool) {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
		b.probeAt.Store(0)
		return true
	}
	return false
}

// failure records a transport fault; it reports whether the breaker opened
// because of it.
func (b *breaker) failure() (opened bool) {
	n := b.failures.Add(1)
	wasOpen := b.openUntil.Load() != 0
	if n >= b.threshold || wasOpen {
		b.openUntil.Store(time.Now().Add(b.cooldown).UnixNano())
		b.probeAt.Store(0)
		return !wasOpen
	}
	return false
}

// open reports whether the breaker is open (or half-open).
func (b *breaker) open() bool { return b.openUntil.Load() != 0 }
