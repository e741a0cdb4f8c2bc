package cache_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/regiondb/regiondb/cache"
	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestSpans: a miss makes a cache.get span with the semantic-convention
// attributes; a hit makes one only inside a recording parent span.
func TestSpans(t *testing.T) {
	e := openEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	c, _ := newCache(t, e, cache.Config{TracerProvider: tp, Region: "ap-northeast-1"})
	key := cacheharness.UniqueKey(e, t.Name())
	ctx := context.Background()
	var calls atomic.Int64
	c.Get(ctx, key, constLoader(&calls, "v")) // miss: span
	c.Get(ctx, key, constLoader(&calls, "v")) // hit without parent: no span
	pctx, parent := tp.Tracer("test").Start(ctx, "request")
	c.Get(pctx, key, constLoader(&calls, "v")) // hit in a trace: span
	parent.End()

	var gets []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "cache.get" {
			gets = append(gets, s)
		}
	}
	if len(gets) != 2 {
		t.Fatalf("cache.get spans = %d, want 2 (miss, traced hit)", len(gets))
	}
	attrs := map[string]string{}
	for _, kv := range gets[0].Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["db.system.name"] != "memcached" || attrs["db.operation.name"] != "get" || attrs["regiondb.region"] != "ap-northeast-1" {
		t.Fatalf("miss span attributes = %v", attrs)
	}
	if gets[1].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatal("traced hit's span is not a child of the request span")
	}
}

// TestSpanErrorType: a failed load's span carries the error's type, never
// its text (which may hold user data).
func TestSpanErrorType(t *testing.T) {
	e := openEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	c, _ := newCache(t, e, cache.Config{TracerProvider: tp})
	key := cacheharness.UniqueKey(e, t.Name())
	secret := errors.New("Error 1062 (23000): Duplicate entry 'alice@example.com' for key 'email'")
	if _, err := c.Get(context.Background(), key, func(context.Context) ([]byte, error) { return nil, secret }); !errors.Is(err, secret) {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	text := fmt.Sprint(s.Status(), s.Attributes(), s.Events())
	if strings.Contains(text, "alice") || strings.Contains(text, "Duplicate") {
		t.Fatalf("span carries the error text: %s", text)
	}
	if s.Status().Code != codes.Error || !strings.Contains(text, "*errors.errorString") {
		t.Fatalf("span status/attributes lack the error type: %s", text)
	}
}
