package session

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/regiondb/regiondb/internal/otelattr"
)

// ScopeName is the instrumentation scope of the package's spans and metrics.
const ScopeName = "github.com/regiondb/regiondb/session"

// regionKey is the attribute naming the local region on the metrics.
const regionKey = otelattr.Region

// telemetry holds the tracer and the instruments, created once.
type telemetry struct {
	tracer trace.Tracer

	reads         metric.Int64Histogram   // DynamoDB reads per request
	writes        metric.Int64Histogram   // DynamoDB writes per request
	fallbacks     metric.Int64Counter     // reads of the home region's table
	conflicts     metric.Int64Counter     // conditional writes that lost a race
	expired       metric.Int64Counter     // sessions found expired on read
	unavailable   metric.Int64Counter     // requests that met an unavailable store
	failover      metric.Int64Counter     // calls served by the fallback region while the local table was unavailable
	breakerOpened metric.Int64Counter     // times the local table was found unavailable
	stale         metric.Int64Counter     // sessions shown older than their newest copy, which was unreachable
	crossRegion   metric.Float64Histogram // duration of reads of another region's table

	attrs metric.MeasurementOption // regiondb.region
}

func newTelemetry(c Config) *telemetry {
	t := &telemetry{
		tracer: c.TracerProvider.Tracer(ScopeName, trace.WithInstrumentationVersion(otelattr.Version())),
		attrs:  metric.WithAttributeSet(attribute.NewSet(regionKey.String(c.Region))),
	}
	m := c.MeterProvider.Meter(ScopeName, metric.WithInstrumentationVersion(otelattr.Version()))
	var err error
	handle := func(e error) {
		if e != nil {
			otel.Handle(e)
		}
	}
	perRequest := metric.WithExplicitBucketBoundaries(0, 1, 2, 3, 5, 10)
	t.reads, err = m.Int64Histogram("regiondb.session.request.reads",
		metric.WithDescription("DynamoDB reads made for the session of one request"), metric.WithUnit("{read}"), perRequest)
	handle(err)
	t.writes, err = m.Int64Histogram("regiondb.session.request.writes",
		metric.WithDescription("DynamoDB writes made for the session of one request"), metric.WithUnit("{write}"), perRequest)
	handle(err)
	t.fallbacks, err = m.Int64Counter("regiondb.session.cross_region_fallbacks",
		metric.WithDescription("Reads of a session's home-region table because the local copy was missing or older"), metric.WithUnit("{read}"))
	handle(err)
	t.conflicts, err = m.Int64Counter("regiondb.session.conflicts",
		metric.WithDescription("Session writes that lost a race to a concurrent change and were merged and retried"), metric.WithUnit("{conflict}"))
	handle(err)
	t.expired, err = m.Int64Counter("regiondb.session.expired",
		metric.WithDescription("Sessions found expired when read"), metric.WithUnit("{session}"))
	handle(err)
	t.unavailable, err = m.Int64Counter("regiondb.session.unavailable",
		metric.WithDescription("Requests whose session store was unavailable after retries"), metric.WithUnit("{request}"))
	handle(err)
	t.failover, err = m.Int64Counter("regiondb.session.failover.calls",
		metric.WithDescription("DynamoDB calls served by another region's replica because the local table was unavailable"), metric.WithUnit("{call}"))
	handle(err)
	t.breakerOpened, err = m.Int64Counter("regiondb.session.failover.openings",
		metric.WithDescription("Times the local table was found unavailable and sessions moved to another region's replica"), metric.WithUnit("{opening}"))
	handle(err)
	t.stale, err = m.Int64Counter("regiondb.session.stale",
		metric.WithDescription("Sessions shown at an older version because the region holding the newest one could not be reached (changes refused)"), metric.WithUnit("{session}"))
	handle(err)
	t.crossRegion, err = m.Float64Histogram("regiondb.session.cross_region.duration",
		metric.WithDescription("Duration of session reads from another region's table: the extra latency of a cross-region fallback or of a regional outage"),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6))
	handle(err)
	return t
}
