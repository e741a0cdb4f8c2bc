package dbrouter

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/regiondb/regiondb/dbrouter/memcachestore"
	"github.com/regiondb/regiondb/internal/testserver"
)

// TestSharedQueryReadsAfterWait checks what queryShared relies on: in the
// one statement "wait for p, then read the applied position", MariaDB
// evaluates the select list left to right, so the position read includes
// p when the wait succeeded, though p was applied during the wait. The
// control reads the position before the wait and must miss p.
func TestSharedQueryReadsAfterWait(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	d, err := newDialect(DialectMariaDB, "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sql.Open("mysql", cfg.Writer.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := sql.Open("mysql", cfg.Readers[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := ctxT(t)
	for _, tc := range []struct {
		name    string
		control bool
	}{{"wait-then-read", false}, {"control-read-then-wait", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Stall(ctx, "r1"); err != nil {
				t.Fatal(err)
			}
			resumed := false
			defer func() {
				if !resumed {
					s.Resume(ctx, "r1")
				}
			}()
			conn, err := w.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "REPLACE INTO kv (k, v) VALUES ('shared-query', ?)", time.Now().UnixNano()); err != nil {
				t.Fatal(err)
			}
			var gtid string
			if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&gtid); err != nil {
				t.Fatal(err)
			}
			p, err := parseMariaDBGTIDList(gtid)
			if err != nil {
				t.Fatal(err)
			}
			wait := d.waitQuery(p, 10*time.Second)
			pos := strings.TrimPrefix(d.readerQuery(), "SELECT ")
			q := wait + ", " + pos
			if tc.control {
				q = "SELECT " + pos + ", " + strings.TrimPrefix(wait, "SELECT ")
			}
			type result struct {
				pos string
				err error
			}
			done := make(chan result, 1)
			go func() {
				var a, b sql.NullString
				err := r.QueryRowContext(ctx, q).Scan(&a, &b)
				if tc.control {
					a, b = b, a // the position came first
				}
				done <- result{b.String, err}
			}()
			// Resume r1 once the statement waits on the server.
			admin, err := sql.Open("mysql", s.AdminDSN("r1"))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			waitFor(t, 10*time.Second, "the statement to wait on r1", func() bool {
				var n int
				err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "+
					"WHERE INFO LIKE '%MASTER_GTID_WAIT%' AND ID <> CONNECTION_ID()").Scan(&n)
				return err == nil && n > 0
			})
			if err := s.Resume(ctx, "r1"); err != nil {
				t.Fatal(err)
			}
			resumed = true
			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			got, err := parseMariaDBGTIDList(res.pos)
			if err != nil {
				t.Fatal(err)
			}
			if covered := got.covers(p); covered == tc.control {
				t.Errorf("position read %q, write %q: covered = %v, want %v", res.pos, gtid, covered, !tc.control)
			}
		})
	}
}

