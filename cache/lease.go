package cache

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// This file holds the lease protocol: what a Get does when memcached did
// not answer it with a fresh value it may use. Get (cache.go) fetches the
// item, asks fresh, and otherwise calls slow, which shares one resolve per
// key and process; resolve returns one outcome, which Get records once.
// Loads run in loadAndFill (under a lease), scopedLoad (a hit too old for
// the caller's scope) or loadUncached (bypassing memcached).

// outcome is how the protocol answered one Get. [Cache.Get] records it
// once (hits, misses, skips); what happens on the way (loads, lease waits,
// refused fills, faults) is counted where it happens.
type outcome struct {
	value []byte
	err   error
	hit   hitKind // hitNone: memcached did not answer the Get
	// skip is why the Get loaded without memcached ("" if it did not).
	skip string
}

type hitKind uint8

const (
	hitNone hitKind = iota
	hitFresh
	hitStale
	hitNegative
)

// loaded is the outcome of a load that went through the protocol.
func loaded(v []byte, err error) outcome { return outcome{value: v, err: err} }

// record counts o.
func (c *Cache) record(ctx context.Context, o outcome) {
	switch o.hit {
	case hitFresh:
		c.tel.hits.Add(ctx, 1, c.tel.hitFresh...)
	case hitStale:
		c.tel.hits.Add(ctx, 1, c.tel.hitStale...)
	case hitNegative:
		c.tel.hits.Add(ctx, 1, c.tel.hitNegative...)
	default:
		c.tel.misses.Add(ctx, 1, c.tel.base...)
		if o.skip != "" {
			c.tel.skip(ctx, o.skip)
		}
	}
}

// bypass loads without memcached for the reason given; pos, if known, is
// the (authentic) position an invalidation requires.
func (c *Cache) bypass(ctx context.Context, reason string, load Loader, pos string) outcome {
	v, err := c.loadUncached(ctx, load, pos)
	return outcome{value: v, err: err, skip: reason}
}

// fetch reads mk from memcached unless the breaker is open. It returns the
// item (nil for a miss), or the reason to load without memcached.
func (c *Cache) fetch(ctx context.Context, mk string) (*memcache.Item, string) {
	if !c.br.allow() {
		return nil, reasonBreakerOpen
	}
	it, err := c.mc.Get(mk)
	switch {
	case err == nil:
		c.ok(ctx)
		return it, ""
	case errors.Is(err, memcache.ErrCacheMiss):
		c.ok(ctx)
		return nil, ""
	default:
		c.fault(ctx, err)
		return nil, reasonFault
	}
}

// fresh answers a Get from it if it holds a fresh value or absence that
// reflects need ("" for none); otherwise its hit is hitNone. It neither
// allocates nor counts (the hit path).
func (c *Cache) fresh(it *memcache.Item, now time.Time, need string) outcome {
	e, err := decodeItem(it.Flags, it.Value)
	if err != nil || now.UnixMilli() >= e.deadline || (e.kind != kindValue && e.kind != kindNegative) {
		return outcome{}
	}
	if need != "" && !c.scope.CoversPosition(string(e.pos), need) {
		return outcome{}
	}
	if e.kind == kindNegative {
		return outcome{err: ErrNotFound, hit: hitNegative}
	}
	return outcome{value: e.payload, hit: hitFresh}
}

// flightResult is what a Get's resolution shares with concurrent Gets of
// its key.
type flightResult struct {
	outcome
	// invalidated: an invalidation refused the fill, so value may predate a
	// write that some of the sharing callers must observe.
	invalidated bool
	// panicked: the loader panicked with panicValue.
	panicked   bool
	panicValue any
}

