package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults for the zero fields of [Config].
const (
	// DefaultTTL is how long a filled value is fresh.
	DefaultTTL = 5 * time.Minute
	// DefaultStaleTTL is how long an expired value may still be served while
	// one caller reloads it (stale-while-revalidate).
	DefaultStaleTTL = 30 * time.Second
	// DefaultMarkerTTL is how long an invalidation marker outlives its write.
	DefaultMarkerTTL = 10 * time.Minute
	// DefaultLeaseTTL is how long a loader holds its lease before another
	// caller may take it over.
	DefaultLeaseTTL = 3 * time.Second
	// DefaultLeaseWait is how long a caller waits for another caller's load
	// before it loads by itself (and does not fill).
	DefaultLeaseWait = time.Second
	// DefaultMaxItemSize is memcached's default item size limit (-I 1m).
	DefaultMaxItemSize = 1 << 20
	// DefaultBreakerThreshold is the number of consecutive memcached faults
	// that opens the breaker.
	DefaultBreakerThreshold = 5
	// DefaultBreakerCooldown is how long an open breaker bypasses memcached
	// before one call probes it again.
	DefaultBreakerCooldown = time.Second
	// DefaultInvalidationRetry was how long a failed invalidation was
	// retried.
	//
	// Deprecated: a zero [Config.InvalidationRetry] now retries until the
	// invalidated item must have expired; this constant is unused.
	DefaultInvalidationRetry = 30 * time.Second
	// DefaultInvalidationQueue is the length of each region's invalidation queue.
	DefaultInvalidationQueue = 1024
)

// Consistency lets the cache refuse fills read from a source that had not
// applied the write an invalidation followed. *dbrouter.Router implements it.
//
// Implementations must be safe for concurrent use.
type Consistency interface {
	// WrittenPosition returns the writer position of the writes made through ctx (opaque,
	// non-empty string), or "" if ctx carries none.
	WrittenPosition(ctx context.Context) string
	// RequirePosition returns a context whose reads observe pos or later, and a function that,
	// called after those reads, reports whether every read made through the returned context
	// was served by a source that had applied pos (the writer always has).
	RequirePosition(ctx context.Context, pos string) (context.Context, func() bool)
	// MergePositions returns the least position at or after both a and b ("" counts as nothing).
	MergePositions(a, b string) string
}

// ReadScope is an optional capability of a [Consistency], found by type
// assertion, that makes cache hits read-your-writes: a Get whose ctx
// requires a position that the cached value is not known to reflect treats
// the hit as a miss for that caller.
//
// Implementations must be safe for concurrent use, and both methods must be
// in-memory (no I/O): RequiredPosition is called on every Get.
type ReadScope interface {
	// RequiredPosition returns the writer position that data served to ctx
	// must reflect (the writes of ctx's read-your-writes scope, including
	// those restored from a token), or "" if ctx requires none. It should
	// not allocate when it returns "".
	RequiredPosition(ctx context.Context) string
	// CoversPosition reports whether data that reflects position a also
	// reflects everything position b describes. Every a covers b = ""; a = ""
	// covers only "". Positions that do not parse cover nothing and are
	// covered by nothing.
	CoversPosition(a, b string) bool
}

// PositionObserver is an optional capability of a [Consistency], found by
// type assertion, that tells which writer position a load's data reflects.
// The cache stores it with the value, so that [ReadScope] checks can accept
// values filled without an invalidation. Without it, such values count as
// reflecting no known position.
//
// Implementations must be safe for concurrent use.
type PositionObserver interface {
	// ObservePosition returns a context for a load and a function that,
	// called after the load's reads, returns a writer position that every
	// read made through the returned context is known to reflect (for a
	// replica, what it had applied when it served the read; for the writer,
	// what it had committed), or "" if that is not known.
	ObservePosition(ctx context.Context) (context.Context, func() string)
}

// Region is the memcached cluster of one region.
type Region struct {
	// Name is the region's name (e.g. "us-east-1"), used in metrics and logs.
	Name string
	// Client is the region's memcached client. It is owned by the caller,
	// who closes it after [Cache.Close].
	Client *memcache.Client
}

