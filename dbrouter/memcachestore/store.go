// Package memcachestore shares dbrouter's replica watermarks across a fleet
// through memcached: it implements [dbrouter.WatermarkStore] on a
// [github.com/bradfitz/gomemcache/memcache.Client].
//
// With a shared store, the processes of a fleet take turns querying each
// reader's replication position: the one that wins a reader's claim queries
// it and publishes the result, the others read that result from memcached.
// The queries a reader receives then follow the fleet's demand, not the
// number of processes.
//
// Claims must expire on the scale of the router's waits (a PollInterval,
// tens of milliseconds), but memcached expires items in whole seconds. A
// claim therefore stores its own deadline (Unix nanoseconds): a claim whose
// deadline has passed is taken over with a compare-and-swap, so exactly one
// of the processes racing for an expired claim wins it. Deadlines compare
// clocks of different hosts, so clock skew between hosts shortens or
// lengthens claims by that skew; with NTP (milliseconds) that is harmless.
//
// A claim of a read that waits is a budgeted claim ([Store.ClaimBudget],
// [dbrouter.ClaimBudgeter]): it holds the key only while the winner's
// query runs (a few milliseconds), and the key also keeps a budget (the
// generic cell rate algorithm: a theoretical arrival time, TAT), so that
// after a hold the next claim may win at once, up to 3 in a row, and then
// one per PollInterval: reads that need a position newer than the
// holder's get the next query without waiting for a whole PollInterval,
// and a reader still gets at most one query per PollInterval on average
// from the fleet. Its item is "b1 <hold end> <TAT>" (Unix nanoseconds),
// read with gets and written with cas (or add).
//
// Everything read from memcached is untrusted: dbrouter validates the
// shared values it reads, and a corrupt claim is taken over as expired.
//
// If memcached fails (down, slow, full), the Store fails fast for a short
// back-off period, and the router falls back to querying the readers
// itself: a store outage never makes reads wait. Give the client a short
// Timeout (tens of milliseconds): a claim is on the path of reads that wait.
//
// # Redis
//
// Redis expires keys in milliseconds, so a Redis store needs no deadline
// takeover; with a client such as github.com/redis/go-redis/v9 (key and
// values as the router passes them, ttl in milliseconds, rounded up):
//
//	Get(key)             GET key                  a nil reply is "" (no value), not an error
//	Set(key, v, ttl)     SET key v PX ttl
//	ClaimUntil(key, ttl) EVAL claimScript 1 key <now+ttl as Unix ns> ttl
//	Claim(key, ttl)      ClaimUntil without the time
//	ClaimBudget(key, hold, interval, burst)
//	                     EVAL budgetScript 1 key <now> hold interval burst
//	                     (times in Unix microseconds, durations in
//	                     microseconds: Lua numbers are doubles, exact to
//	                     2^53, which Unix nanoseconds exceed)
//
// where claimScript takes the claim atomically, returns {1, ttl} when the
// caller won and {0, the holder's remaining ms} when it lost (until is then
// now plus that), and takes over a key without expiry or with a longer one
// (planted: no claim of this ttl writes it), so that it cannot stop the
// fleet's polls:
//
//	if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
//	  return {1, tonumber(ARGV[2])}
//	end
//	local left = redis.call('PTTL', KEYS[1])
//	if left < 0 or left > tonumber(ARGV[2]) then
//	  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
//	  return {1, tonumber(ARGV[2])}
//	end
//	return {0, left}
//
// (On Redis 7, SET key v NX PX ttl GET is the claim without the takeover in
// one command: a nil reply means won, a value is the holder's deadline.)
//
// budgetScript is the same algorithm as [Store.ClaimBudget], and returns
// {won, hold end, next claim} (the times as decimal strings of Unix
// microseconds); a value that is no claim of this hold, interval and
// burst (a planted one) is taken over:
//
//	local now, hold, iv, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
//	local slack, tat = (burst - 1) * iv, now
//	local v = redis.call('GET', KEYS[1])
//	if v then
//	  local h, t = string.match(v, '^b1 (%d+) (%d+)$')
//	  h, t = tonumber(h), tonumber(t)
//	  if h and t and h <= now + hold + 1e6 and t <= now + slack + iv + 1e6 then
//	    local nxt = math.max(h, t - slack)
//	    if now < nxt then
//	      return {0, string.format('%.0f', h), string.format('%.0f', nxt)}
//	    end
//	    tat = t
//	  end
//	end
//	tat = math.max(tat, now) + iv
//	local held = now + hold
//	redis.call('SET', KEYS[1], string.format('b1 %.0f %.0f', held, tat),
//	  'PX', math.ceil(math.max(tat - now, hold) / 1000) + 1000)
//	return {1, string.format('%.0f', held), string.format('%.0f', math.max(held, tat - slack))}
//
// (1e6 µs is the second of clock skew the memcached store allows too.)
//
// Implement ClaimUntil ([dbrouter.ClaimDeadliner]) and ClaimBudget
// ([dbrouter.ClaimBudgeter]) as well as Claim: with the holder's deadline,
// the processes that lost look for its result when it is due instead of
// one ttl after they asked, and with the budget a read that needs a
// position newer than the holder's gets the next query as soon as the
// holder's is published. A wrapper of a store (for metrics, say) must
// forward all three methods, or only Claim. As
// with memcached, a store error must be returned, never reported as a lost
// claim: the router then queries the readers itself.
package memcachestore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Client is the part of [*memcache.Client] the Store uses.
type Client interface {
	Get(key string) (*memcache.Item, error)
	Set(item *memcache.Item) error
	Add(item *memcache.Item) error
	CompareAndSwap(item *memcache.Item) error
}