// slow resolves a Get that memcached did not answer with a fresh value it
// may use, once per key and process at a time. A caller whose ctx requires
// a position (need) resolves alone: another caller's load may not reflect
// it.
func (c *Cache) slow(ctx context.Context, mk string, it *memcache.Item, load Loader, need string) outcome {
	if need != "" {
		return c.resolve(ctx, mk, it, true, load, need, &flightResult{})
	}
	fetched := true
	for attempt := 0; ; attempt++ {
		ran := false // this caller's function ran the resolution (and the loader)
		v, _, shared := c.flight.Do(mk, func() (res any, _ error) {
			ran = true
			r := &flightResult{}
			defer func() {
				if p := recover(); p != nil {
					r.panicked, r.panicValue = true, p
					r.outcome = outcome{err: ErrLoaderPanic}
					res = r
				}
			}()
			r.outcome = c.resolve(ctx, mk, it, fetched, load, "", r)
			return r, nil
		})
		r := v.(*flightResult)
		if r.panicked && ran {
			panic(r.panicValue) // the lease is released; joined callers got ErrLoaderPanic
		}
		o := r.outcome
		if shared && attempt < 3 && ctx.Err() == nil && !r.panicked {
			// The leader's context ended, not ours, or an invalidation refused
			// the leader's fill: we may have joined its load after the
			// invalidation, so its value may be older than the write. Load again.
			if errors.Is(o.err, context.Canceled) || errors.Is(o.err, context.DeadlineExceeded) || r.invalidated {
				fetched = false
				continue
			}
		}
		if shared && o.value != nil {
			o.value = bytes.Clone(o.value)
		}
		return o
	}
}

// decode decodes the item it read under mk, counting what cannot be used:
// an item this package did not write, a malformed position, or a lease or
// marker that fails authentication. Those come back as an entry of no kind,
// which the protocol overwrites like a miss.
func (c *Cache) decode(ctx context.Context, mk string, it *memcache.Item) entry {
	e, err := decodeItem(it.Flags, it.Value)
	if err != nil {
		kind := errKindCorrupt
		if errors.Is(err, errBadPosition) {
			kind = errKindBadPosition
		}
		c.tel.fault(ctx, kind)
		return entry{}
	}
	if (e.kind == kindLease || e.kind == kindMarker) && !c.authentic(mk, e) {
		c.tel.fault(ctx, errKindForged)
		return entry{}
	}
	return e
}

// resolve runs the lease protocol: it returns a value another caller filled,
// a stale value while another caller reloads, or takes the lease and loads.
// it is the item as last read (nil for a miss) when fetched is true. need
// is the position the caller's ctx requires ("" for none).
func (c *Cache) resolve(ctx context.Context, mk string, it *memcache.Item, fetched bool, load Loader, need string, fr *flightResult) outcome {
	waitUntil := time.Now().Add(c.cfg.LeaseWait)
	backoff := 2 * time.Millisecond
	waited := false
	for spins := 0; ; spins++ {
		if err := ctx.Err(); err != nil {
			return outcome{err: err}
		}
		if spins > 32 { // the item keeps changing under us (churn, eviction): give up on it
			return c.bypass(ctx, reasonContended, load, "")
		}
		if !fetched {
			var why string
			if it, why = c.fetch(ctx, mk); why != "" {
				return c.bypass(ctx, why, load, "")
			}
		}
		fetched = false
		now := time.Now()
		if it == nil {
			l := lease{token: newToken(), deadline: now.Add(c.cfg.LeaseTTL).UnixMilli()}
			f, b := c.encodeLease(mk, l)
			err := c.mc.Add(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: expiry(c.cfg.LeaseTTL)})
			switch {
			case err == nil:
				return loaded(c.loadAndFill(ctx, mk, load, l, need, fr))
			case errors.Is(err, memcache.ErrNotStored):
				continue // someone else won: look again
			default:
				c.fault(ctx, err)
				return c.bypass(ctx, reasonFault, load, "")
			}
		}
		e := c.decode(ctx, mk, it)
		var next lease
		switch e.kind {
		case kindValue, kindNegative:
			if now.UnixMilli() < e.deadline {
				if need != "" && !c.scope.CoversPosition(string(e.pos), need) {
					return loaded(c.scopedLoad(ctx, mk, it, e, load, need))
				}
				if e.kind == kindNegative {
					return outcome{err: ErrNotFound, hit: hitNegative}
				}
				return outcome{value: e.payload, hit: hitFresh}
			}
			next = lease{stale: e.payload, hasStale: e.kind == kindValue && c.cfg.StaleTTL > 0}
		case kindLease:
			pos := string(e.pos) // authentic: decode checked it
			if now.UnixMilli() >= e.deadline {
				next = lease{pos: pos, stale: e.payload, hasStale: e.hasStale} // take over an expired or released lease
				break
			}
			if e.hasStale && need == "" {
				return outcome{value: e.payload, hit: hitStale}
			}
			if !waited {
				waited = true
				c.tel.leaseWaits.Add(ctx, 1, c.tel.base...)
			}
			if now.After(waitUntil) {
				return c.bypass(ctx, reasonLeaseWait, load, pos)
			}
			if err := sleep(ctx, min(backoff, time.Until(waitUntil)+time.Millisecond)); err != nil {
				return outcome{err: err}
			}
			backoff = min(2*backoff, 50*time.Millisecond)
			spins = 0
			continue
		case kindMarker:
			next = lease{pos: string(e.pos)}
		default: // corrupt, forged or foreign: overwrite
		}
		next.token = newToken()
		next.deadline = now.Add(c.cfg.LeaseTTL).UnixMilli()
		f, b := c.encodeLease(mk, next)
		err := c.mc.CompareAndSwap(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: c.leaseExpiry(next), CasID: it.CasID})
		switch {
		case err == nil:
			return loaded(c.loadAndFill(ctx, mk, load, next, need, fr))
		case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
			continue // changed under us: look again
		default:
			c.fault(ctx, err)
			return c.bypass(ctx, reasonFault, load, next.pos)
		}
	}
}

