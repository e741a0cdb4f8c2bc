package cache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
)

// Loader loads the value of a key from the source of truth. It returns
// [ErrNotFound] (possibly wrapped) when the record does not exist. ctx
// carries the caller's values and, after an invalidation, the read
// requirement of [Consistency.RequirePosition]: the loader must pass it to
// its database reads.
type Loader func(ctx context.Context) ([]byte, error)

// itemOverhead bounds memcached's per-item header (plus CAS and suffix).
const itemOverhead = 64

// Cache is a read-through memcached cache that is safe against stampedes,
// refuses stale refills, fans invalidations out to every region and treats
// memcached faults as misses.
//
// A Cache is safe for concurrent use by multiple goroutines. It runs one
// background goroutine per region (the local one and each of
// [Config.Remotes]) that retries failed invalidations; [Cache.Close] stops
// them after a last attempt. The memcached clients belong to the caller.
type Cache struct {
	cfg  Config
	mc   *memcache.Client
	cons Consistency
	tel  *telemetry
	log  *slog.Logger
	br   breaker

	flight singleflight.Group

	closed atomic.Bool
	// mu protects the transition to closed against Invalidate's sends to the
	// workers' queues: senders hold it for reading.
	mu        sync.RWMutex
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	local     *worker
	remotes   []*worker
	closeOnce sync.Once
}

// New returns a Cache over the memcached clients of cfg, which the caller
// owns and closes after [Cache.Close]. New does not dial: the first call
// does. It returns a *ConfigError for an invalid Config.
//
// New starts the invalidation workers; call Close when done.
func New(cfg Config) (*Cache, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, mc: cfg.Client, cons: cfg.Consistency, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.tel = newTelemetry(&c.cfg)
	c.br.threshold = int32(min(cfg.BreakerThreshold, 1<<30))
	c.br.cooldown = cfg.BreakerCooldown
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.local = c.newWorker(cfg.Region, cfg.Client)
	for _, r := range cfg.Remotes {
		c.remotes = append(c.remotes, c.newWorker(r.Name, r.Client))
	}
	for _, w := range append([]*worker{c.local}, c.remotes...) {
		c.wg.Add(1)
		go w.run(ctx)
	}
	return c, nil
}

// Close stops the invalidation workers after one last attempt at each
// queued or pending invalidation, and waits for them. It does not close the
// memcached clients. Close is idempotent; afterwards every method returns
// [ErrClosed].
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed.Store(true)
		c.mu.Unlock()
		c.cancel()
		c.wg.Wait()
	})
	return nil
}

// Get returns the value of key from memcached, or loads it with load and
// fills memcached.
//
// Concurrent misses of a key run load once per process (the other callers
// share its result) and, through a lease stored in memcached, about once
// across processes: other processes wait up to [Config.LeaseWait] for the
// fill, or get the previous value if it expired less than
// [Config.StaleTTL] ago. After [Cache.Invalidate], the fill is stored only
// if load ran under the invalidation's position (see [Consistency]);
// otherwise the loaded value is returned without being cached.
//
// Memcached faults are never returned: Get then runs load and returns its
// result. The errors Get returns are load's own, ctx's, [ErrClosed],
// [ErrNilLoader], a *[KeyError], or [ErrNotFound] from a cached absence.
// The returned slice must not be modified.
//
// ctx bounds the load this call runs; a Get that joined another caller's
// load in the same process waits for that load (which the other caller's
// ctx bounds), and loads again itself if that ctx ended.
func (c *Cache) Get(ctx context.Context, key string, load Loader) ([]byte, error) {
	if load == nil {
		return nil, ErrNilLoader
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mk, err := storageKey(key, c.cfg.HashKeys)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var span trace.Span
	// A hit makes a span only inside a recording span: untraced hits cost nothing.
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx, span = c.tel.startSpan(ctx, "cache.get")
	}
	if !c.br.allow() {
		if span == nil {
			ctx, span = c.tel.startSpan(ctx, "cache.get", trace.WithTimestamp(start))
		}
		c.tel.misses.Add(ctx, 1, c.tel.base...)
		c.tel.skip(ctx, reasonBreakerOpen)
		v, err := c.loadUncached(ctx, load, "")
		endSpan(span, err)
		return v, err
	}
	it, err := c.mc.Get(mk)
	switch {
	case err == nil:
		c.ok(ctx)
		if v, err, ok := c.fresh(ctx, it, start); ok {
			endSpan(span, err)
			return v, err
		}
	case errors.Is(err, memcache.ErrCacheMiss):
		c.ok(ctx)
		it = nil
	default:
		if span == nil {
			ctx, span = c.tel.startSpan(ctx, "cache.get", trace.WithTimestamp(start))
		}
		c.fault(ctx, err)
		c.tel.misses.Add(ctx, 1, c.tel.base...)
		c.tel.skip(ctx, reasonFault)
		v, err := c.loadUncached(ctx, load, "")
		endSpan(span, err)
		return v, err
	}
	if span == nil {
		ctx, span = c.tel.startSpan(ctx, "cache.get", trace.WithTimestamp(start))
	}
	v, err := c.slow(ctx, mk, it, load)
	endSpan(span, err)
	return v, err
}

