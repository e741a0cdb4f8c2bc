package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	"go.opentelemetry.io/otel/sdk/metric"
)

// StaleConfig configures [StaleRefill].
type StaleConfig struct {
	// Writes is the number of write+invalidate rounds. If zero, 8.
	Writes int
	// Readers is the number of concurrent readers per arm. If zero, 8.
	Readers int
	// Gap is the time between writes. If zero, 40 ms.
	Gap time.Duration
	// NoFallback makes the GTID stand-in's position-bound reads use the
	// stalled replica instead of the writer (their fills must be refused).
	NoFallback bool
	// Consistency, if set, replaces the harness's GTID stand-in (for
	// instance with a *dbrouter.Router); Load then must honour it.
	Consistency cache.Consistency
	// Write and Load, when Consistency is set, write the row (returning the
	// context carrying the write's position) and read it through the router.
	Write func(ctx context.Context, id, v int64) (context.Context, error)
	Load  func(ctx context.Context, id int64) (int64, error)
}

// StaleResult is what [StaleRefill] measured. A read is stale if it
// started after the invalidation of version N returned and returned a
// version below N.
type StaleResult struct {
	// InFlight* come from the exact interleaving: a reader loads the old row
	// from the stalled replica, the write and its invalidation happen, then
	// the reader fills; 20 reads follow in each arm.
	InFlightStale      int64 `json:"in_flight_stale_reads"`
	InFlightStalePlain int64 `json:"in_flight_stale_reads_plain"`

	Reads      int64 `json:"reads"`
	StaleReads int64 `json:"stale_reads"`
	// StaleHits counts the stale reads (in-flight ones included) during
	// which no load ran in the process: served from memcached. Without a
	// fallback to the writer a load can only return the stale replica's
	// row; what the cache must never do is keep it.
	StaleHits       int64 `json:"stale_hits"`
	ReadsPlain      int64 `json:"reads_plain"`
	StaleReadsPlain int64 `json:"stale_reads_plain"`
	FillsRefused    int64 `json:"fills_refused"`
	Loads           int64 `json:"loads"`
	WriterReads     int64 `json:"writer_reads"`
}

