package cache

import (
	"context"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkHitOverhead measures the CPU the cache adds to a hit beyond
// gomemcache's Get (key check, breaker, clock, span check, decode, metric),
// with no I/O and no OpenTelemetry SDK.
func BenchmarkHitOverhead(b *testing.B) {
	c, err := New(Config{Client: memcache.New("127.0.0.1:1")}) // never dialled
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	f, v := encodeValue(time.Now().Add(time.Hour).UnixMilli(), "", []byte("0123456789abcdef0"), false)
	it := &memcache.Item{Key: "user:42:profile", Flags: f, Value: v}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		mk, err := storageKey("user:42:profile", false)
		if err != nil || !c.br.allow() || trace.SpanFromContext(ctx).IsRecording() {
			b.Fatal("unexpected")
		}
		_ = mk
		start := time.Now()
		c.ok(ctx)
		o := c.fresh(it, start, "")
		if o.hit != hitFresh || o.err != nil {
			b.Fatal("not fresh")
		}
		c.record(ctx, o)
	}
}