// fresh answers a Get from it if it holds a fresh value or absence.
func (c *Cache) fresh(ctx context.Context, it *memcache.Item, now time.Time) ([]byte, error, bool) {
	e, err := decodeItem(it.Flags, it.Value)
	if err != nil || now.UnixMilli() >= e.deadline {
		return nil, nil, false
	}
	switch e.kind {
	case kindValue:
		c.tel.hits.Add(ctx, 1, c.tel.hitFresh...)
		return e.payload, nil, true
	case kindNegative:
		c.tel.hits.Add(ctx, 1, c.tel.hitNegative...)
		return nil, ErrNotFound, true
	}
	return nil, nil, false
}

// slow resolves a Get that memcached did not answer with a fresh value,
// once per key and process at a time.
func (c *Cache) slow(ctx context.Context, mk string, it *memcache.Item, load Loader) ([]byte, error) {
	fetched := true
	for attempt := 0; ; attempt++ {
		v, err, shared := c.flight.Do(mk, func() (any, error) {
			var r flightResult
			var err error
			r.value, err = c.resolve(ctx, mk, it, fetched, load, &r.invalidated)
			return r, err
		})
		r, _ := v.(flightResult)
		if shared && attempt < 3 && ctx.Err() == nil {
			// The leader's context ended, not ours, or an invalidation refused
			// the leader's fill: we may have joined its load after the
			// invalidation, so its value may be older than the write. Load again.
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || r.invalidated {
				fetched = false
				continue
			}
		}
		b := r.value
		if shared && b != nil {
			b = bytes.Clone(b)
		}
		return b, err
	}
}

// flightResult is what a Get's load shares with concurrent Gets of its key.
type flightResult struct {
	value []byte
	// invalidated: an invalidation refused the fill, so value may predate a
	// write that some of the sharing callers must observe.
	invalidated bool
}