// StaleRefill forces the stale-refill race against a really lagging replica:
// it stalls r1's apply thread, then writes the row several times on the
// writer while readers keep reading it through two caches side by side:
//   - the cache package, with Consistency, loading from r1;
//   - a plain gomemcache cache-aside (Get, on miss read r1 and Set; Delete
//     after each write), the control, which must go stale.
//
// r1 is resumed before it returns.
func StaleRefill(ctx context.Context, e *Env, cfg StaleConfig) (res StaleResult, err error) {
	if cfg.Writes == 0 {
		cfg.Writes = 8
	}
	if cfg.Readers == 0 {
		cfg.Readers = 8
	}
	if cfg.Gap == 0 {
		cfg.Gap = 40 * time.Millisecond
	}
	id := e.id(1)
	if err := e.Seed(ctx, id, 1); err != nil {
		return res, err
	}
	if err := e.Seed(ctx, e.id(3), 1); err != nil {
		return res, err
	}
	g := &GTIDConsistency{Writer: e.Writer, NoFallback: cfg.NoFallback}
	cons, write, load := cache.Consistency(g), g.Write, func(ctx context.Context, id int64) (int64, error) {
		return g.Read(ctx, e.R1, id)
	}
	if cfg.Consistency != nil {
		cons, write, load = cfg.Consistency, cfg.Write, cfg.Load
	}
	reader := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	mc := Client(e.MC1)
	defer mc.Close()
	c, err := cache.New(cache.Config{Client: mc, Consistency: cons, MeterProvider: mp, TTL: time.Minute})
	if err != nil {
		return res, err
	}
	defer c.Close()
	run := e.run("stale")
	keyOurs, keyPlain := e.key(run+"ours"), e.key(run+"plain")

	if err := e.Stack.Stall(ctx, "r1"); err != nil {
		return res, err
	}
	defer func() {
		if rerr := e.Stack.Resume(context.Background(), "r1"); rerr != nil && err == nil {
			err = rerr
		}
	}()

	if err := inFlight(ctx, e, c, mc, run, write, load, &res); err != nil {
		return res, err
	}

	var (
		loadCalls   atomic.Int64 // loads of keyOurs in this process
		invalidated atomic.Int64 // newest version whose invalidation returned
		stop        = make(chan struct{})
		wg          sync.WaitGroup
		errMu       sync.Mutex // protects firstErr
		firstErr    error
	)
	invalidated.Store(1)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	readOurs := func() (int64, error) {
		b, err := c.Get(ctx, keyOurs, func(ctx context.Context) ([]byte, error) {
			loadCalls.Add(1)
			v, err := load(ctx, id)
			return []byte(strconv.FormatInt(v, 10)), err
		})
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(string(b), 10, 64)
	}
	readPlain := func() (int64, error) {
		it, err := mc.Get(keyPlain)
		if err == nil {
			return strconv.ParseInt(string(it.Value), 10, 64)
		}
		if !errors.Is(err, memcache.ErrCacheMiss) {
			return 0, err
		}
		v, err := readV(ctx, e.R1, id)
		if err != nil {
			return 0, err
		}
		err = mc.Set(&memcache.Item{Key: keyPlain, Value: []byte(strconv.FormatInt(v, 10)), Expiration: 60})
		return v, err
	}
	// One reader reads both arms in turn, so the control runs on the same
	// schedule as the cache (a read is stale if it started after the
	// invalidation of a newer version returned).
	readBoth := func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, arm := range []struct {
				read                func() (int64, error)
				reads, stales, hits *int64
			}{{readOurs, &res.Reads, &res.StaleReads, &res.StaleHits}, {readPlain, &res.ReadsPlain, &res.StaleReadsPlain, nil}} {
				floor, calls := invalidated.Load(), loadCalls.Load()
				v, err := arm.read()
				if err != nil {
					fail(err)
					return
				}
				atomic.AddInt64(arm.reads, 1)
				if v < floor {
					atomic.AddInt64(arm.stales, 1)
					if arm.hits != nil && loadCalls.Load() == calls {
						atomic.AddInt64(arm.hits, 1)
					}
				}
			}
		}
	}
	for range cfg.Readers {
		wg.Go(readBoth)
	}
	for v := int64(2); v <= int64(cfg.Writes)+1; v++ {
		if err := sleepCtx(ctx, cfg.Gap); err != nil {
			fail(err)
			break
		}
		wctx, err := write(ctx, id, v)
		if err != nil {
			fail(fmt.Errorf("write: %w", err))
			break
		}
		if err := c.Invalidate(wctx, keyOurs); err != nil {
			fail(err)
		}
		if err := mc.Delete(keyPlain); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			fail(err)
		}
		invalidated.Store(v)
	}
	if err := sleepCtx(ctx, cfg.Gap); err != nil {
		fail(err)
	}
	close(stop)
	wg.Wait()
	res.FillsRefused = SumCounter(ctx, reader, "regiondb.cache.fills.refused")
	res.Loads = SumCounter(ctx, reader, "regiondb.cache.loads")
	res.WriterReads = g.WriterReads.Load()
	res.StaleReads += res.InFlightStale
	res.StaleReadsPlain += res.InFlightStalePlain
	return res, firstErr
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inFlight runs the exact stale-refill interleaving once per arm on its own
// row (r1 is stalled): load old row, write + invalidate, fill, read 20 times.
func inFlight(ctx context.Context, e *Env, c *cache.Cache, mc *memcache.Client, run string,
	write func(context.Context, int64, int64) (context.Context, error),
	load func(context.Context, int64) (int64, error), res *StaleResult) error {
	id := e.id(3) // seeded with 1 before r1 was stalled
	keyOurs, keyPlain := e.key(run+"inflight:ours"), e.key(run+"inflight:plain")
	// r1 is stalled: it has the row at version 1.
	oldOnReplica := func(ctx context.Context) int64 {
		v, err := readV(ctx, e.R1, id)
		if err != nil {
			return -1
		}
		return v
	}
	loaded := make(chan struct{}, 2)
	proceed := make(chan struct{})
	var wg sync.WaitGroup
	var ourErr, plainErr error
	wg.Go(func() {
		_, ourErr = c.Get(ctx, keyOurs, func(ctx context.Context) ([]byte, error) {
			v := oldOnReplica(ctx)
			loaded <- struct{}{}
			<-proceed
			return []byte(strconv.FormatInt(v, 10)), nil
		})
	})
	wg.Go(func() {
		if _, err := mc.Get(keyPlain); !errors.Is(err, memcache.ErrCacheMiss) {
			plainErr = fmt.Errorf("plain: want a miss, got %v", err)
			loaded <- struct{}{}
			<-proceed
			return
		}
		v := oldOnReplica(ctx)
		loaded <- struct{}{}
		<-proceed
		plainErr = mc.Set(&memcache.Item{Key: keyPlain, Value: []byte(strconv.FormatInt(v, 10)), Expiration: 60})
	})
	<-loaded
	<-loaded
	wctx, err := write(ctx, id, 2)
	if err == nil {
		err = c.Invalidate(wctx, keyOurs)
	}
	if derr := mc.Delete(keyPlain); err == nil && derr != nil && !errors.Is(derr, memcache.ErrCacheMiss) {
		err = derr
	}
	close(proceed)
	wg.Wait()
	if err = errors.Join(err, ourErr, plainErr); err != nil {
		return err
	}
	for range 20 {
		loaded := false
		b, err := c.Get(ctx, keyOurs, func(ctx context.Context) ([]byte, error) {
			loaded = true
			v, err := load(ctx, id)
			return []byte(strconv.FormatInt(v, 10)), err
		})
		if err != nil {
			return err
		}
		if v, _ := strconv.ParseInt(string(b), 10, 64); v < 2 {
			res.InFlightStale++
			if !loaded {
				res.StaleHits++
			}
		}
		v, err := plainGet(ctx, mc, keyPlain, e.R1, id)
		if err != nil {
			return err
		}
		if v < 2 {
			res.InFlightStalePlain++
		}
	}
	return nil
}
