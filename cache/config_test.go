package cache

import (
	"errors"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

func TestConfigNormalize(t *testing.T) {
	mc, other := memcache.New("127.0.0.1:1"), memcache.New("127.0.0.1:2")
	tests := []struct {
		name      string
		cfg       Config
		wantField string
		check     func(t *testing.T, c Config)
	}{
		{name: "zero plus client is the default", cfg: Config{Client: mc}, check: func(t *testing.T, c Config) {
			if c.TTL != DefaultTTL || c.TTLJitter != DefaultTTL/10 || c.StaleTTL != DefaultStaleTTL ||
				c.LeaseWait != DefaultLeaseWait || c.MaxItemSize != DefaultMaxItemSize || c.Region != "local" ||
				c.NegativeTTL != 0 || c.BreakerThreshold != DefaultBreakerThreshold {
				t.Fatalf("defaults not applied: %+v", c)
			}
		}},
		{name: "negative jitter and stale disable them", cfg: Config{Client: mc, TTLJitter: -1, StaleTTL: -1},
			check: func(t *testing.T, c Config) {
				if c.TTLJitter != 0 || c.StaleTTL != 0 {
					t.Fatalf("got jitter %v stale %v", c.TTLJitter, c.StaleTTL)
				}
			}},
		{name: "remote name defaulted", cfg: Config{Client: mc, Remotes: []Region{{Client: other}}},
			check: func(t *testing.T, c Config) {
				if c.Remotes[0].Name != "remote0" {
					t.Fatalf("name %q", c.Remotes[0].Name)
				}
			}},
		{name: "no client", cfg: Config{}, wantField: "Client"},
		{name: "nil remote client", cfg: Config{Client: mc, Remotes: []Region{{Name: "x"}}}, wantField: "Remotes[0].Client"},
		{name: "remote is local", cfg: Config{Client: mc, Remotes: []Region{{Client: mc}}}, wantField: "Remotes[0].Client"},
		{name: "negative TTL", cfg: Config{Client: mc, TTL: -time.Second}, wantField: "TTL"},
		{name: "jitter above TTL", cfg: Config{Client: mc, TTL: time.Second, TTLJitter: time.Second}, wantField: "TTLJitter"},
		{name: "negative NegativeTTL", cfg: Config{Client: mc, NegativeTTL: -1}, wantField: "NegativeTTL"},
		{name: "negative MaxItemSize", cfg: Config{Client: mc, MaxItemSize: -1}, wantField: "MaxItemSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.normalize()
			if tt.wantField != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != tt.wantField || !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("error %v, want a *ConfigError for %s matching ErrInvalidConfig", err, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

func TestExpiry(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int32
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {time.Hour, 3600}} {
		if got := expiry(tc.d); got != tc.want {
			t.Errorf("expiry(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
	if got := expiry(40 * 24 * time.Hour); int64(got) < time.Now().Unix() {
		t.Errorf("expiry beyond 30 days = %d, want an absolute time", got)
	}
}

func TestTTLJitter(t *testing.T) {
	c := &Cache{cfg: Config{TTL: time.Minute, TTLJitter: 6 * time.Second}}
	seen := map[bool]bool{}
	for range 1000 {
		d := c.ttl()
		if d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("ttl() = %v, outside TTL ± jitter", d)
		}
		seen[d > time.Minute] = true
	}
	if len(seen) != 2 {
		t.Fatal("jitter never went both ways")
	}
	c.cfg.TTLJitter = 0
	if d := c.ttl(); d != time.Minute {
		t.Fatalf("no jitter: ttl() = %v", d)
	}
}
