package dbrouter

import (
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

func TestPoolConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   PoolConfig
		want PoolConfig
	}{
		{"zero means defaults", PoolConfig{},
			PoolConfig{DefaultMaxOpenConns, DefaultMaxIdleConns, DefaultConnMaxLifetime, DefaultConnMaxIdleTime}},
		{"negative means unlimited or none", PoolConfig{-1, -1, -1, -1}, PoolConfig{0, -1, 0, 0}},
		{"default idle capped by a small max open", PoolConfig{MaxOpenConns: 1}, PoolConfig{1, 1, DefaultConnMaxLifetime, DefaultConnMaxIdleTime}},
		{"explicit", PoolConfig{50, 10, time.Hour, time.Second}, PoolConfig{50, 10, time.Hour, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.withDefaults(); got != tt.want {
				t.Fatalf("withDefaults(%+v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	if err := (PoolConfig{MaxOpenConns: 2, MaxIdleConns: 3}).validate("WriterPool"); err == nil {
		t.Fatal("MaxIdleConns > MaxOpenConns accepted")
	} else if got := err.Error(); got != "dbrouter: invalid Config.WriterPool: MaxIdleConns 3 exceeds MaxOpenConns 2" {
		t.Fatalf("error %q", got)
	}
	if err := (PoolConfig{}).validate("ReaderPool"); err != nil {
		t.Fatal(err)
	}
}

func TestPoolConfigApply(t *testing.T) {
	db := sql.OpenDB(&failCountingDriver{})
	defer db.Close()
	PoolConfig{MaxOpenConns: 7}.apply(db)
	if got := db.Stats().MaxOpenConnections; got != 7 {
		t.Fatalf("MaxOpenConnections = %d, want 7", got)
	}
	PoolConfig{}.apply(db)
	if got := db.Stats().MaxOpenConnections; got != DefaultMaxOpenConns {
		t.Fatalf("MaxOpenConnections = %d, want %d", got, DefaultMaxOpenConns)
	}
}

// TestPoolsDoNotChurn runs a steady load of concurrent reads and writes
// through a router with default pools and checks, on the router's own count
// of physical connections opened, that the pools stop opening connections
// once they have grown to what the load uses. The control is a pool with
// database/sql's default of 2 idle connections, which keeps reopening.
func TestPoolsDoNotChurn(t *testing.T) {
	s := testserver.Require(t)
	ctx := ctxT(t)
	run := func(pool PoolConfig) int64 {
		cfg := stackConfig(t, s, testserver.PrimaryRegion)
		cfg.WriterPool, cfg.ReaderPool = pool, pool
		rt := openRouter(t, cfg)
		k := key(t)
		if _, err := rt.ExecContext(ctx, "REPLACE INTO kv VALUES (?, 1)", k); err != nil {
			t.Fatal(err)
		}
		waitReplicated(t, s) // the loads' reads are eventual: the row must be on the readers
		load := func(rounds int) {
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range rounds {
						if (g+i)%4 == 0 {
							if _, err := rt.ExecContext(ctx, "UPDATE kv SET v = v + 1 WHERE k = ?", k); err != nil {
								t.Error(err)
								return
							}
							continue
						}
						var v int64
						if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		}
		load(20) // warm up: the pools grow to what the load uses
		before := rt.Stats().ConnectionsOpened
		load(100)
		return rt.Stats().ConnectionsOpened - before
	}
	steady := run(PoolConfig{})
	churn := run(PoolConfig{MaxIdleConns: 2})
	t.Logf("connections opened under steady load: defaults %d, MaxIdleConns=2 %d", steady, churn)
	// Growth past the warm-up is bounded by the load's concurrency (8
	// goroutines), never by its length.
	if steady > 8 {
		t.Errorf("default pools opened %d connections under steady load, want at most 8", steady)
	}
	if churn <= 4*steady || churn <= 8 {
		t.Errorf("control: MaxIdleConns=2 opened %d, not more than the defaults' %d: the test cannot see churn", churn, steady)
	}
}
