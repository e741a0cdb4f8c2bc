package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/internal/testserver"
)

// RegionConfig configures [CrossRegion].
type RegionConfig struct {
	// Rounds is the number of write+invalidate rounds. If zero, 10.
	Rounds int
	// Gap is the time between rounds. If zero, 50 ms.
	Gap time.Duration
	// Bound is the documented bound after which no region may serve a value
	// older than an invalidated write. If zero, 100 ms.
	Bound time.Duration
	// Readers is the number of readers per region and arm. If zero, 3.
	Readers int
	// Consistency, Write and Load, if set, replace the harness's GTID
	// stand-in: one Consistency and Load per region (index 0
	// ap-northeast-1, 1 us-east-1; e.g. a *dbrouter.Router per region),
	// and Write(ctx, region, id, v) writing through region's router and
	// returning the context that carries the write's position.
	Consistency [2]cache.Consistency
	Write       func(ctx context.Context, region int, id, v int64) (context.Context, error)
	Load        [2]func(ctx context.Context, id int64) (int64, error)
}

// RegionResult is what [CrossRegion] measured.
type RegionResult struct {
	Rounds int   `json:"rounds"`
	Reads  int64 `json:"reads"`
	// ConvergenceMs is, over rounds, the longest time from Invalidate's
	// return until the other region served no old value (the end of its
	// last stale read); 0 if it never served one.
	ConvergenceMs float64 `json:"convergence_ms"`
	BoundMs       float64 `json:"bound_ms"`
	// A read is stale if it returned version v and started after the
	// invalidation of version v+1 returned (in either region): the first
	// invalidation newer than its value. StaleWithinBound counts stale reads
	// that started within Bound after that invalidation returned;
	// StaleAfterBound those after (must be 0).
	StaleWithinBound int64 `json:"stale_within_bound"`
	StaleAfterBound  int64 `json:"stale_after_bound"`
	// Control: per-region plain gomemcache cache-aside, deleting only in the
	// writing region, read on the same schedule (each reader reads both).
	ReadsPlain           int64 `json:"reads_plain"`
	StaleReadsPlain      int64 `json:"stale_reads_plain"`
	StaleAfterBoundPlain int64 `json:"stale_after_bound_plain"`
}

type readRec struct {
	start, end time.Time
	v          int64
	remote     bool // read in the region that did not invalidate synchronously
}