// TestWatermarkStoreHung points the routers' store at a memcached that
// accepts connections and never answers (a hung server, which the stack
// cannot make), with a client timeout (1 s) far over the reads' wait bound
// (2 PollIntervals, 200 ms here): the monitors give up on a store call
// after half a PollInterval and query the reader themselves, so reads go to
// the writer no more often than with no store at all. The control calls the
// store without that limit, and its reads go to the writer.
func TestWatermarkStoreHung(t *testing.T) {
	s := testserver.Require(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var mu sync.Mutex // protects open
	var open []net.Conn
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			conns.Go(func() { io.Copy(io.Discard, c) }) // reads requests, answers none
		}
	})
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	}()
	mc := memcache.New(ln.Addr().String())
	mc.Timeout = time.Second
	defer mc.Close()
	run := func(t *testing.T, store WatermarkStore, unguarded bool) (toWriter float64) {
		t.Helper()
		var routers []*Router
		for range 4 {
			cfg := stackConfig(t, s, testserver.PrimaryRegion)
			cfg.Readers = cfg.Readers[:1] // r1 only
			cfg.Watermarks = store
			cfg.unguardedStore = unguarded
			// A read waits at least two polls, a store call gets half a
			// poll. With the default 20 ms, stalls of -race on a loaded
			// 2-core machine outlasted the 40 ms and sent reads to the
			// writer in bursts (0.107 without a store, 0.179 with the hung
			// one in 1 of 6 runs; 50 ms polls still failed 2 of 10): the
			// comparison measured the machine. With 100 ms polls and the
			// client timeout at 1 s (was 300 ms, so that the control still
			// waits out several bounds): 0.000, 0.000 and the control
			// 0.251 in 10 of 10 runs.
			cfg.PollInterval = 100 * time.Millisecond
			// The store serves the monitors' in-process waits: a read
			// that carries its own wait needs no monitor.
			cfg.DisableCombinedStatements = true
			routers = append(routers, openRouter(t, cfg))
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var reads, stale, errs atomic.Int64
		var wg sync.WaitGroup
		for i, rt := range routers {
			for g := range 5 {
				k := fmt.Sprintf("hung-%d-%d-%d", i, g, time.Now().UnixNano())
				wg.Go(func() {
					for v := int64(1); ctx.Err() == nil && reads.Load() < 300; v++ {
						rctx := NewContext(ctx)
						_, err := rt.ExecContext(rctx, "REPLACE INTO kv (k, v) VALUES (?, ?)", k, v)
						var got int64
						if err == nil {
							err = rt.QueryRowContext(rctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&got)
						}
						switch {
						case ctx.Err() != nil:
							return
						case err != nil:
							errs.Add(1)
						case got != v:
							stale.Add(1)
						}
						reads.Add(1)
					}
				})
			}
		}
		wg.Wait()
		var local, writer int64
		for _, rt := range routers {
			st := rt.Stats()
			local, writer = local+st.ReadsLocal, writer+st.ReadsWriter
			rt.Close()
		}
		toWriter = float64(writer) / float64(max(local+writer, 1))
		t.Logf("%d reads, %d stale, %d errors, %.3f to the writer", reads.Load(), stale.Load(), errs.Load(), toWriter)
		if reads.Load() < 300 {
			t.Fatalf("only %d reads in a minute", reads.Load())
		}
		if stale.Load()+errs.Load() > 0 {
			t.Errorf("%d stale reads, %d errors", stale.Load(), errs.Load())
		}
		return toWriter
	}
	var base, hung float64
	t.Run("no-store", func(t *testing.T) { base = run(t, nil, false) })
	t.Run("hung", func(t *testing.T) { hung = run(t, memcachestore.New(mc), false) })
	if hung > base+0.01 {
		t.Errorf("with a hung store %.3f of the reads went to the writer, without a store %.3f", hung, base)
	}
	t.Run("control-unguarded", func(t *testing.T) {
		// Until memcachestore's first call times out (1 s) and it
		// starts failing fast, the control's reads wait for the store.
		if c := run(t, memcachestore.New(mc), true); c < base+0.1 {
			t.Errorf("control: %.3f of the reads went to the writer with store calls on the monitor's goroutine (%.3f without a store); the test cannot see a hung store", c, base)
		}
	})
}

// unbudgeted is a memcachestore.Store whose budgeted claims ignore the
// budget (the control of TestSharedBudgetMemcached): only the holds space
// them.
type unbudgeted struct{ *memcachestore.Store }

func (s unbudgeted) ClaimBudget(ctx context.Context, key string, hold, _ time.Duration, _ int) (bool, time.Time, time.Time, error) {
	return s.Store.ClaimBudget(ctx, key, hold, hold, 1)
}

