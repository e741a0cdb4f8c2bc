package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/internal/testserver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric"
)

// RYWConfig configures [RYWHits].
type RYWConfig struct {
	// Users is the number of concurrent users (one record each). If zero, 40.
	Users int
	// Rounds is the number of writes per user. If zero, 3.
	Rounds int
	// ReadsPerRound is the number of reads after each write. If zero, 3.
	ReadsPerRound int
	// ReadWithin bounds the delay from a write to its reads. If zero, 200 ms.
	ReadWithin time.Duration
	// InvalidationDelay bounds the delay of the remote invalidation. If
	// zero, 2 s.
	InvalidationDelay time.Duration
	// DropOneIn drops one remote invalidation in DropOneIn. If zero, 3.
	DropOneIn int
}

// RYWResult is what [RYWHits] measured. A read violates read-your-writes if
// it returns a version older than the user's last write.
type RYWResult struct {
	Reads      int64 `json:"reads"`
	Violations int64 `json:"violations"`
	// Remote invalidations delayed (0 to InvalidationDelay) and dropped.
	Delayed int64 `json:"remote_invalidations_delayed"`
	Dropped int64 `json:"remote_invalidations_dropped"`
	// Control: the same reads on the same schedule without the scope
	// (today's hits ignore it), which must see violations.
	ControlReads      int64 `json:"control_reads"`
	ControlViolations int64 `json:"control_violations"`
}