// (Store implements dbrouter.WatermarkStore, ClaimDeadliner and
// ClaimBudgeter: store_test.go proves it, since dbrouter's own tests
// import this package.)
var _ Client = (*memcache.Client)(nil)

// DefaultBackoff is how long a Store fails fast after memcached failed.
const DefaultBackoff = time.Second

// Store implements dbrouter.WatermarkStore on memcached. It is safe for
// concurrent use and starts no goroutine.
type Store struct {
	c       Client
	backoff time.Duration
	now     func() time.Time

	mu       sync.Mutex // protects downTill
	downTill time.Time  // fail fast until then
}

// New returns a Store on c.
func New(c Client) *Store {
	return &Store{c: c, backoff: DefaultBackoff, now: time.Now}
}

// ErrUnavailable is matched by the errors a Store returns while it fails
// fast after memcached failed.
var ErrUnavailable = errors.New("memcachestore: memcached unavailable")

// Get returns the value stored under key, or "" if there is none.
func (s *Store) Get(_ context.Context, key string) (string, error) {
	if err := s.ready(); err != nil {
		return "", err
	}
	it, err := s.c.Get(key)
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		return "", nil
	case err != nil:
		return "", s.failed(err)
	}
	return string(it.Value), nil
}

// Set stores value under key for ttl (rounded up to whole seconds, as
// memcached keeps them).
func (s *Store) Set(_ context.Context, key, value string, ttl time.Duration) error {
	if err := s.ready(); err != nil {
		return err
	}
	if err := s.c.Set(&memcache.Item{Key: key, Value: []byte(value), Expiration: seconds(ttl)}); err != nil {
		return s.failed(err)
	}
	return nil
}

// Claim reports whether this caller won key for ttl: of all callers that
// claim key before the winner's ttl passes, exactly one gets true.
func (s *Store) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	won, _, err := s.ClaimUntil(ctx, key, ttl)
	return won, err
}

// ClaimUntil is [Store.Claim] that also returns when the claim holding key
// expires: the caller's if won, the holder's if lost (see
// [dbrouter.ClaimDeadliner]).
func (s *Store) ClaimUntil(_ context.Context, key string, ttl time.Duration) (bool, time.Time, error) {
	if err := s.ready(); err != nil {
		return false, time.Time{}, err
	}
	now := s.now()
	deadline := now.Add(ttl)
	claim := func() *memcache.Item {
		return &memcache.Item{Key: key, Value: strconv.AppendInt(nil, deadline.UnixNano(), 10),
			Expiration: seconds(ttl) + 1}
	}
	// The claim item outlives its deadline (memcached keeps it for
	// seconds), so it is read first: a live claim costs one round trip.
	for range 2 {
		it, err := s.c.Get(key)
		if errors.Is(err, memcache.ErrCacheMiss) {
			switch err := s.c.Add(claim()); {
			case err == nil:
				return true, deadline, nil
			case errors.Is(err, memcache.ErrNotStored):
				continue // added in between: read it
			default:
				return false, time.Time{}, s.failed(err)
			}
		}
		if err != nil {
			return false, time.Time{}, s.failed(err)
		}
		// Taken: won over only if the holder's deadline has passed. A
		// deadline further away than this ttl (plus a second of clock
		// skew) was not written by a claim of this key: it is taken over
		// like a corrupt one, so that a planted value cannot stop the
		// fleet's polls.
		d, err := strconv.ParseInt(string(it.Value), 10, 64)
		if err == nil && now.UnixNano() < d && d <= now.Add(ttl+time.Second).UnixNano() {
			return false, time.Unix(0, d), nil
		}
		next := claim()
		it.Value, it.Expiration = next.Value, next.Expiration
		switch err := s.c.CompareAndSwap(it); {
		case err == nil:
			return true, deadline, nil
		case errors.Is(err, memcache.ErrCASConflict):
			// Another caller took it over first, at about the same
			// time with about the same ttl.
			return false, deadline, nil
		case errors.Is(err, memcache.ErrNotStored):
			continue // expired in between: try again
		default:
			return false, time.Time{}, s.failed(err)
		}
	}
	return false, time.Time{}, nil
}

