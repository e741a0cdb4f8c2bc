package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/regiondb/regiondb/internal/testserver"
)

// recConsistency records the positions handed to RequirePosition; the rest
// is a minimal position algebra over decimal numbers (the cache does not
// parse positions).
type recConsistency struct {
	mu  sync.Mutex // protects got
	got []string
}

func (r *recConsistency) WrittenPosition(context.Context) string { return "" }
func (r *recConsistency) RequirePosition(ctx context.Context, pos string) (context.Context, func() bool) {
	r.mu.Lock()
	r.got = append(r.got, pos)
	r.mu.Unlock()
	return ctx, func() bool { return true }
}
func (r *recConsistency) MergePositions(a, b string) string { return max(a, b) }

func (r *recConsistency) positions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

var (
	keyA = Secret("0123456789abcdef-key-a")
	keyB = Secret("0123456789abcdef-key-b")
)

const injection = "27202b20-736c-6565-7028-3529202b2027:1" // hex of "' + sleep(5) + '"

// TestPlantedItems plants leases and markers in the real memcached, as an
// attacker with access to the cache network would, and checks which
// positions reach Consistency.RequirePosition and what is counted.
func TestPlantedItems(t *testing.T) {
	s := testserver.Require(t)
	addr := s.Memcached(testserver.PrimaryRegion)
	raw := memcache.New(addr)
	raw.Timeout = time.Second
	t.Cleanup(func() { raw.Close() })
	signed := func(key Secret, mk, pos string) (uint32, []byte) {
		return encodeMarker(pos, itemMAC(key, mk, kindMarker, 0, 0, pos))
	}
	tests := []struct {
		name     string
		keys     []Secret
		plant    func(mk string) (uint32, []byte)
		want     []string // positions handed to RequirePosition
		wantKind string   // error.type counted, "" for none
	}{
		{"unsigned marker, keys set", []Secret{keyA},
			func(string) (uint32, []byte) { return encodeMarker(injection, nil) }, nil, errKindForged},
		{"marker signed with another key", []Secret{keyA},
			func(mk string) (uint32, []byte) { return signed(keyB, mk, injection) }, nil, errKindForged},
		{"marker signed for another key", []Secret{keyA},
			func(mk string) (uint32, []byte) { return signed(keyA, mk+"x", "5") }, nil, errKindForged},
		{"forged MAC", []Secret{keyA},
			func(string) (uint32, []byte) { return encodeMarker("5", bytes.Repeat([]byte{1}, macLen)) }, nil, errKindForged},
		{"unsigned lease with a long deadline, keys set", []Secret{keyA},
			func(string) (uint32, []byte) {
				return encodeLease(time.Now().Add(time.Hour).UnixMilli(), 1, "", nil, nil, false)
			}, nil, errKindForged},
		{"SQL in a marker, no keys", nil,
			func(string) (uint32, []byte) { return encodeMarker("' + sleep(5) + '-0-1", nil) }, nil, errKindBadPosition},
		{"SQL in a lease, no keys", nil,
			func(string) (uint32, []byte) { return encodeLease(0, 0, "0-1-1'#", nil, nil, false) }, nil, errKindBadPosition},
		{"oversized position, no keys", nil,
			func(string) (uint32, []byte) { return encodeMarker(strings.Repeat("9", maxPositionLen+1), nil) }, nil, errKindBadPosition},
		{"signed marker", []Secret{keyA},
			func(mk string) (uint32, []byte) { return signed(keyA, mk, "5") }, []string{"5"}, ""},
		{"marker signed with a retired key", []Secret{keyB, keyA},
			func(mk string) (uint32, []byte) { return signed(keyA, mk, "6") }, []string{"6"}, ""},
		// Without ItemKeys a position of a valid shape is taken: the
		// Consistency must reject what its dialect cannot parse (go doc).
		{"shape-valid unsigned marker, no keys", nil,
			func(string) (uint32, []byte) { return encodeMarker(injection, nil) }, []string{injection}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
			t.Cleanup(func() { mp.Shutdown(context.Background()) })
			mc := memcache.New(addr)
			mc.Timeout = time.Second
			t.Cleanup(func() { mc.Close() })
			rec := &recConsistency{}
			c, err := New(Config{Client: mc, Consistency: rec, ItemKeys: tt.keys, MeterProvider: mp})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			mk := fmt.Sprintf("regiondb:cache:planted:%d:%d", time.Now().UnixNano(), i)
			f, b := tt.plant(mk)
			if err := raw.Set(&memcache.Item{Key: mk, Flags: f, Value: b, Expiration: 60}); err != nil {
				t.Fatal(err)
			}
			v, err := c.Get(context.Background(), mk, func(context.Context) ([]byte, error) { return []byte("real"), nil })
			if err != nil || string(v) != "real" {
				t.Fatalf("Get = %q, %v", v, err)
			}
			if got := rec.positions(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("positions handed to RequirePosition = %q, want %q", got, tt.want)
			}
			for _, kind := range []string{errKindForged, errKindBadPosition} {
				want := int64(0)
				if kind == tt.wantKind {
					want = 1
				}
				if n := sumCounter(t, rd, "regiondb.cache.errors", attribute.String("error.type", kind)); n != want {
					t.Fatalf("errors{error.type=%s} = %d, want %d", kind, n, want)
				}
			}
			// The planted item was replaced: the next Get hits.
			if v, err := c.Get(context.Background(), mk, func(context.Context) ([]byte, error) { return []byte("again"), nil }); string(v) != "real" {
				t.Fatalf("second Get = %q, %v; want the filled value", v, err)
			}
		})
	}
}

