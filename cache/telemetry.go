package cache

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/regiondb/regiondb/internal/otelattr"
)

// ScopeName is the instrumentation scope of the cache's tracer and meter.
const ScopeName = "github.com/regiondb/regiondb/cache"

// Attribute keys of this package (semantic-convention keys come from semconv).
const (
	attrRegion = otelattr.Region
	attrResult = attribute.Key("regiondb.cache.result")
	attrReason = attribute.Key("regiondb.cache.reason")
)

// Error kinds (error.type values) of memcached faults.
const (
	errKindTimeout     = "timeout"
	errKindConnection  = "connection"
	errKindServer      = "server_error"
	errKindCorrupt     = "corrupt_item"
	errKindBadPosition = "invalid_position" // an item whose position has not a position's shape
	errKindForged      = "forged_item"      // a lease or marker that fails Config.ItemKeys
	errKindOther       = "other"
)

// Reasons for refused fills and skipped stores (regiondb.cache.reason).
const (
	reasonInvalidated = "invalidated"        // an invalidation replaced the lease during the load
	reasonUnverified  = "unverified"         // the load was not proven to see the invalidated write
	reasonLeaseLost   = "lease_lost"         // the lease expired, was taken over or evicted
	reasonTooLarge    = "too_large"          // the item would exceed Config.MaxItemSize
	reasonBreakerOpen = "breaker_open"       // memcached was bypassed
	reasonFault       = "fault"              // memcached failed the call
	reasonLeaseWait   = "lease_wait_timeout" // another loader held the lease past Config.LeaseWait
	reasonContended   = "contended"          // the item kept changing during the lease protocol
)

// telemetry holds the instruments, created once in New.
type telemetry struct {
	tracer trace.Tracer

	hits, misses, loads, leaseWaits, refused, skips, errors, invalidations metric.Int64Counter

	// Precomputed options: the hit path must not allocate.
	hitFresh, hitStale, hitNegative, base []metric.AddOption
	// regionOpts caches per-region, per-result options for invalidations.
	regionAttr attribute.KeyValue
	spanAttrs  []attribute.KeyValue
}

func newTelemetry(cfg *Config) *telemetry {
	tp, mp := cfg.TracerProvider, cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	v := otelattr.Version()
	t := &telemetry{
		tracer:     tp.Tracer(ScopeName, trace.WithInstrumentationVersion(v)),
		regionAttr: attrRegion.String(cfg.Region),
	}
	m := mp.Meter(ScopeName, metric.WithInstrumentationVersion(v))
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{"+unitOf(name)+"}"))
		if err != nil {
			otel.Handle(err)
		}
		return c
	}
	t.hits = counter("regiondb.cache.hits", "Gets answered from memcached (regiondb.cache.result: fresh, stale, negative).")
	t.misses = counter("regiondb.cache.misses", "Gets that memcached could not answer (miss, invalidated, expired, bypassed).")
	t.loads = counter("regiondb.cache.loads", "Loader calls.")
	t.leaseWaits = counter("regiondb.cache.lease.waits", "Gets that waited for another caller's lease.")
	t.refused = counter("regiondb.cache.fills.refused", "Loaded values not stored, by regiondb.cache.reason (invalidated, unverified, lease_lost).")
	t.skips = counter("regiondb.cache.skips", "Values or calls that skipped memcached, by regiondb.cache.reason (too_large, breaker_open, fault, lease_wait_timeout, contended).")
	t.errors = counter("regiondb.cache.errors", "memcached faults and unusable items, by error.type (timeout, connection, server_error, corrupt_item, invalid_position, forged_item, other). Never returned to callers.")
	t.invalidations = counter("regiondb.cache.invalidations", "Invalidation markers written, by regiondb.region and regiondb.cache.result (ok, retried, dropped).")

	sys := semconv.DBSystemNameMemcached
	t.base = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(sys, t.regionAttr))}
	t.hitFresh = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(sys, t.regionAttr, attrResult.String("fresh")))}
	t.hitStale = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(sys, t.regionAttr, attrResult.String("stale")))}
	t.hitNegative = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(sys, t.regionAttr, attrResult.String("negative")))}
	t.spanAttrs = []attribute.KeyValue{sys, semconv.DBOperationName("get"), t.regionAttr}
	return t
}

func unitOf(name string) string {
	i := strings.LastIndexByte(name, '.')
	return name[i+1:]
}

func (t *telemetry) add(ctx context.Context, c metric.Int64Counter, kvs ...attribute.KeyValue) {
	if c == nil {
		return
	}
	if len(kvs) == 0 {
		c.Add(ctx, 1, t.base...)
		return
	}
	all := make([]attribute.KeyValue, 0, len(kvs)+2)
	all = append(all, semconv.DBSystemNameMemcached, t.regionAttr)
	all = append(all, kvs...)
	c.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(all...)))
}

func (t *telemetry) refuse(ctx context.Context, reason string) {
	t.add(ctx, t.refused, attrReason.String(reason))
	trace.SpanFromContext(ctx).AddEvent("fill refused", trace.WithAttributes(attrReason.String(reason)))
}

func (t *telemetry) skip(ctx context.Context, reason string) {
	t.add(ctx, t.skips, attrReason.String(reason))
}

func (t *telemetry) fault(ctx context.Context, kind string) {
	t.add(ctx, t.errors, semconv.ErrorTypeKey.String(kind))
}

// remoteFault counts a fault of another region's cluster.
func (t *telemetry) remoteFault(ctx context.Context, region attribute.KeyValue, kind string) {
	if t.errors != nil {
		t.errors.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
			semconv.DBSystemNameMemcached, region, semconv.ErrorTypeKey.String(kind))))
	}
}

// startSpan starts the span of a Get that missed (or of any Get when the
// parent span records).
func (t *telemetry) startSpan(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, name, append(opts, trace.WithSpanKind(trace.SpanKindClient))...)
	if span.IsRecording() {
		span.SetAttributes(t.spanAttrs...)
	}
	return ctx, span
}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil && span.IsRecording() && !errors.Is(err, ErrNotFound) {
		// The type only: a loader's error text may carry user data
		// (e.g. "Duplicate entry 'alice@example.com'").
		typ := semconv.ErrorType(err)
		span.SetStatus(codes.Error, typ.Value.AsString())
		span.SetAttributes(typ)
	}
	span.End()
}

// classify sorts a memcached error into a fault kind and says whether it
// counts against the breaker (transport faults do; server replies do not).
// Protocol outcomes (miss, not stored, CAS conflict) are not faults: ok is
// false for them.
func classify(err error) (kind string, transport, ok bool) {
	switch {
	case err == nil, errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored),
		errors.Is(err, memcache.ErrCASConflict):
		return "", false, false
	}
	var cte *memcache.ConnectTimeoutError
	var ne net.Error
	switch {
	case errors.As(err, &cte):
		return errKindTimeout, true, true
	case errors.As(err, &ne) && ne.Timeout():
		return errKindTimeout, true, true
	case errors.Is(err, memcache.ErrServerError), strings.Contains(err.Error(), "SERVER_ERROR"):
		return errKindServer, false, true
	case errors.Is(err, memcache.ErrNoServers):
		return errKindConnection, true, true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return errKindConnection, true, true
	}
	return errKindOther, true, true
}