// ClaimBudget is a claim that holds key for hold and shares a budget of
// burst claims at once and one per interval (see
// [dbrouter.ClaimBudgeter]). The item holds "b1 <hold end> <TAT>" (Unix
// nanoseconds); a claim reads it and writes it back with a
// compare-and-swap (or adds it), so of the callers racing for it at most
// one wins. A value that no claim of this hold, interval and burst writes
// (times further than a claim taken now sets, plus a second of clock
// skew, or not a claim at all) is taken over; a deadline written by
// [Store.ClaimUntil] (an older process of the fleet) counts as a hold and
// a TAT.
func (s *Store) ClaimBudget(_ context.Context, key string, hold, interval time.Duration, burst int) (won bool, held, next time.Time, err error) {
	if err := s.ready(); err != nil {
		return false, time.Time{}, time.Time{}, err
	}
	burst = max(burst, 1)
	slack := time.Duration(burst-1) * interval
	now := s.now()
	item := func(held, tat time.Time) *memcache.Item {
		v := make([]byte, 0, 48)
		v = append(v, "b1 "...)
		v = strconv.AppendInt(v, held.UnixNano(), 10)
		v = append(v, ' ')
		v = strconv.AppendInt(v, tat.UnixNano(), 10)
		return &memcache.Item{Key: key, Value: v, Expiration: seconds(max(tat.Sub(now), hold)) + 1}
	}
	// When a claim that wins now holds the key, and may be followed.
	win := func(tat time.Time) (time.Time, time.Time, *memcache.Item) {
		tat = later(tat, now).Add(interval)
		h := now.Add(hold)
		return h, later(h, tat.Add(-slack)), item(h, tat)
	}
	for range 3 {
		it, err := s.c.Get(key)
		if errors.Is(err, memcache.ErrCacheMiss) {
			h, n, add := win(now)
			switch err := s.c.Add(add); {
			case err == nil:
				return true, h, n, nil
			case errors.Is(err, memcache.ErrNotStored):
				continue // added in between: read it
			default:
				return false, time.Time{}, time.Time{}, s.failed(err)
			}
		}
		if err != nil {
			return false, time.Time{}, time.Time{}, s.failed(err)
		}
		tat := now // a value that is no claim: taken over
		if h, t, ok := parseBudget(it.Value); ok &&
			!h.After(now.Add(hold+time.Second)) && !t.After(now.Add(slack+interval+time.Second)) {
			if n := later(h, t.Add(-slack)); now.Before(n) {
				return false, h, n, nil
			}
			tat = t
		}
		h, n, next := win(tat)
		it.Value, it.Expiration = next.Value, next.Expiration
		switch err := s.c.CompareAndSwap(it); {
		case err == nil:
			return true, h, n, nil
		case errors.Is(err, memcache.ErrCASConflict):
			// Another caller won it first, at about the same time
			// with about the same hold: not read again (a fleet
			// racing for a claim would pay a third round trip each).
			return false, now.Add(hold), now.Add(hold), nil
		case errors.Is(err, memcache.ErrNotStored):
			continue // expired in between: read it again
		default:
			return false, time.Time{}, time.Time{}, s.failed(err)
		}
	}
	// Raced three times: others are claiming; the winner's hold is about
	// one hold from now.
	return false, now.Add(hold), now.Add(hold), nil
}

// parseBudget parses a claim item of ClaimBudget ("b1 <hold end> <TAT>")
// or of ClaimUntil ("<deadline>", which is both).
func parseBudget(v []byte) (held, tat time.Time, ok bool) {
	f := strings.Fields(string(v))
	switch {
	case len(f) == 1:
		d, err := strconv.ParseInt(f[0], 10, 64)
		return time.Unix(0, d), time.Unix(0, d), err == nil
	case len(f) == 3 && f[0] == "b1":
		h, err1 := strconv.ParseInt(f[1], 10, 64)
		t, err2 := strconv.ParseInt(f[2], 10, 64)
		return time.Unix(0, h), time.Unix(0, t), err1 == nil && err2 == nil
	}
	return time.Time{}, time.Time{}, false
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ready returns ErrUnavailable while the store backs off.
func (s *Store) ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.now().Before(s.downTill) {
		return ErrUnavailable
	}
	return nil
}

// failed starts a back-off period and returns err marked as ErrUnavailable.
func (s *Store) failed(err error) error {
	s.mu.Lock()
	s.downTill = s.now().Add(s.backoff)
	s.mu.Unlock()
	return errors.Join(ErrUnavailable, err)
}

// seconds converts ttl to memcached's whole seconds, rounding up.
func seconds(ttl time.Duration) int32 {
	return int32((ttl + time.Second - 1) / time.Second)
}