// lease is a lease this process holds.
type lease struct {
	token    uint64
	deadline int64  // unix ms
	pos      string // position the fill must have observed ("" for none)
	stale    []byte // previous value, served to others meanwhile
	hasStale bool
}

// encodeLease returns the signed stored form of l under mk.
func (c *Cache) encodeLease(mk string, l lease) (uint32, []byte) {
	return encodeLease(l.deadline, l.token, l.pos, c.sign(mk, kindLease, l.deadline, l.token, l.pos), l.stale, l.hasStale)
}

func (c *Cache) leaseExpiry(l lease) int32 {
	d := c.cfg.LeaseTTL
	if l.pos != "" {
		d = max(d, c.cfg.MarkerTTL) // the lease must not forget the marker's position
	}
	if l.hasStale {
		d = max(d, c.cfg.StaleTTL)
	}
	return expiry(d)
}

// observe returns ctx prepared to learn the position a load reflects, and
// the function that reports it after the load ("" if unknown).
func (c *Cache) observe(ctx context.Context) (context.Context, func() string) {
	if c.obs == nil {
		return ctx, noPosition
	}
	return c.obs.ObservePosition(ctx)
}

func noPosition() string { return "" }

// runLoad calls load; if it panics, it releases the lease l and panics on.
func (c *Cache) runLoad(ctx, lctx context.Context, mk string, l lease, load Loader) ([]byte, error) {
	defer func() {
		if p := recover(); p != nil {
			c.release(ctx, mk, l)
			panic(p)
		}
	}()
	return load(lctx)
}

// loadAndFill runs load under the lease l and stores its result if the lease
// is still held and the load observed l.pos and need.
func (c *Cache) loadAndFill(ctx context.Context, mk string, load Loader, l lease, need string, fr *flightResult) ([]byte, error) {
	refuse := func(reason string) {
		fr.invalidated = true // callers sharing this load must not trust it
		c.tel.refuse(ctx, reason)
	}
	req := l.pos
	if need != "" {
		req = c.merge(req, need)
	}
	lctx, check := ctx, (func() bool)(nil)
	if req != "" && c.cons != nil {
		lctx, check = c.cons.RequirePosition(ctx, req)
	}
	lctx, observed := c.observe(lctx)
	c.tel.loads.Add(ctx, 1, c.tel.base...)
	v, err := c.runLoad(ctx, lctx, mk, l, load)
	negative := err != nil && errors.Is(err, ErrNotFound) && c.cfg.NegativeTTL > 0
	if err != nil && !negative {
		c.release(ctx, mk, l)
		return nil, err
	}
	if check != nil && !check() {
		refuse(reasonUnverified)
		c.release(ctx, mk, l)
		return v, err
	}
	pos := observed()
	if check != nil {
		pos = c.merge(pos, req)
	}
	now := time.Now()
	var (
		f   uint32
		b   []byte
		exp int32
	)
	if negative {
		f, b = encodeValue(now.Add(c.cfg.NegativeTTL).UnixMilli(), pos, nil, true)
		exp = expiry(c.cfg.NegativeTTL)
	} else {
		if len(v)+valueHeader+len(pos)+len(mk)+itemOverhead > c.cfg.MaxItemSize {
			c.tel.skip(ctx, reasonTooLarge)
			c.release(ctx, mk, l)
			return v, nil
		}
		ttl := c.ttl()
		f, b = encodeValue(now.Add(ttl).UnixMilli(), pos, v, false)
		exp = expiry(ttl + c.cfg.StaleTTL)
	}
	// The lease must still be ours: an invalidation replaces it.
	it, gerr := c.mc.Get(mk)
	if gerr != nil {
		if errors.Is(gerr, memcache.ErrCacheMiss) {
			refuse(reasonLeaseLost)
		} else {
			c.fault(ctx, gerr)
			c.tel.skip(ctx, reasonFault)
		}
		return v, err
	}
	if e, derr := decodeItem(it.Flags, it.Value); derr != nil || e.kind != kindLease || e.token != l.token {
		if derr == nil && e.kind == kindMarker {
			refuse(reasonInvalidated)
		} else {
			refuse(reasonLeaseLost)
		}
		return v, err
	}
	cerr := c.mc.CompareAndSwap(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: exp, CasID: it.CasID})
	switch {
	case cerr == nil:
	case errors.Is(cerr, memcache.ErrCASConflict):
		refuse(reasonInvalidated)
	case errors.Is(cerr, memcache.ErrNotStored), errors.Is(cerr, memcache.ErrCacheMiss):
		refuse(reasonLeaseLost)
	default: // e.g. SERVER_ERROR object too large / out of memory
		c.fault(ctx, cerr)
		c.tel.skip(ctx, reasonFault)
		c.release(ctx, mk, l)
	}
	return v, err
}