// RYWHits measures read-your-writes through a cache hit across regions:
// users write their record in ap-northeast-1 (invalidating its cache
// there), then read it through us-east-1's cache (mc2, loading from r2
// behind its 150 ms link) within ReadWithin, carrying their write's
// position as their scope (the token), while the invalidation of mc2 is
// delivered after 0 to InvalidationDelay or dropped. Each read is done
// twice at the same moment: first without the scope (the control), then
// with it.
func RYWHits(ctx context.Context, e *Env, cfg RYWConfig) (res RYWResult, err error) {
	if cfg.Users == 0 {
		cfg.Users = 40
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 3
	}
	if cfg.ReadsPerRound == 0 {
		cfg.ReadsPerRound = 3
	}
	if cfg.ReadWithin == 0 {
		cfg.ReadWithin = 200 * time.Millisecond
	}
	if cfg.InvalidationDelay == 0 {
		cfg.InvalidationDelay = 2 * time.Second
	}
	if cfg.DropOneIn == 0 {
		cfg.DropOneIn = 3
	}
	ids := make([]int64, cfg.Users)
	for u := range ids {
		ids[u] = e.id(int64(10 + u))
	}
	if err := e.seedAll(ctx, ids, 1); err != nil {
		return res, err
	}
	g := &GTIDConsistency{Writer: e.Writer}
	keys := []cache.Secret{cache.Secret("ryw-harness-key-0123456789")}
	open := func(addr, region string) (*cache.Cache, func(), error) {
		mc := Client(addr)
		c, err := cache.New(cache.Config{Client: mc, Region: region, Consistency: g, TTL: time.Minute, ItemKeys: keys})
		if err != nil {
			mc.Close()
			return nil, nil, err
		}
		return c, func() { c.Close(); mc.Close() }, nil
	}
	tokyo, closeTokyo, err := open(e.MC1, testserver.PrimaryRegion)
	if err != nil {
		return res, err
	}
	defer closeTokyo()
	virginia, closeVirginia, err := open(e.MC2, testserver.SecondaryRegion)
	if err != nil {
		return res, err
	}
	defer closeVirginia()
	// The late deliverer of Tokyo's invalidations to mc2.
	courier, closeCourier, err := open(e.MC2, testserver.SecondaryRegion)
	if err != nil {
		return res, err
	}
	defer closeCourier()

	var (
		wg, late sync.WaitGroup
		errMu    sync.Mutex // protects firstErr
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	load := func(id int64) cache.Loader {
		return func(ctx context.Context) ([]byte, error) {
			v, err := g.Read(ctx, e.R2, id)
			return []byte(strconv.FormatInt(v, 10)), err
		}
	}
	read := func(ctx context.Context, key string, id int64) (int64, error) {
		b, err := virginia.Get(ctx, key, load(id))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(string(b), 10, 64)
	}
	run := e.run("ryw")
	for u, id := range ids {
		key := e.key(run + strconv.Itoa(u))
		wg.Go(func() {
			if _, err := read(ctx, key, id); err != nil { // cache version 1 in us-east-1
				fail(err)
				return
			}
			for v := int64(2); v < int64(2+cfg.Rounds); v++ {
				wctx, err := g.Write(ctx, id, v)
				if err != nil {
					fail(fmt.Errorf("write: %w", err))
					return
				}
				if err := tokyo.Invalidate(wctx, key); err != nil {
					fail(err)
					return
				}
				if rand.IntN(cfg.DropOneIn) == 0 {
					atomic.AddInt64(&res.Dropped, 1)
				} else {
					atomic.AddInt64(&res.Delayed, 1)
					d := rand.N(cfg.InvalidationDelay + 1)
					late.Go(func() {
						if err := sleepCtx(ctx, d); err != nil {
							return
						}
						if err := courier.Invalidate(wctx, key); err != nil {
							fail(err)
						}
					})
				}
				// The user's next requests carry the write's position (their
				// token) to us-east-1.
				user := WithPosition(context.Background(), g.WrittenPosition(wctx))
				offsets := make([]time.Duration, cfg.ReadsPerRound)
				for i := range offsets {
					offsets[i] = rand.N(cfg.ReadWithin + 1)
				}
				slices.Sort(offsets)
				start := time.Now()
				for _, off := range offsets {
					if err := sleepCtx(ctx, time.Until(start.Add(off))); err != nil {
						fail(err)
						return
					}
					got, err := read(ctx, key, id) // control: no scope
					if err != nil {
						fail(err)
						return
					}
					atomic.AddInt64(&res.ControlReads, 1)
					if got < v {
						atomic.AddInt64(&res.ControlViolations, 1)
					}
					got, err = read(user, key, id)
					if err != nil {
						fail(err)
						return
					}
					atomic.AddInt64(&res.Reads, 1)
					if got < v {
						atomic.AddInt64(&res.Violations, 1)
					}
				}
			}
		})
	}
	wg.Wait()
	late.Wait()
	return res, firstErr
}

// seedAll sets every row of ids to v on the writer and waits until both
// replicas have them.
func (e *Env) seedAll(ctx context.Context, ids []int64, v int64) error {
	conn, err := e.Writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows := make([]string, len(ids))
	args := make([]any, 0, 2*len(ids))
	for i, id := range ids {
		rows[i] = "(?, ?)"
		args = append(args, id, v)
	}
	if _, err := conn.ExecContext(ctx, "REPLACE INTO kv (id, v) VALUES "+strings.Join(rows, ","), args...); err != nil {
		return err
	}
	var pos string
	if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&pos); err != nil {
		return err
	}
	return e.WaitReplicas(ctx, pos)
}

// LostConfig configures [InvalidationsLost].
type LostConfig struct {
	// Invalidations is the number of invalidations (distinct keys). If
	// zero, 1000.
	Invalidations int
	// Outage is how long mc2 is down; the invalidations are spread over it.
	// If zero, 5 s.
	Outage time.Duration
	// Deadline bounds the wait for delivery after the outage. If zero, 60 s.
	Deadline time.Duration
}

// LostResult is what [InvalidationsLost] measured.
type LostResult struct {
	Invalidations int     `json:"invalidations"`
	OutageMs      float64 `json:"outage_ms"`
	// DeliveredMs is the time from mc2's restart until every invalidation
	// was delivered.
	DeliveredMs float64 `json:"delivered_ms"`
	// Lost counts invalidations whose marker (with the write's position)
	// is not in mc2 after delivery, plus those the cache dropped.
	Lost    int   `json:"lost"`
	Dropped int64 `json:"dropped"`
	// LostControl: the same invalidations as plain gomemcache Deletes to
	// mc2 (no retry) that failed.
	LostControl int `json:"lost_control"`
}

