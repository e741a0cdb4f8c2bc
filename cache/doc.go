// Package cache is a read-through memcached cache, built on
// github.com/bradfitz/gomemcache, for services whose database has lagging
// replicas and whose regions each have their own memcached cluster. It
// guarantees three things plain cache-aside does not:
//
//   - no stampede: concurrent misses of a key load it about once, across
//     processes;
//   - no stale refill: a reader that loaded from a lagging replica cannot
//     write the old value back after the writer's invalidation;
//   - no outage: memcached being down, slow or full turns Gets into loader
//     calls, never into errors.
//
// # Quick start
//
//	mc := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
//	mc.Timeout = 100 * time.Millisecond // bounds every memcached call
//	c, err := cache.New(cache.Config{
//		Client:      mc,
//		Region:      "us-east-1",
//		Remotes:     []cache.Region{{Name: "ap-northeast-1", Client: tokyoMC}},
//		Consistency: router, // a *dbrouter.Router
//	})
//	if err != nil { ... }
//	defer c.Close()
//
//	// Read:
//	b, err := c.Get(ctx, "user:42", func(ctx context.Context) ([]byte, error) {
//		return loadUser(ctx, router, 42) // reads through ctx
//	})
//
//	// Write: commit through the router, then invalidate with the same ctx.
//	_, err = router.ExecContext(ctx, "UPDATE users SET name = ? WHERE id = ?", name, 42)
//	err = c.Invalidate(ctx, "user:42")
//
// [Typed] adds a type and a [Codec] (JSON by default):
//
//	users := cache.Typed[User]{Cache: c}
//	u, err := users.Get(ctx, "user:42", loadUserStruct)
//
// The memcached clients belong to the caller: [New] wraps them and does not
// dial; [Cache.Close] stops the cache's goroutines, not the clients.
//
// # How an item moves
//
// Every key holds one memcached item, whose kind is in the item's flags:
// a value (with its soft expiry), a cached absence (with [Config.NegativeTTL]),
// a lease (a loader is at work; it may carry the previous value), or an
// invalidation marker (carrying a writer position). Items written by other
// clients are treated as misses and replaced.
//
// A Get that finds a fresh value returns it: one memcached round trip, the
// same as a bare gomemcache Get, with no extra allocation. Otherwise:
//
//   - concurrent Gets of the key in the process share one resolution
//     (golang.org/x/sync/singleflight);
//   - a miss takes the lease with add; a marker, an expired value or an
//     expired lease is turned into a lease with compare-and-swap. Exactly one
//     caller wins; it runs the loader and fills with compare-and-swap
//     against its lease;
//   - losers serve the previous value if the lease carries one (the value
//     expired less than [Config.StaleTTL] ago), or poll for the fill for up
//     to [Config.LeaseWait], after which they load by themselves without
//     filling.
//
// # Consistency: no stale refill
//
// [Cache.Invalidate] replaces the item with a marker holding
// [Consistency.WrittenPosition] of its ctx, merged with any position already
// there. A lease holder's fill fails if a marker replaced its lease during
// the load, so a load that started before the write never lands. The lease
// that replaces a marker keeps the marker's position, the loader runs under
// [Consistency.RequirePosition], and the fill is stored only if the check
// reports that every read saw the position; otherwise the value is returned
// to the caller and not cached (counted as regiondb.cache.fills.refused).
// Callers that shared a load whose fill was refused load again, so no Get
// that starts after Invalidate returns gets a value older than the write.
//
// The guarantee holds while the marker lives: [Config.MarkerTTL] must exceed
// the longest replica lag (the dbrouter excludes replicas lagging more).
// Without a Consistency, markers still stop in-flight stale fills, but the
// first fill after an invalidation is trusted.
//
// # Read-your-writes hits
//
// A value remembers the writer position it is known to reflect: the
// position its load observed ([PositionObserver]) and, after an
// invalidation, the position the fill was verified against. When the
// Consistency implements [ReadScope], a Get whose ctx requires a position
// (the caller's own writes, here or restored from a token made in another
// region) that the cached value is not known to reflect treats the hit as a
// miss for that caller: it runs the loader with ctx, whose reads observe
// the position (the router waits for a replica or reads the writer),
// returns that value, and stores it only if it is newer than the cached one
// and the item did not change meanwhile. Such a caller never reads a value
// older than its own writes, whatever the invalidations do. The check is an
// in-memory comparison: a hit costs no extra round trip, with or without a
// scope. Hits are read-your-writes, not monotonic reads across keys: the
// scope's position is what ReadScope.RequiredPosition returns.
//
// # Regions
//
// Each region has its own cluster. Invalidate writes the local marker
// before it returns and queues it for each cluster in [Config.Remotes]; one
// goroutine per region delivers markers and retries failures with backoff,
// merging positions per key, until the marker lands or the item it targets
// must have expired (at-least-once delivery). The other regions therefore
// stop serving the old value one queue hop plus one round trip (get + cas)
// after Invalidate returns: between regions, the inter-region round trip
// (about 2 × 150 ms Tokyo–Virginia).
//
// The staleness bound for callers without a scope: a region whose cluster
// cannot be reached serves the old value until the invalidation lands, and
// at most for the longest life of an item, max(TTL + TTLJitter + StaleTTL,
// NegativeTTL + StaleTTL, MarkerTTL, LeaseTTL) plus one second (with the
// defaults, MarkerTTL: 10 minutes), after which the retry stops because the
// item is gone. A shorter [Config.InvalidationRetry] shortens the retry,
// not the bound (a dropped invalidation is logged and counted). Callers
// with a scope are not bounded by this: see above. A cluster that restarts
// comes back empty. A full queue makes Invalidate wait (bounded by its ctx)
// rather than drop; more than 65536 distinct keys pending for one region
// are dropped (logged, counted). Close makes one last attempt at everything
// queued, and drops (logs, counts) what still fails.
//
// # Failures
//
// Memcached faults (timeouts, refused or broken connections, server
// errors) are counted in regiondb.cache.errors by error.type and never
// returned: the Get runs its loader and returns the loaded value. The
// Client's Timeout bounds each call; after [Config.BreakerThreshold]
// consecutive transport faults a breaker bypasses memcached for
// [Config.BreakerCooldown], then lets one call probe it. Breaker
// transitions are logged through [Config.Logger].
//
// Keys memcached cannot store (empty, over 250 bytes, spaces or control
// characters) are rejected with a *[KeyError], or hashed to a 44-byte key
// with [Config.HashKeys] (which also hashes keys starting with '#', so that
// none can name a hashed key's item).
//
// A loader that panics releases its lease (other processes take it over
// at once instead of waiting [Config.LeaseTTL]); Gets in the process that
// joined its load get [ErrLoaderPanic], and the panic continues in the Get
// that ran the loader. Values whose item would exceed
// [Config.MaxItemSize] are returned without being cached
// (regiondb.cache.skips{regiondb.cache.reason="too_large"}).
//
// # Memcached is untrusted
//
// Everything read from memcached is treated as hostile input. Items are
// decoded without panics or unbounded allocation; an item this package did
// not write is a miss and is replaced. A position read from an invalidation
// marker or a lease must have a position's shape (at most 1 KiB of letters,
// digits, ':', '-', in comma-separated fields) and, with
// [Config.ItemKeys], a valid MAC (HMAC-SHA256 bound to the key, the kind
// and the position) before it is handed to [Consistency.RequirePosition];
// otherwise the item is treated as absent and counted in
// regiondb.cache.errors (error.type invalid_position or forged_item).
//
// An attacker who can write to the memcached clusters can therefore:
// make any Get return bytes of their choosing (values are not
// authenticated: authenticating them would cost every hit a MAC over the
// payload), delete or evict items, and so send Gets to the loader (load on
// the database), and replay an older marker or lease of the same key (it
// requires a position already reached). Without ItemKeys they can also
// plant a position of a valid shape, which makes the next fill of that key
// wait for it or read the writer; the Consistency (such as
// *dbrouter.Router) must then reject positions its dialect cannot parse.
//
// They cannot: crash or stall the process (a planted lease without a
// valid MAC is overwritten, not waited for), run SQL through a position
// (only validated, and with ItemKeys authenticated, positions reach the
// Consistency), make a key read another key's item (with
// [Config.HashKeys], keys in the hashed form's namespace are hashed
// too), or learn the loader's errors (spans record the error type only).
// Keep memcached on a private network all the same.
//
// # Telemetry
//
// Tracer and meter are named [ScopeName]. Metrics (all counters, with
// db.system.name=memcached and regiondb.region): regiondb.cache.hits
// (regiondb.cache.result fresh|stale|negative), regiondb.cache.misses,
// regiondb.cache.loads, regiondb.cache.lease.waits,
// regiondb.cache.fills.refused (regiondb.cache.reason
// invalidated|unverified|lease_lost), regiondb.cache.skips (too_large,
// breaker_open, fault, lease_wait_timeout, contended), regiondb.cache.errors
// (error.type: timeout, connection, server_error, corrupt_item,
// invalid_position, forged_item, other), regiondb.cache.invalidations (regiondb.cache.result
// ok|retried|dropped). Spans: cache.get for every Get that misses, and for
// hits only inside a recording parent span, so untraced hits cost nothing;
// cache.invalidate for each Invalidate. A failed Get's span records the
// error's type (error.type and the status description), never its text.
// Without an SDK installed the hit path allocates nothing beyond
// gomemcache's own Get.
//
// # Design notes
//
// The package's architecture, why it speaks memcached's text protocol
// (add and cas) rather than the meta protocol's leases, and what was
// measured are in docs/cache.md in the repository.
package cache
