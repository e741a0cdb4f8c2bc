package dbrouter

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// memWatermarks is an in-memory WatermarkStore, standing in for the
// memcached a fleet would share.
type memWatermarks struct {
	mu sync.Mutex // protects m
	m  map[string]memItem
	// gets, sets and claims count calls.
	gets, sets, claims int
}

type memItem struct {
	v   string
	exp time.Time
}

func newMemWatermarks() *memWatermarks { return &memWatermarks{m: map[string]memItem{}} }

func (s *memWatermarks) Get(_ context.Context, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	it, ok := s.m[key]
	if !ok || time.Now().After(it.exp) {
		return "", nil
	}
	return it.v, nil
}

func (s *memWatermarks) Set(_ context.Context, key, v string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets++
	s.m[key] = memItem{v: v, exp: time.Now().Add(ttl)}
	return nil
}

func (s *memWatermarks) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	won, _, err := s.claimUntil(ctx, key, ttl)
	return won, err
}

// deadlineWatermarks is a memWatermarks that also reports the claims'
// expiry (a ClaimDeadliner, as memcachestore.Store is).
type deadlineWatermarks struct{ *memWatermarks }

func (s deadlineWatermarks) ClaimUntil(ctx context.Context, key string, ttl time.Duration) (bool, time.Time, error) {
	return s.claimUntil(ctx, key, ttl)
}

var (
	_ WatermarkStore = (*memWatermarks)(nil)
	_ ClaimDeadliner = deadlineWatermarks{}
)

func (s *memWatermarks) claimUntil(_ context.Context, key string, ttl time.Duration) (bool, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims++
	if it, ok := s.m[key]; ok && time.Now().Before(it.exp) {
		return false, it.exp, nil
	}
	s.m[key] = memItem{v: "1", exp: time.Now().Add(ttl)}
	return true, s.m[key].exp, nil
}

// questions returns the server's Questions counter (statements received).
func questions(t testing.TB, db *sql.DB) int64 {
	t.Helper()
	var name string
	var n int64
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Questions'").Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMonitorLoadManyRouters runs many routers at once (standing in for the
// processes of a fleet) against one reader, each doing write-then-read
// requests as fast as it can, and counts the queries the monitors send to
// the reader, both with the routers' own counters and with the reader's
// Questions status counter. With a shared WatermarkStore the fleet sends
// at most about one query per PollInterval (+ one check per
// MonitorInterval) in total, whatever the number of routers; without one,
// each router polls for itself.
func TestMonitorLoadManyRouters(t *testing.T) {
	s := testserver.Require(t)
	const routers = 40
	const dur = 3 * time.Second
	const poll = 20 * time.Millisecond
	admin, err := sql.Open("mysql", s.AdminDSN("r1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	var fallbacks int64 // checks without the store, in the last run
	run := func(t *testing.T, store WatermarkStore) (monitor, server int64, reads int64) {
		cfg := stackConfig(t, s, testserver.PrimaryRegion)
		cfg.Readers = cfg.Readers[:1] // r1 only
		cfg.PollInterval = poll
		cfg.Watermarks = store
		// The monitors' demand-driven waits are what is measured: reads
		// that carry their own guard (the default) send them none.
		cfg.DisableCombinedStatements = true
		rts := make([]*Router, routers)
		for i := range rts {
			rts[i] = openRouter(t, cfg)
		}
		q0 := questions(t, admin)
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var violations int
		for i, rt := range rts {
			k := fmt.Sprintf("load-%d-%d", i, time.Now().UnixNano())
			wg.Go(func() {
				for n := int64(1); ctx.Err() == nil; n++ {
					rctx := NewContext(ctx)
					if _, err := rt.ExecContext(rctx, "REPLACE INTO kv (k, v) VALUES ('"+k+"', "+fmt.Sprint(n)+")"); err != nil {
						return
					}
					var v int64
					if err := rt.QueryRowContext(rctx, "SELECT v FROM kv WHERE k = '"+k+"'").Scan(&v); err != nil {
						return
					}
					if v != n {
						mu.Lock()
						violations++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		fallbacks = 0
		for _, rt := range rts {
			st := rt.Stats()
			monitor += st.MonitorQueries
			reads += st.ReadsLocal
			fallbacks += st.StoreFallbacks
		}
		q1 := questions(t, admin)
		for _, rt := range rts {
			rt.Close()
		}
		if violations > 0 {
			t.Errorf("%d reads missed their own write", violations)
		}
		// Questions counts the reads served, the monitors' queries and
		// the one SHOW STATUS above.
		server = q1 - q0 - reads - 1
		t.Logf("%d routers, %v: %d local reads, monitor queries %d (router counters) / %d (server's Questions minus reads) = %.0f/s",
			routers, dur, reads, monitor, server, float64(server)/dur.Seconds())
		return monitor, server, reads
	}

	var shared, own int64
	// Both kinds of store: one that reports its claims' expiry
	// (ClaimDeadliner) and one with the plain Claim only.
	for _, kind := range []string{"shared", "shared-claim-only"} {
		t.Run(kind, func(t *testing.T) {
			store := newMemWatermarks()
			var ws WatermarkStore = deadlineWatermarks{store}
			if kind == "shared-claim-only" {
				ws = store
			}
			monitor, server, reads := run(t, ws)
			shared = max(shared, server)
			if reads < 300 { // enough demand to matter; throughput itself is not what is tested
				t.Errorf("only %d local reads", reads)
			}
			// The two counters are read at different instants: each
			// router's monitor may have one query in flight in between.
			if d := server - monitor; d < -routers || d > routers {
				t.Errorf("server saw %d monitor queries, routers counted %d", server, monitor)
			}
			// One query per PollInterval for the fleet, one background
			// check per MonitorInterval, and the odd query of a claim that
			// expired while its wait ran.
			limit := int64(dur/poll) + 10
			if server > limit+fallbacks {
				t.Errorf("%d monitor queries in %v with a shared store, want <= %d (+ %d checks without the store)", server, dur, limit, fallbacks)
			}
			// The in-memory store never fails; a check without it is one
			// whose call waited past half a PollInterval on a loaded machine.
			if fallbacks > server/4 {
				t.Errorf("%d of %d checks went without the store", fallbacks, server)
			}
			t.Logf("store: %d gets, %d sets, %d claims", store.gets, store.sets, store.claims)
		})
	}
	t.Run("per-process", func(t *testing.T) {
		_, own, _ = run(t, nil)
	})
	if own <= shared {
		t.Errorf("per-process monitors sent %d queries, shared %d: sharing saved nothing", own, shared)
	}
}