// InvalidationsLost stops us-east-1's memcached (mc2) for Outage while
// ap-northeast-1's cache makes Invalidations invalidations of distinct keys,
// each with its own position, restarts mc2, waits until the cache reports
// them delivered, and then checks in mc2 that every key holds its marker
// with its position: the next fill there must observe it.
func InvalidationsLost(ctx context.Context, e *Env, cfg LostConfig) (res LostResult, err error) {
	if cfg.Invalidations == 0 {
		cfg.Invalidations = 1000
	}
	if cfg.Outage == 0 {
		cfg.Outage = 5 * time.Second
	}
	if cfg.Deadline == 0 {
		cfg.Deadline = 60 * time.Second
	}
	res.Invalidations = cfg.Invalidations
	g := &GTIDConsistency{}
	keys := []cache.Secret{cache.Secret("lost-harness-key-0123456789")}
	reader := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	mc1, remote, plain := Client(e.MC1), Client(e.MC2), Client(e.MC2)
	remote.Timeout, plain.Timeout = 100*time.Millisecond, 100*time.Millisecond
	defer mc1.Close()
	defer remote.Close()
	defer plain.Close()
	tokyo, err := cache.New(cache.Config{Client: mc1, Region: testserver.PrimaryRegion, Consistency: g, ItemKeys: keys,
		MeterProvider: mp, Remotes: []cache.Region{{Name: testserver.SecondaryRegion, Client: remote}}})
	if err != nil {
		return res, err
	}
	defer tokyo.Close()

	run := e.run("lost")
	key := func(i int) string { return e.key(run + strconv.Itoa(i)) }
	pos := func(i int) string { return "0-1-" + strconv.Itoa(1_000_000+i) }
	if err := e.Stack.Stop(ctx, "mc2"); err != nil {
		return res, err
	}
	down := time.Now()
	started := false
	defer func() {
		if !started {
			if serr := e.Stack.Start(context.Background(), "mc2"); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	step := cfg.Outage / time.Duration(cfg.Invalidations)
	for i := range cfg.Invalidations {
		if err := sleepCtx(ctx, time.Until(down.Add(time.Duration(i)*step))); err != nil {
			return res, err
		}
		if err := tokyo.Invalidate(WithPosition(ctx, pos(i)), key(i)); err != nil {
			return res, err
		}
		if err := plain.Delete(key(i)); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			res.LostControl++
		}
	}
	if err := sleepCtx(ctx, time.Until(down.Add(cfg.Outage))); err != nil {
		return res, err
	}
	started = true
	if err := e.Stack.Start(ctx, "mc2"); err != nil {
		return res, err
	}
	up := time.Now()
	res.OutageMs = float64(up.Sub(down).Microseconds()) / 1000
	region := attribute.String("regiondb.region", testserver.SecondaryRegion)
	done := func() int64 {
		return SumCounter(ctx, reader, "regiondb.cache.invalidations", region, attribute.String("regiondb.cache.result", "ok")) +
			SumCounter(ctx, reader, "regiondb.cache.invalidations", region, attribute.String("regiondb.cache.result", "retried"))
	}
	for done() < int64(cfg.Invalidations) {
		if time.Since(up) > cfg.Deadline {
			break
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil { // poll the worker's progress
			return res, err
		}
	}
	res.DeliveredMs = float64(time.Since(up).Microseconds()) / 1000
	res.Dropped = SumCounter(ctx, reader, "regiondb.cache.invalidations", region, attribute.String("regiondb.cache.result", "dropped"))

	// Check mc2: the next fill of every key must be asked for its position.
	mc2 := Client(e.MC2)
	defer mc2.Close()
	check, err := cache.New(cache.Config{Client: mc2, Region: testserver.SecondaryRegion, Consistency: g, ItemKeys: keys})
	if err != nil {
		return res, err
	}
	defer check.Close()
	for i := range cfg.Invalidations {
		var required string
		_, err := check.Get(ctx, key(i), func(ctx context.Context) ([]byte, error) {
			if r, _ := ctx.Value(reqKey{}).(*requirement); r != nil {
				required = r.pos
			}
			return []byte("x"), nil
		})
		if err != nil {
			return res, err
		}
		if required != pos(i) {
			res.Lost++
		}
	}
	return res, nil
}