// CrossRegion runs one cache per region (ap-northeast-1 on mc1 reading r1,
// us-east-1 on mc2 reading r2 behind its 150 ms link), each with the other's
// cluster in Remotes, writes the row on the writer and invalidates through
// alternating regions while readers in both regions keep reading, and
// measures when the other region stops serving the old value.
func CrossRegion(ctx context.Context, e *Env, cfg RegionConfig) (RegionResult, error) {
	if cfg.Rounds == 0 {
		cfg.Rounds = 10
	}
	if cfg.Gap == 0 {
		cfg.Gap = 50 * time.Millisecond
	}
	if cfg.Bound == 0 {
		cfg.Bound = 100 * time.Millisecond
	}
	if cfg.Readers == 0 {
		cfg.Readers = 3
	}
	res := RegionResult{Rounds: cfg.Rounds, BoundMs: float64(cfg.Bound.Microseconds()) / 1000}
	id := e.id(2)
	if err := e.Seed(ctx, id, 1); err != nil {
		return res, err
	}
	g := &GTIDConsistency{Writer: e.Writer}
	type region struct {
		name    string
		mc      *memcache.Client
		replica *sql.DB
		c       *cache.Cache
		cons    cache.Consistency
		load    func(ctx context.Context, id int64) (int64, error)
	}
	regions := []*region{
		{name: testserver.PrimaryRegion, mc: Client(e.MC1), replica: e.R1},
		{name: testserver.SecondaryRegion, mc: Client(e.MC2), replica: e.R2},
	}
	write := func(ctx context.Context, _ int, id, v int64) (context.Context, error) { return g.Write(ctx, id, v) }
	if cfg.Write != nil {
		write = cfg.Write
	}
	for i, r := range regions {
		r.load = func(ctx context.Context, id int64) (int64, error) { return g.Read(ctx, r.replica, id) }
		r.cons = g
		if cfg.Consistency[i] != nil {
			r.cons, r.load = cfg.Consistency[i], cfg.Load[i]
		}
	}
	for i, r := range regions {
		defer r.mc.Close()
		other := regions[1-i]
		c, err := cache.New(cache.Config{
			Client: r.mc, Region: r.name, Consistency: r.cons, TTL: time.Minute,
			Remotes: []cache.Region{{Name: other.name, Client: other.mc}},
		})
		if err != nil {
			return res, err
		}
		defer c.Close()
		r.c = c
	}
	run := e.run("region")
	key, keyPlain := e.key(run+"ours"), e.key(run+"plain")

	var (
		mu       sync.Mutex // protects recs, plain, invAt, firstErr
		recs     []readRec
		invAt    = map[int64]time.Time{1: {}}
		invBy    = map[int64]int{}
		firstErr error
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	// staleSince returns when the first invalidation newer than v returned,
	// if one had returned by t: a read that started at t and returned v is
	// then stale, since that moment.
	staleSince := func(v int64, t time.Time) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		at, ok := invAt[v+1]
		if !ok || at.IsZero() || at.After(t) {
			return time.Time{}, false
		}
		return at, true
	}
	type plainRec struct {
		start time.Time
		v     int64
	}
	var plain []plainRec
	for ri, r := range regions {
		for range cfg.Readers {
			// One reader reads both arms in turn: the control runs on the
			// same schedule as the cache.
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					b, err := r.c.Get(ctx, key, func(ctx context.Context) ([]byte, error) {
						v, err := r.load(ctx, id)
						return []byte(strconv.FormatInt(v, 10)), err
					})
					if err != nil {
						fail(err)
						return
					}
					v, _ := strconv.ParseInt(string(b), 10, 64)
					end := time.Now()
					pv, err := plainGet(ctx, r.mc, keyPlain, r.replica, id)
					if err != nil {
						fail(err)
						return
					}
					mu.Lock()
					recs = append(recs, readRec{start: start, end: end, v: v, remote: ri == 1})
					plain = append(plain, plainRec{end, pv})
					mu.Unlock()
				}
			})
		}
	}
	for v := int64(2); v <= int64(cfg.Rounds)+1; v++ {
		if err := sleepCtx(ctx, cfg.Gap); err != nil {
			fail(err)
			break
		}
		by := int(v % 2) // alternate the invalidating region
		wctx, err := write(ctx, by, id, v)
		if err != nil {
			fail(fmt.Errorf("write: %w", err))
			break
		}
		if err := regions[by].c.Invalidate(wctx, key); err != nil {
			fail(err)
		}
		// The plain control deletes in the writing region only.
		if err := regions[by].mc.Delete(keyPlain); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			fail(err)
		}
		mu.Lock()
		invAt[v], invBy[v] = time.Now(), by
		mu.Unlock()
	}
	if err := sleepCtx(ctx, cfg.Bound+cfg.Gap); err != nil {
		fail(err)
	}
	close(stop)
	wg.Wait()

	var conv time.Duration
	for _, rec := range recs {
		res.Reads++
		at, stale := staleSince(rec.v, rec.start)
		if !stale {
			continue
		}
		if rec.start.Sub(at) <= cfg.Bound {
			res.StaleWithinBound++
		} else {
			res.StaleAfterBound++
		}
		conv = max(conv, rec.end.Sub(at))
	}
	for _, p := range plain {
		res.ReadsPlain++
		at, stale := staleSince(p.v, p.start)
		if !stale {
			continue
		}
		res.StaleReadsPlain++
		if p.start.Sub(at) > cfg.Bound {
			res.StaleAfterBoundPlain++
		}
	}
	res.ConvergenceMs = float64(conv.Microseconds()) / 1000
	return res, firstErr
}

func plainGet(ctx context.Context, mc *memcache.Client, key string, replica *sql.DB, id int64) (int64, error) {
	it, err := mc.Get(key)
	if err == nil {
		return strconv.ParseInt(string(it.Value), 10, 64)
	}
	if !errors.Is(err, memcache.ErrCacheMiss) {
		return 0, err
	}
	v, err := readV(ctx, replica, id)
	if err != nil {
		return 0, err
	}
	return v, mc.Set(&memcache.Item{Key: key, Value: []byte(strconv.FormatInt(v, 10)), Expiration: 60})
}