// scopedLoad answers a caller whose ctx requires need, which the fresh
// value or absence e (read as it) is not known to reflect: it loads with
// ctx (whose reads observe need), returns the result, and replaces it only
// if the loaded value is known to be newer than e, and only if nothing
// changed it meanwhile (compare-and-swap).
func (c *Cache) scopedLoad(ctx context.Context, mk string, it *memcache.Item, e entry, load Loader, need string) ([]byte, error) {
	lctx, check := c.cons.RequirePosition(ctx, need)
	lctx, observed := c.observe(lctx)
	c.tel.loads.Add(ctx, 1, c.tel.base...)
	v, err := load(lctx)
	if err != nil {
		return v, err
	}
	if !check() {
		c.tel.refuse(ctx, reasonUnverified)
		return v, nil
	}
	pos := c.merge(observed(), need)
	if held := string(e.pos); held != "" && (!c.scope.CoversPosition(pos, held) || c.scope.CoversPosition(held, pos)) {
		return v, nil // not newer than what the cache holds
	}
	if len(v)+valueHeader+len(pos)+len(mk)+itemOverhead > c.cfg.MaxItemSize {
		c.tel.skip(ctx, reasonTooLarge)
		return v, nil
	}
	ttl := c.ttl()
	f, b := encodeValue(time.Now().Add(ttl).UnixMilli(), pos, v, false)
	cerr := c.mc.CompareAndSwap(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: expiry(ttl + c.cfg.StaleTTL), CasID: it.CasID})
	switch {
	case cerr == nil:
	case errors.Is(cerr, memcache.ErrCASConflict), errors.Is(cerr, memcache.ErrNotStored), errors.Is(cerr, memcache.ErrCacheMiss):
		c.tel.refuse(ctx, reasonInvalidated) // changed meanwhile (an invalidation or another fill)
	default:
		c.fault(ctx, cerr)
		c.tel.skip(ctx, reasonFault)
	}
	return v, nil
}

// release gives a lease up without a fill: it becomes an expired lease with
// the same position (and stale value), which the next caller takes over.
func (c *Cache) release(ctx context.Context, mk string, l lease) {
	it, err := c.mc.Get(mk)
	if err != nil {
		if !errors.Is(err, memcache.ErrCacheMiss) {
			c.fault(ctx, err)
		}
		return
	}
	if e, derr := decodeItem(it.Flags, it.Value); derr != nil || e.kind != kindLease || e.token != l.token {
		return
	}
	r := l
	r.token, r.deadline = 0, 0
	f, b := c.encodeLease(mk, r)
	if err := c.mc.CompareAndSwap(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: c.leaseExpiry(l), CasID: it.CasID}); err != nil {
		c.fault(ctx, err)
	}
}

// loadUncached runs load without touching memcached; pos, if known, is the
// (authentic) position an invalidation requires.
func (c *Cache) loadUncached(ctx context.Context, load Loader, pos string) ([]byte, error) {
	if pos != "" && c.cons != nil {
		ctx, _ = c.cons.RequirePosition(ctx, pos)
	}
	c.tel.loads.Add(ctx, 1, c.tel.base...)
	return load(ctx)
}
