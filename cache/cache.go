package cache

import (
	"context"
	"crypto/hmac"
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
	cfg   Config
	mc    *memcache.Client
	cons  Consistency
	scope ReadScope        // cons's optional capability, or nil
	obs   PositionObserver // cons's optional capability, or nil
	tel   *telemetry
	log   *slog.Logger
	br    breaker

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
	c.scope, _ = c.cons.(ReadScope)
	c.obs, _ = c.cons.(PositionObserver)
	if c.cons != nil && len(cfg.ItemKeys) == 0 {
		c.log.LogAttrs(context.Background(), slog.LevelWarn,
			"cache: Config.ItemKeys is empty: positions read from memcached are checked for shape only, not authenticated",
			slog.String("region", cfg.Region))
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
// When Consistency implements [ReadScope] and ctx requires a writer
// position (its read-your-writes scope has writes the caller must see), a
// cached value that is not known to reflect that position is not returned:
// Get runs load itself with ctx (whose reads observe the position), returns
// its value, and stores it only if it is newer than the cached one. Such a
// caller never gets a value older than its scope's writes.
//
// Memcached faults are never returned: Get then runs load and returns its
// result. The errors Get returns are load's own, ctx's, [ErrClosed],
// [ErrNilLoader], [ErrLoaderPanic], a *[KeyError], or [ErrNotFound] from a
// cached absence. The returned slice must not be modified.
//
// ctx bounds the load this call runs; a Get that joined another caller's
// load in the same process waits for that load (which the other caller's
// ctx bounds), and loads again itself if that ctx ended. If load panics,
// the lease is released, Gets that joined the load get [ErrLoaderPanic],
// and the panic continues in the Get that ran load.
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
	need := ""
	if c.scope != nil {
		need = c.scope.RequiredPosition(ctx)
	}
	start := time.Now()
	var span trace.Span
	// A hit makes a span only inside a recording span: untraced hits cost nothing.
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx, span = c.tel.startSpan(ctx, "cache.get")
	}
	it, why := c.fetch(ctx, mk)
	if it != nil {
		if o := c.fresh(it, start, need); o.hit != hitNone {
			c.record(ctx, o)
			endSpan(span, o.err)
			return o.value, o.err
		}
	}
	if span == nil { // a Get that loads, or waits, always has its span
		ctx, span = c.tel.startSpan(ctx, "cache.get", trace.WithTimestamp(start))
	}
	var o outcome
	if why != "" {
		o = c.bypass(ctx, why, load, "")
	} else {
		o = c.slow(ctx, mk, it, load, need)
	}
	c.record(ctx, o)
	endSpan(span, o.err)
	return o.value, o.err
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
// position already recorded there, if authentic) to cl.
func (c *Cache) mark(cl *memcache.Client, mk, pos string) error {
	exp := expiry(c.cfg.MarkerTTL)
	for range 8 {
		it, err := cl.Get(mk)
		if errors.Is(err, memcache.ErrCacheMiss) {
			f, b := encodeMarker(pos, c.sign(mk, kindMarker, 0, 0, pos))
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
			if old, ok := c.itemPosition(mk, e); ok && old != "" {
				merged = c.merge(old, pos)
			}
		}
		f, b := encodeMarker(merged, c.sign(mk, kindMarker, 0, 0, merged))
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

// merge returns the least position at or after a and b.
func (c *Cache) merge(a, b string) string {
	if c.cons != nil {
		return c.cons.MergePositions(a, b)
	}
	if a != "" {
		return a
	}
	return b
}

// sign returns the MAC of a lease or marker for mk, or nil without
// [Config.ItemKeys].
func (c *Cache) sign(mk string, kind uint32, deadline int64, token uint64, pos string) []byte {
	if len(c.cfg.ItemKeys) == 0 {
		return nil
	}
	return itemMAC(c.cfg.ItemKeys[0], mk, kind, deadline, token, pos)
}

// authentic reports whether the lease or marker e, read under mk, was
// written by a holder of one of [Config.ItemKeys]. Without keys every item
// is taken as authentic (its position was shape-checked by decodeItem).
func (c *Cache) authentic(mk string, e entry) bool {
	if len(c.cfg.ItemKeys) == 0 {
		return true
	}
	if len(e.mac) != macLen {
		return false
	}
	pos := string(e.pos)
	for _, k := range c.cfg.ItemKeys {
		if hmac.Equal(e.mac, itemMAC(k, mk, e.kind, e.deadline, e.token, pos)) {
			return true
		}
	}
	return false
}

// itemPosition returns the position that the lease or marker e, read from
// memcached under mk, requires of the next fill: the only way a position
// read from memcached reaches [Consistency.RequirePosition]. ok is false
// (and the item must be treated as absent) if e is not authentic. The
// position has the shape validPosition checks.
func (c *Cache) itemPosition(mk string, e entry) (pos string, ok bool) {
	if !validPosition(e.pos) || !c.authentic(mk, e) {
		return "", false
	}
	return string(e.pos), true
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
