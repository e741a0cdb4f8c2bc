package memcachestore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	_ "github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

const outageDB = "regiondb_mcstore"

// swallowing is the naive control: a store that hides its failures and
// reports every claim as held by another process, as a careless
// implementation of "the store is down, let someone else poll" would.
type swallowing struct{ *Store }

func (s swallowing) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	won, _, err := s.ClaimUntil(ctx, key, ttl)
	return won, err
}

func (s swallowing) ClaimUntil(ctx context.Context, key string, ttl time.Duration) (bool, time.Time, error) {
	won, until, err := s.Store.ClaimUntil(ctx, key, ttl)
	if err != nil {
		return false, time.Now().Add(ttl), nil
	}
	return won, until, nil
}

func (s swallowing) ClaimBudget(ctx context.Context, key string, hold, interval time.Duration, burst int) (bool, time.Time, time.Time, error) {
	won, held, next, err := s.Store.ClaimBudget(ctx, key, hold, interval, burst)
	if err != nil {
		return false, time.Now().Add(hold), time.Now().Add(interval), nil
	}
	return won, held, next, nil
}

func (s swallowing) Get(ctx context.Context, key string) (string, error) {
	v, err := s.Store.Get(ctx, key)
	if err != nil {
		return "", nil
	}
	return v, nil
}

// counted counts the store calls that succeeded.
type counted struct {
	*Store
	ok *atomic.Int64
}

func (s counted) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	won, _, err := s.ClaimUntil(ctx, key, ttl)
	return won, err
}

func (s counted) ClaimUntil(ctx context.Context, key string, ttl time.Duration) (bool, time.Time, error) {
	won, until, err := s.Store.ClaimUntil(ctx, key, ttl)
	if err == nil {
		s.ok.Add(1)
	}
	return won, until, err
}

func (s counted) ClaimBudget(ctx context.Context, key string, hold, interval time.Duration, burst int) (bool, time.Time, time.Time, error) {
	won, held, next, err := s.Store.ClaimBudget(ctx, key, hold, interval, burst)
	if err == nil {
		s.ok.Add(1)
	}
	return won, held, next, err
}

// outcome counts what the loops of a phase saw.
type outcome struct {
	reads, stale, errs atomic.Int64
}