// resolve runs the lease protocol: it returns a value another caller filled,
// a stale value while another caller reloads, or takes the lease and loads.
// it is the item as last read (nil for a miss) when fetched is true.
func (c *Cache) resolve(ctx context.Context, mk string, it *memcache.Item, fetched bool, load Loader, invalidated *bool) ([]byte, error) {
	waitUntil := time.Now().Add(c.cfg.LeaseWait)
	backoff := 2 * time.Millisecond
	counted, waited := false, false
	miss := func() { // once per resolution that does not end in a hit
		if !counted {
			counted = true
			c.tel.misses.Add(ctx, 1, c.tel.base...)
		}
	}
	for spins := 0; ; spins++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if spins > 32 { // the item keeps changing under us (churn, eviction): give up on it
			miss()
			c.tel.skip(ctx, reasonContended)
			return c.loadUncached(ctx, load, "")
		}
		if !fetched {
			if !c.br.allow() {
				miss()
				c.tel.skip(ctx, reasonBreakerOpen)
				return c.loadUncached(ctx, load, "")
			}
			var err error
			it, err = c.mc.Get(mk)
			switch {
			case err == nil:
				c.ok(ctx)
			case errors.Is(err, memcache.ErrCacheMiss):
				c.ok(ctx)
				it = nil
			default:
				miss()
				c.fault(ctx, err)
				c.tel.skip(ctx, reasonFault)
				return c.loadUncached(ctx, load, "")
			}
		}
		fetched = false
		now := time.Now()
		if it == nil {
			miss()
			tok := newToken()
			f, b := encodeLease(now.Add(c.cfg.LeaseTTL).UnixMilli(), tok, "", nil, false)
			err := c.mc.Add(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: expiry(c.cfg.LeaseTTL)})
			switch {
			case err == nil:
				return c.loadAndFill(ctx, mk, load, lease{token: tok}, invalidated)
			case errors.Is(err, memcache.ErrNotStored):
				continue // someone else won: look again
			default:
				c.fault(ctx, err)
				c.tel.skip(ctx, reasonFault)
				return c.loadUncached(ctx, load, "")
			}
		}
		e, derr := decodeItem(it.Flags, it.Value)
		if derr != nil {
			c.tel.fault(ctx, errKindCorrupt)
			e = entry{}
		}
		var next lease
		switch e.kind {
		case kindValue, kindNegative:
			if now.UnixMilli() < e.deadline {
				if e.kind == kindNegative {
					c.tel.hits.Add(ctx, 1, c.tel.hitNegative...)
					return nil, ErrNotFound
				}
				c.tel.hits.Add(ctx, 1, c.tel.hitFresh...)
				return e.payload, nil
			}
			next = lease{stale: e.payload, hasStale: e.kind == kindValue && c.cfg.StaleTTL > 0}
		case kindLease:
			if now.UnixMilli() >= e.deadline {
				next = lease{pos: e.pos, stale: e.payload, hasStale: e.hasStale} // take over an expired or released lease
				break
			}
			if e.hasStale {
				c.tel.hits.Add(ctx, 1, c.tel.hitStale...)
				return e.payload, nil
			}
			if !waited {
				waited = true
				c.tel.leaseWaits.Add(ctx, 1, c.tel.base...)
			}
			if now.After(waitUntil) {
				miss()
				c.tel.skip(ctx, reasonLeaseWait)
				return c.loadUncached(ctx, load, e.pos)
			}
			if err := sleep(ctx, min(backoff, time.Until(waitUntil)+time.Millisecond)); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, 50*time.Millisecond)
			spins = 0
			continue
		case kindMarker:
			next = lease{pos: e.pos}
		default: // corrupt: overwrite
		}
		miss()
		next.token = newToken()
		f, b := encodeLease(now.Add(c.cfg.LeaseTTL).UnixMilli(), next.token, next.pos, next.stale, next.hasStale)
		err := c.mc.CompareAndSwap(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: c.leaseExpiry(next), CasID: it.CasID})
		switch {
		case err == nil:
			return c.loadAndFill(ctx, mk, load, next, invalidated)
		case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
			continue // changed under us: look again
		default:
			c.fault(ctx, err)
			c.tel.skip(ctx, reasonFault)
			return c.loadUncached(ctx, load, next.pos)
		}
	}
}

