package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/regiondb/regiondb/dbrouter"
)

const scopeName = "github.com/regiondb/regiondb/examples/photoalbum"

// telemetry is the service's OpenTelemetry SDK: traces go to a stdout-format
// exporter (a file or stdout), metrics to an in-memory reader that
// /debug/metrics reads. A production service would export both over OTLP
// instead; regiondb's packages only see the providers.
type telemetry struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer

	duration metric.Float64Histogram // http.server.request.duration
	loads    metric.Int64Counter     // photoalbum.record.loads (cache loader calls)
	notified metric.Int64Counter     // photoalbum.notifications.sent
}

func newTelemetry(region string, traceOut io.Writer, ratio float64) (*telemetry, error) {
	res := resource.NewSchemaless(semconv.ServiceName("photoalbum"), semconv.CloudRegion(region))
	t := &telemetry{reader: sdkmetric.NewManualReader()}
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(t.reader), sdkmetric.WithResource(res))
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	}
	if traceOut != nil && ratio > 0 {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(traceOut))
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	t.tp = sdktrace.NewTracerProvider(opts...)
	t.tracer = t.tp.Tracer(scopeName)
	m := t.mp.Meter(scopeName)
	var err error
	if t.duration, err = m.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if t.loads, err = m.Int64Counter("photoalbum.record.loads", metric.WithUnit("{load}"),
		metric.WithDescription("Cache loader calls, by record kind (user, family): the database reads the cache did not save.")); err != nil {
		return nil, err
	}
	if t.notified, err = m.Int64Counter("photoalbum.notifications.sent", metric.WithUnit("{notification}"),
		metric.WithDescription("Notifications sent to family members.")); err != nil {
		return nil, err
	}
	return t, nil
}

// observeRouter publishes the router's cumulative Stats as the
// photoalbum.dbrouter.reads counter, by where the reads were served
// (local_reader, other_region_reader, writer, forced_writer). dbrouter's own
// regiondb.dbrouter.statements metric says why, but not which region.
func (t *telemetry) observeRouter(rt interface{ Stats() dbrouter.Stats }) error {
	m := t.mp.Meter(scopeName)
	reads, err := m.Int64ObservableCounter("photoalbum.dbrouter.reads", metric.WithUnit("{read}"),
		metric.WithDescription("Reads by where the router served them (from dbrouter's Stats)."))
	if err != nil {
		return err
	}
	where := attribute.Key("photoalbum.served_by")
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := rt.Stats()
		o.ObserveInt64(reads, st.ReadsLocal, metric.WithAttributes(where.String("local_reader")))
		o.ObserveInt64(reads, st.ReadsRemote, metric.WithAttributes(where.String("other_region_reader")))
		o.ObserveInt64(reads, st.ReadsWriter, metric.WithAttributes(where.String("writer")))
		o.ObserveInt64(reads, st.ReadsForced, metric.WithAttributes(where.String("forced_writer")))
		return nil
	}, reads)
	return err
}

func (t *telemetry) shutdown(ctx context.Context) error {
	err := t.tp.Shutdown(ctx)
	if e := t.mp.Shutdown(ctx); err == nil {
		err = e
	}
	return err
}

// statusWriter records the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps a route's handler in a server span and the request
// duration histogram (HTTP semantic conventions), the job otelhttp does.
func (t *telemetry) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		attrs := []attribute.KeyValue{
			semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.HTTPRoute(route),
			semconv.HTTPResponseStatusCode(sw.status),
		}
		if sw.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(sw.status))
			attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(sw.status)))
		}
		span.SetAttributes(attrs...)
		t.duration.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), metric.WithAttributes(attrs...))
	})
}

// metricPoint is one data point of /debug/metrics.
type metricPoint struct {
	Attrs  map[string]string `json:"attrs,omitempty"`
	Value  float64           `json:"value"`
	Count  uint64            `json:"count,omitempty"`
	Bounds []float64         `json:"bounds,omitempty"`
	Counts []uint64          `json:"counts,omitempty"`
}

// metricDump is one instrument of /debug/metrics.
type metricDump struct {
	Scope  string        `json:"scope"`
	Name   string        `json:"name"`
	Unit   string        `json:"unit,omitempty"`
	Kind   string        `json:"kind"`
	Points []metricPoint `json:"points"`
}

// serveMetrics writes a snapshot of every metric (the service's and
// regiondb's) as JSON: histograms give count, sum (as value) and buckets.
func (t *telemetry) serveMetrics(w http.ResponseWriter, r *http.Request) {
	var rm metricdata.ResourceMetrics
	if err := t.reader.Collect(r.Context(), &rm); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := []metricDump{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			d := metricDump{Scope: sm.Scope.Name, Name: m.Name, Unit: m.Unit}
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				d.Kind = "sum"
				for _, p := range data.DataPoints {
					d.Points = append(d.Points, metricPoint{Attrs: attrMap(p.Attributes), Value: float64(p.Value)})
				}
			case metricdata.Sum[float64]:
				d.Kind = "sum"
				for _, p := range data.DataPoints {
					d.Points = append(d.Points, metricPoint{Attrs: attrMap(p.Attributes), Value: p.Value})
				}
			case metricdata.Gauge[int64]:
				d.Kind = "gauge"
				for _, p := range data.DataPoints {
					d.Points = append(d.Points, metricPoint{Attrs: attrMap(p.Attributes), Value: float64(p.Value)})
				}
			case metricdata.Gauge[float64]:
				d.Kind = "gauge"
				for _, p := range data.DataPoints {
					d.Points = append(d.Points, metricPoint{Attrs: attrMap(p.Attributes), Value: p.Value})
				}
			case metricdata.Histogram[int64]:
				d.Kind = "histogram"
				for _, p := range data.DataPoints {
					d.Points = append(d.Points, metricPoint{Attrs: attrMap(p.Attributes), Value: float64(p.Sum),
						Count: p.Count, Bounds: p.Bounds, Counts: p.BucketCounts})
				}
			case metricdata.Histogram[float64]:
				d.Kind = "histogram"
				for _, p := range data.DataPoints {
					d.Points = append(d.Points, metricPoint{Attrs: attrMap(p.Attributes), Value: p.Sum,
						Count: p.Count, Bounds: p.Bounds, Counts: p.BucketCounts})
				}
			default:
				d.Kind = fmt.Sprintf("%T", data)
			}
			out = append(out, d)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func attrMap(set attribute.Set) map[string]string {
	if set.Len() == 0 {
		return nil
	}
	m := make(map[string]string, set.Len())
	for _, kv := range set.ToSlice() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}