func sumCounter(t *testing.T, r sdkmetric.Reader, name string, match ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != name || !ok {
				continue
			}
		points:
			for _, dp := range sum.DataPoints {
				for _, kv := range match {
					if v, ok := dp.Attributes.Value(kv.Key); !ok || v != kv.Value {
						continue points
					}
				}
				n += dp.Value
			}
		}
	}
	return n
}

// TestSignedRoundTrip: what one Cache writes with ItemKeys, another with
// the same keys accepts (an invalidation's position reaches the next
// fill), and one with other keys ignores.
func TestSignedRoundTrip(t *testing.T) {
	s := testserver.Require(t)
	addr := s.Memcached(testserver.PrimaryRegion)
	mk := fmt.Sprintf("regiondb:cache:signed:%d", time.Now().UnixNano())
	open := func(keys ...Secret) (*Cache, *recConsistency) {
		mc := memcache.New(addr)
		mc.Timeout = time.Second
		t.Cleanup(func() { mc.Close() })
		rec := &recConsistency{}
		c, err := New(Config{Client: mc, Consistency: rec, ItemKeys: keys})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, rec
	}
	w, _ := open(keyA)
	same, recSame := open(keyB, keyA)
	other, recOther := open(keyB)
	ctx := context.Background()
	for _, tc := range []struct {
		c    *Cache
		rec  *recConsistency
		want string
	}{{other, recOther, "[]"}, {same, recSame, "[7]"}} {
		if err := w.mark(w.mc, mk, "7"); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.c.Get(ctx, mk, func(context.Context) ([]byte, error) { return []byte("v"), nil }); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(tc.rec.positions()); got != tc.want {
			t.Fatalf("positions = %s, want %s", got, tc.want)
		}
	}
}

func TestItemKeysConfig(t *testing.T) {
	mc := memcache.New("127.0.0.1:1") // never dialled
	_, err := New(Config{Client: mc, ItemKeys: []Secret{keyA, Secret("short")}})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "ItemKeys[1]" {
		t.Fatalf("short key: err = %v, want a *ConfigError for ItemKeys[1]", err)
	}
	var logs bytes.Buffer
	c, err := New(Config{Client: mc, Consistency: &recConsistency{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "ItemKeys is empty") {
		t.Fatalf("no warning about unauthenticated items: %q", logs.String())
	}
	logs.Reset()
	c, _ = New(Config{Client: mc, Consistency: &recConsistency{}, ItemKeys: []Secret{keyA}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c.Close()
	if logs.Len() != 0 {
		t.Fatalf("warning with keys set: %q", logs.String())
	}
}

// TestSecretRedacted: key material prints in no format.
func TestSecretRedacted(t *testing.T) {
	cfg := Config{ItemKeys: []Secret{keyA}}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q", "%d"} {
		out = append(out, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, keyA))
	}
	j, _ := json.Marshal(cfg.ItemKeys)
	out = append(out, string(j))
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "keys", cfg.ItemKeys, "key", keyA)
	out = append(out, logs.String())
	for _, s := range out {
		if strings.Contains(s, "key-a") || strings.Contains(s, fmt.Sprintf("%x", []byte(keyA))[:16]) {
			t.Fatalf("secret printed: %s", s)
		}
	}
}