// lease is a lease this process holds.
type lease struct {
	token    uint64
	pos      string // position the fill must have observed ("" for none)
	stale    []byte // previous value, served to others meanwhile
	hasStale bool
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

// loadAndFill runs load under the lease l and stores its result if the lease
// is still held and the load observed l.pos.
func (c *Cache) loadAndFill(ctx context.Context, mk string, load Loader, l lease, invalidated *bool) ([]byte, error) {
	refuse := func(reason string) {
		*invalidated = true // callers sharing this load must not trust it
		c.tel.refuse(ctx, reason)
	}
	lctx, check := ctx, (func() bool)(nil)
	if l.pos != "" && c.cons != nil {
		lctx, check = c.cons.RequirePosition(ctx, l.pos)
	}
	c.tel.loads.Add(ctx, 1, c.tel.base...)
	v, err := load(lctx)
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
	now := time.Now()
	var (
		f   uint32
		b   []byte
		exp int32
	)
	if negative {
		f, b = encodeValue(now.Add(c.cfg.NegativeTTL).UnixMilli(), nil, true)
		exp = expiry(c.cfg.NegativeTTL)
	} else {
		if len(v)+valueHeader+len(mk)+itemOverhead > c.cfg.MaxItemSize {
			c.tel.skip(ctx, reasonTooLarge)
			c.release(ctx, mk, l)
			return v, nil
		}
		ttl := c.ttl()
		f, b = encodeValue(now.Add(ttl).UnixMilli(), v, false)
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
	f, b := encodeLease(0, 0, l.pos, l.stale, l.hasStale)
	if err := c.mc.CompareAndSwap(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: c.leaseExpiry(l), CasID: it.CasID}); err != nil {
		c.fault(ctx, err)
	}
}

// loadUncached runs load without touching memcached; pos, if known, is the
// position an invalidation requires.
func (c *Cache) loadUncached(ctx context.Context, load Loader, pos string) ([]byte, error) {
	if pos != "" && c.cons != nil {
		ctx, _ = c.cons.RequirePosition(ctx, pos)
	}
	c.tel.loads.Add(ctx, 1, c.tel.base...)
	return load(ctx)
}

// Invalidate makes every region's cache stop serving key's current value:
// it replaces the item with a marker holding the position of the writes
// made through ctx ([Consistency.WrittenPosition]), so that the next fill
// must observe them. Call it after the write commits, with the write's ctx.
//
// The local cluster is updated before Invalidate returns; the other regions'
// clusters through their workers, normally within one round trip to them.
// Failed updates are retried for [Config.InvalidationRetry]. Memcached
// faults are not returned (they are retried, logged if dropped, and
// counted); Invalidate returns ctx's error, [ErrClosed] or a *[KeyError].
//
// There is no Delete: a plain delete would let a reader that loaded before
// the write fill the old value back.
func (c *Cache) Invalidate(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	mk, err := storageKey(key, c.cfg.HashKeys)
	if err != nil {
		return err
	}
	pos := ""
	if c.cons != nil {
		pos = c.cons.WrittenPosition(ctx)
	}
	ctx, span := c.tel.tracer.Start(ctx, "cache.invalidate", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(c.tel.spanAttrs[0], c.tel.spanAttrs[2])
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return ErrClosed
	}
	// Gets from now on must not join a load that started before the write.
	c.flight.Forget(mk)
	iv := invalidation{key: mk, pos: pos}
	done := false
	if c.br.allow() {
		err := c.mark(c.mc, mk, pos)
		switch {
		case err == nil:
			c.ok(ctx)
			c.local.count(ctx, "ok")
			done = true
		case errors.Is(err, errContended):
			c.ok(ctx) // memcached answered; the worker retries
		default:
			c.fault(ctx, err)
		}
	}
	if !done {
		if err := c.local.enqueue(ctx, iv); err != nil {
			return err
		}
	}
	for _, w := range c.remotes {
		if err := w.enqueue(ctx, iv); err != nil {
			return err
		}
	}
	return nil
}

// errContended reports a marker that could not be written because the item
// kept changing; the worker retries it.
var errContended = errors.New("cache: item contended")

// mark writes an invalidation marker for mk with pos (merged with the
// position already recorded there) to cl.
func (c *Cache) mark(cl *memcache.Client, mk, pos string) error {
	exp := expiry(c.cfg.MarkerTTL)
	for range 8 {
		it, err := cl.Get(mk)
		if errors.Is(err, memcache.ErrCacheMiss) {
			f, b := encodeMarker(pos)
			err = cl.Add(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: exp})
			if err == nil || !errors.Is(err, memcache.ErrNotStored) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		merged := pos
		if e, derr := decodeItem(it.Flags, it.Value); derr == nil && (e.kind == kindMarker || e.kind == kindLease) {
			if c.cons != nil {
				merged = c.cons.MergePositions(e.pos, pos)
			} else if e.pos != "" {
				merged = e.pos
			}
		}
		f, b := encodeMarker(merged)
		err = cl.CompareAndSwap(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: exp, CasID: it.CasID})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
			continue
		default:
			return err
		}
	}
	return errContended
}

// ok records a round trip that reached memcached.
func (c *Cache) ok(ctx context.Context) {
	if c.br.success() {
		c.log.LogAttrs(ctx, slog.LevelInfo, "cache: memcached reachable again, breaker closed",
			slog.String("region", c.cfg.Region))
	}
}

// fault records a memcached fault.
func (c *Cache) fault(ctx context.Context, err error) {
	kind, transport, isFault := classify(err)
	if !isFault {
		return
	}
	c.tel.fault(ctx, kind)
	if transport && c.br.failure() {
		c.log.LogAttrs(ctx, slog.LevelWarn, "cache: memcached failing, breaker open: loading without the cache",
			slog.String("region", c.cfg.Region), slog.String("error.type", kind),
			slog.Duration("cooldown", c.cfg.BreakerCooldown), slog.String("error", err.Error()))
	}
}

// ttl returns TTL with jitter.
func (c *Cache) ttl() time.Duration {
	j := c.cfg.TTLJitter
	if j <= 0 {
		return c.cfg.TTL
	}
	return c.cfg.TTL - j + rand.N(2*j+1)
}

// expiry converts d to memcached's expiration: whole seconds, rounded up,
// at least 1, and an absolute time beyond memcached's 30-day limit.
func expiry(d time.Duration) int32 {
	const month = 30 * 24 * time.Hour
	if d > month {
		return int32(time.Now().Add(d).Unix())
	}
	return int32(max(1, (d+time.Second-1)/time.Second))
}

func newToken() uint64 {
	for {
		if t := rand.Uint64(); t != 0 {
			return t
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