// TestMemcachedOutage runs four routers sharing the stack's real memcached
// under a write-then-read-back load, kills memcached mid-run, and checks
// that reads go on as without a store: every read back sees its write, no
// error, (almost) none sent to the writer, and the routers poll the reader
// themselves. The naive control, whose store swallows the failures, must
// send its reads to the writer after the same kill.
func TestMemcachedOutage(t *testing.T) {
	s := testserver.Require(t)
	setupOutageDB(t, s)
	for _, tc := range []struct {
		name    string
		control bool
	}{{"store", false}, {"control-swallowing", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			mc := memcache.New(s.Memcached(testserver.PrimaryRegion))
			mc.Timeout = 50 * time.Millisecond
			defer mc.Close()
			routers := make([]*dbrouter.Router, 4)
			var claimsOK atomic.Int64
			for i := range routers {
				var st dbrouter.WatermarkStore = counted{New(mc), &claimsOK}
				if tc.control {
					st = swallowing{New(mc)}
				}
				rt, err := dbrouter.Open(dbrouter.Config{
					Region: testserver.PrimaryRegion,
					Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", outageDB)},
					Readers: []dbrouter.Endpoint{
						{Name: "r1", DSN: s.DSN("r1", outageDB), Region: testserver.PrimaryRegion},
					},
					TokenKeys:  []dbrouter.TokenKey{{ID: 1, Secret: []byte("memcachestore-outage-key-0123456")}},
					Watermarks: st,
					MaxWait:    200 * time.Millisecond,
					// A read waits at least two polls for the monitor, and a
					// store call gets half a poll. With the default 20 ms,
					// the scheduling stalls of -race on a loaded 2-core
					// machine outlasted the 40 ms: reads went to the writer
					// in bursts (up to 0.18 of a phase, 4 of 12 runs over
					// 0.01), with memcached up as with it down. 50 ms polls
					// leave room for those stalls (0.000 in 12 of 12).
					PollInterval: 50 * time.Millisecond,
					// The store serves the monitors' in-process waits: a
					// read that carries its own wait needs no monitor.
					DisableCombinedStatements: true,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer rt.Close()
				routers[i] = rt
			}
			var phase atomic.Pointer[outcome]
			phase.Store(&outcome{})
			loadCtx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for i, rt := range routers {
				for g := range 5 {
					id := fmt.Sprintf("%s-%d-%d-%d", tc.name, i, g, time.Now().UnixNano())
					wg.Go(func() { outageLoop(loadCtx, rt, id, &phase) })
				}
			}
			defer func() {
				stop()
				wg.Wait()
			}()
			waitReads := func(o *outcome, n int64) {
				t.Helper()
				deadline := time.Now().Add(time.Minute)
				for o.reads.Load() < n {
					if time.Now().After(deadline) {
						t.Fatalf("only %d reads in a minute", o.reads.Load())
					}
					if err := sleepCtx(ctx, 20*time.Millisecond); err != nil { // polling a counter
						t.Fatal(err)
					}
				}
			}
			before := phase.Load()
			waitReads(before, 200)
			if err := s.Kill(ctx, "mc1"); err != nil {
				t.Fatal(err)
			}
			restarted := false
			defer func() {
				if !restarted {
					s.Start(context.Background(), "mc1")
				}
			}()
			s0 := sum(routers)
			during := &outcome{}
			phase.Store(during)
			waitReads(during, 300)
			s1 := sum(routers)
			reads := s1.ReadsLocal + s1.ReadsWriter - s0.ReadsLocal - s0.ReadsWriter
			toWriter := float64(s1.ReadsWriter-s0.ReadsWriter) / float64(max(reads, 1))
			t.Logf("store up: %d reads, %d stale, %d errors; memcached killed: %d reads, %d stale, %d errors, %.3f to the writer, %d monitor queries",
				before.reads.Load(), before.stale.Load(), before.errs.Load(),
				during.reads.Load(), during.stale.Load(), during.errs.Load(), toWriter, s1.MonitorQueries-s0.MonitorQueries)
			if n := before.stale.Load() + during.stale.Load(); n > 0 {
				t.Errorf("%d read backs missed their write", n)
			}
			if tc.control {
				if toWriter < 0.5 {
					t.Errorf("control: only %.3f of the reads went to the writer with a store that swallows failures; the test cannot see a store outage", toWriter)
				}
				return
			}
			if n := before.errs.Load() + during.errs.Load(); n > 0 {
				t.Errorf("%d loops failed", n)
			}
			if toWriter > 0.01 {
				t.Errorf("%.3f of the reads went to the writer with memcached down, want <= 0.01 (local tracking)", toWriter)
			}
			if s1.MonitorQueries == s0.MonitorQueries {
				t.Error("no monitor query with memcached down: nobody tracked the reader")
			}
			// memcached back: the routers share again once their
			// back-off has passed, and reads stay correct.
			if err := s.Start(ctx, "mc1"); err != nil {
				t.Fatal(err)
			}
			restarted = true
			ok0 := claimsOK.Load()
			after := &outcome{}
			phase.Store(after)
			deadline := time.Now().Add(30 * time.Second)
			for claimsOK.Load() == ok0 {
				if time.Now().After(deadline) {
					t.Fatal("no claim succeeded in 30 s after memcached came back")
				}
				if err := sleepCtx(ctx, 20*time.Millisecond); err != nil { // polling a counter
					t.Fatal(err)
				}
			}
			waitReads(after, after.reads.Load()+100)
			if n := after.stale.Load() + after.errs.Load(); n > 0 {
				t.Errorf("after memcached came back: %d stale reads and errors", n)
			}
		})
	}
}

func outageLoop(ctx context.Context, rt *dbrouter.Router, id string, phase *atomic.Pointer[outcome]) {
	for v := int64(1); ctx.Err() == nil; v++ {
		sctx := dbrouter.NewContext(ctx)
		_, err := rt.ExecContext(sctx, "REPLACE INTO kv (k, v) VALUES (?, ?)", id, v)
		var got int64
		if err == nil {
			err = rt.QueryRowContext(sctx, "SELECT v FROM kv WHERE k = ?", id).Scan(&got)
		}
		if ctx.Err() != nil {
			return
		}
		o := phase.Load()
		switch {
		case err != nil:
			o.errs.Add(1)
		case got != v:
			o.stale.Add(1)
		}
		o.reads.Add(1)
		if sleepCtx(ctx, 10*time.Millisecond) != nil {
			return
		}
	}
}

func sum(routers []*dbrouter.Router) dbrouter.Stats {
	var s dbrouter.Stats
	for _, rt := range routers {
		st := rt.Stats()
		s.ReadsLocal += st.ReadsLocal
		s.ReadsWriter += st.ReadsWriter
		s.MonitorQueries += st.MonitorQueries
	}
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func setupOutageDB(t *testing.T, s *testserver.Stack) {
	t.Helper()
	db, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + outageDB,
		"CREATE TABLE IF NOT EXISTS " + outageDB + ".kv (k VARCHAR(96) PRIMARY KEY, v BIGINT NOT NULL)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitReplicated(context.Background()); err != nil {
		t.Fatal(err)
	}
}