// TestSharedBudgetMemcached runs routers (processes of a fleet) with the
// stack's memcached as their WatermarkStore, reads waiting in process for
// their own writes, and counts the monitor queries r1 received (its
// Questions counter less the reads): the budget of ClaimBudgeter bounds
// them to one per PollInterval plus the burst (and the checks that went
// without the store), as the claims without a budget (ClaimUntil) do,
// while reads stay local (all but a few that a loaded machine delays past
// their wait bound) and see their writes. The control's store ignores the
// budget, and its reader gets more queries than the bound.
func TestSharedBudgetMemcached(t *testing.T) {
	s := testserver.Require(t)
	const routers, loops = 8, 3
	const dur, poll = 3 * time.Second, 20 * time.Millisecond
	admin, err := sql.Open("mysql", s.AdminDSN("r1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	mc := memcache.New(s.Memcached(testserver.PrimaryRegion))
	mc.Timeout = 100 * time.Millisecond
	defer mc.Close()
	run := func(t *testing.T, store func() WatermarkStore) (queries, fallbacks int64) {
		t.Helper()
		var rts []*Router
		for range routers {
			cfg := stackConfig(t, s, testserver.PrimaryRegion)
			cfg.Readers = cfg.Readers[:1]
			cfg.PollInterval = poll
			cfg.Watermarks = store()
			cfg.DisableCombinedStatements = true
			rts = append(rts, openRouter(t, cfg))
		}
		q0 := questions(t, admin)
		ctx, cancel := context.WithTimeout(t.Context(), dur)
		defer cancel()
		var stale, errs atomic.Int64
		var wg sync.WaitGroup
		for i, rt := range rts {
			for g := range loops {
				k := fmt.Sprintf("budget-%d-%d-%d", i, g, time.Now().UnixNano())
				wg.Go(func() {
					for v := int64(1); ; v++ {
						rctx := NewContext(ctx)
						_, err := rt.ExecContext(rctx, "REPLACE INTO kv (k, v) VALUES ('"+k+"', "+fmt.Sprint(v)+")")
						var got int64
						if err == nil {
							err = rt.QueryRowContext(rctx, "SELECT v FROM kv WHERE k = '"+k+"'").Scan(&got)
						}
						switch {
						case ctx.Err() != nil:
							return
						case err != nil:
							errs.Add(1)
						case got != v:
							stale.Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		var local, writer int64
		for _, rt := range rts {
			st := rt.Stats()
			local, writer, fallbacks = local+st.ReadsLocal, writer+st.ReadsWriter, fallbacks+st.StoreFallbacks
		}
		q1 := questions(t, admin)
		for _, rt := range rts {
			rt.Close()
		}
		queries = q1 - q0 - local - 1
		t.Logf("%d local reads, %d to the writer, %d stale, %d errors; r1 got %d monitor queries (%.0f/s), %d checks without the store",
			local, writer, stale.Load(), errs.Load(), queries, float64(queries)/dur.Seconds(), fallbacks)
		if local < 300 {
			t.Errorf("only %d local reads", local)
		}
		if stale.Load()+errs.Load() > 0 || float64(writer) > 0.05*float64(local+writer) {
			t.Errorf("%d stale reads, %d errors, %d of %d reads to the writer", stale.Load(), errs.Load(), writer, local+writer)
		}
		return queries, fallbacks
	}
	// One query per PollInterval, the burst, a background check per
	// router at start, and the odd query whose claim the timing of the
	// counters splits.
	limit := int64(dur/poll) + sharedBurst + routers + 10
	t.Run("budget", func(t *testing.T) {
		q, fb := run(t, func() WatermarkStore { return memcachestore.New(mc) })
		if q > limit+fb {
			t.Errorf("%d monitor queries in %v, want <= %d (+ %d checks without the store)", q, dur, limit, fb)
		}
		if fb > q/4 {
			t.Errorf("%d of %d checks went without the store", fb, q)
		}
	})
	t.Run("claim-until", func(t *testing.T) {
		q, fb := run(t, func() WatermarkStore { return claimUntilOnly{memcachestore.New(mc)} })
		if q > limit+fb {
			t.Errorf("%d monitor queries in %v, want <= %d (+ %d checks without the store)", q, dur, limit, fb)
		}
	})
	t.Run("control-no-budget", func(t *testing.T) {
		q, fb := run(t, func() WatermarkStore { return unbudgeted{memcachestore.New(mc)} })
		if q <= limit+fb {
			t.Errorf("control: %d monitor queries without a budget, within the bound %d: the test cannot see the budget", q, limit+fb)
		}
	})
}

// claimUntilOnly is a memcachestore.Store without ClaimBudget.
type claimUntilOnly struct{ s *memcachestore.Store }

func (c claimUntilOnly) Get(ctx context.Context, key string) (string, error) {
	return c.s.Get(ctx, key)
}
func (c claimUntilOnly) Set(ctx context.Context, key, v string, ttl time.Duration) error {
	return c.s.Set(ctx, key, v, ttl)
}
func (c claimUntilOnly) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return c.s.Claim(ctx, key, ttl)
}
func (c claimUntilOnly) ClaimUntil(ctx context.Context, key string, ttl time.Duration) (bool, time.Time, error) {
	return c.s.ClaimUntil(ctx, key, ttl)
}