// Config configures a [Cache]. The zero value of every field except Client
// selects a documented default; a zero Config with a Client is a working
// cache. [New] copies the Config; changing it afterwards has no effect.
type Config struct {
	// Client is the local region's memcached client: Get reads and fills it.
	// Required. The caller owns it (and closes it after Cache.Close). Its
	// Timeout bounds every memcached call the cache makes (gomemcache takes
	// no context); set it short, e.g. 100 ms, so a slow memcached costs
	// little before the loader runs. The cache does not modify the client.
	Client *memcache.Client

	// Region names the local region in metrics and logs. If empty, "local".
	Region string

	// Remotes are the memcached clusters of the other regions. Invalidate
	// writes its marker to each of them through a per-region background
	// worker that retries failures for InvalidationRetry. If nil, only the
	// local cluster is invalidated.
	Remotes []Region

	// Consistency, if non-nil, protects fills from stale replicas:
	// Invalidate records Consistency.WrittenPosition(ctx) in its marker, and
	// the next fill is stored only if the loader ran under
	// Consistency.RequirePosition(marker position) and its check reported
	// true; otherwise the loaded value is returned without being cached.
	// If nil, markers carry no position and fills after an invalidation are
	// accepted (the loader must then read a fresh source itself).
	Consistency Consistency

	// TTL is how long a filled value is fresh. If zero, DefaultTTL.
	TTL time.Duration

	// TTLJitter is the largest random amount added to or taken from TTL at
	// each fill, so that keys filled together do not expire together.
	// If zero, TTL/10; if negative, no jitter.
	TTLJitter time.Duration

	// StaleTTL is how long after its TTL a value may still be served while
	// one caller (across all processes) reloads it. If zero, DefaultStaleTTL;
	// if negative, expired values are never served and callers wait for the
	// reload like on a miss. Invalidated values are never served.
	StaleTTL time.Duration

	// NegativeTTL, if positive, caches a loader's ErrNotFound for that long.
	// If zero, absences are not cached.
	NegativeTTL time.Duration

	// MarkerTTL is how long an invalidation marker (and the position it
	// requires of the next fill) lives if no fill replaces it. It must exceed
	// the longest replica lag the reads can see. If zero, DefaultMarkerTTL.
	MarkerTTL time.Duration

	// LeaseTTL is how long a loader holds the key's lease; after it another
	// caller may take the lease over. If zero, DefaultLeaseTTL.
	LeaseTTL time.Duration

	// LeaseWait is how long a caller waits for another caller's load before
	// loading by itself without filling. If zero, DefaultLeaseWait.
	LeaseWait time.Duration

	// MaxItemSize is the memcached item size limit (its -I option). Values
	// whose item would exceed it are returned without being cached, counted
	// in the regiondb.cache.skips metric. If zero, DefaultMaxItemSize.
	MaxItemSize int

	// BreakerThreshold is the number of consecutive memcached faults
	// (timeouts, refused or broken connections) after which the cache stops
	// calling memcached for BreakerCooldown and every Get runs its loader.
	// If zero, DefaultBreakerThreshold.
	BreakerThreshold int

	// BreakerCooldown is how long the open breaker bypasses memcached before
	// one call probes it. If zero, DefaultBreakerCooldown.
	BreakerCooldown time.Duration

	// InvalidationRetry is how long an invalidation that failed on a region's
	// cluster is retried before it is dropped (and logged). If zero, until
	// the item it targets must have expired: the longest life of an item
	// (TTL + TTLJitter + StaleTTL, or NegativeTTL + StaleTTL, or MarkerTTL,
	// whichever is longest, plus a second of rounding), which is also how
	// long an unreachable region can serve the old value to callers without
	// a scope. A positive value shorter than that drops invalidations
	// earlier.
	InvalidationRetry time.Duration

	// InvalidationQueue is the length of each region's invalidation queue.
	// When a queue is full, Invalidate sends to that region itself. If zero,
	// DefaultInvalidationQueue.
	InvalidationQueue int

	// HashKeys, if true, replaces keys memcached cannot store (over 250
	// bytes, or with spaces or control characters), and keys that start with
	// '#' (so that no key can name another key's hashed form), by a SHA-256
	// based key of 44 bytes starting with '#'. If false, keys memcached
	// cannot store are rejected with a *KeyError.
	HashKeys bool

	// ItemKeys authenticate the positions the cache stores in memcached
	// (in invalidation markers and leases): the first key signs, every key
	// verifies (for rotation). Each must be at least 16 bytes, and every
	// process and region sharing the memcached clusters must have the same
	// keys. A marker or lease that fails verification is ignored (treated
	// as absent, and counted in regiondb.cache.errors with error.type
	// forged_item), so its position never reaches Consistency.
	//
	// If empty, items are not authenticated: positions read from memcached
	// are checked for shape only, and anyone who can write to memcached can
	// make fills wait for, or fall back to the writer for, a position of
	// their choosing. [New] then logs a warning when Consistency is set.
	ItemKeys []Secret

	// Logger receives background events: breaker transitions and dropped
	// invalidations. If nil, nothing is logged.
	Logger *slog.Logger

	// TracerProvider provides the tracer for spans. If nil,
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider

	// MeterProvider provides the meter for metrics. If nil,
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// normalize returns a copy of cfg with defaults applied, or a *ConfigError.
func (cfg Config) normalize() (Config, error) {
	if cfg.Client == nil {
		return cfg, &ConfigError{Field: "Client", Reason: "nil"}
	}
	cfg.Remotes = append([]Region(nil), cfg.Remotes...)
	for i, r := range cfg.Remotes {
		if r.Client == nil {
			return cfg, &ConfigError{Field: "Remotes[" + itoa(i) + "].Client", Reason: "nil"}
		}
		if r.Client == cfg.Client {
			return cfg, &ConfigError{Field: "Remotes[" + itoa(i) + "].Client", Reason: "is the local Client"}
		}
		if r.Name == "" {
			cfg.Remotes[i].Name = "remote" + itoa(i)
		}
	}
	if cfg.Region == "" {
		cfg.Region = "local"
	}
	keys := make([]Secret, len(cfg.ItemKeys))
	for i, k := range cfg.ItemKeys {
		if len(k) < minSecretLen {
			return cfg, &ConfigError{Field: "ItemKeys[" + itoa(i) + "]", Reason: "shorter than 16 bytes"}
		}
		keys[i] = Secret(bytes.Clone(k))
	}
	cfg.ItemKeys = keys
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"TTL", &cfg.TTL, DefaultTTL},
		{"MarkerTTL", &cfg.MarkerTTL, DefaultMarkerTTL},
		{"LeaseTTL", &cfg.LeaseTTL, DefaultLeaseTTL},
		{"LeaseWait", &cfg.LeaseWait, DefaultLeaseWait},
		{"BreakerCooldown", &cfg.BreakerCooldown, DefaultBreakerCooldown},
	} {
		if *d.v < 0 {
			return cfg, &ConfigError{Field: d.name, Reason: "negative"}
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.NegativeTTL < 0 {
		return cfg, &ConfigError{Field: "NegativeTTL", Reason: "negative"}
	}
	if cfg.InvalidationRetry < 0 {
		return cfg, &ConfigError{Field: "InvalidationRetry", Reason: "negative"}
	}
	switch {
	case cfg.TTLJitter == 0:
		cfg.TTLJitter = cfg.TTL / 10
	case cfg.TTLJitter < 0:
		cfg.TTLJitter = 0
	case cfg.TTLJitter >= cfg.TTL:
		return cfg, &ConfigError{Field: "TTLJitter", Reason: "not below TTL"}
	}
	switch {
	case cfg.StaleTTL == 0:
		cfg.StaleTTL = DefaultStaleTTL
	case cfg.StaleTTL < 0:
		cfg.StaleTTL = 0
	}
	if cfg.MaxItemSize < 0 || cfg.BreakerThreshold < 0 || cfg.InvalidationQueue < 0 {
		f := "MaxItemSize"
		if cfg.BreakerThreshold < 0 {
			f = "BreakerThreshold"
		} else if cfg.InvalidationQueue < 0 {
			f = "InvalidationQueue"
		}
		return cfg, &ConfigError{Field: f, Reason: "negative"}
	}
	if cfg.MaxItemSize == 0 {
		cfg.MaxItemSize = DefaultMaxItemSize
	}
	if cfg.BreakerThreshold == 0 {
		cfg.BreakerThreshold = DefaultBreakerThreshold
	}
	if cfg.InvalidationQueue == 0 {
		cfg.InvalidationQueue = DefaultInvalidationQueue
	}
	if life := cfg.itemLife(); cfg.InvalidationRetry == 0 || cfg.InvalidationRetry > life {
		cfg.InvalidationRetry = life
	}
	return cfg, nil
}

// itemLife is the longest an item can live in memcached after it was
// written (cfg normalized): an unreachable region can serve a value this
// long after its invalidation, and invalidations are retried this long.
func (cfg *Config) itemLife() time.Duration {
	d := max(cfg.TTL+cfg.TTLJitter+cfg.StaleTTL, cfg.NegativeTTL+cfg.StaleTTL, cfg.MarkerTTL, cfg.LeaseTTL)
	return d + time.Second
}

// minSecretLen is the shortest [Secret] accepted in [Config.ItemKeys].
const minSecretLen = 16

// Secret is key material. It never prints: fmt, encoding/json and log/slog
// all show REDACTED.
type Secret []byte

// String returns "REDACTED".
func (Secret) String() string { return "REDACTED" }

// GoString returns "REDACTED".
func (Secret) GoString() string { return "REDACTED" }

// Format writes REDACTED for every verb.
func (Secret) Format(f fmt.State, _ rune) { io.WriteString(f, "REDACTED") }

// MarshalJSON returns "REDACTED" as a JSON string.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"REDACTED"`), nil }

// MarshalText returns REDACTED.
func (Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// LogValue returns REDACTED.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }
