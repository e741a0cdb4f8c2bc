package cache

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// invalidation is a marker to write to one region's cluster.
type invalidation struct {
	key, pos string
}

// pending is an invalidation that failed and waits for its next attempt.
type pending struct {
	pos     string
	first   time.Time // first failure
	next    time.Time // next attempt
	backoff time.Duration
}

// worker writes invalidation markers to one region's cluster, retrying
// failures with backoff for Config.InvalidationRetry. Its goroutine (run)
// owns pending; other goroutines only send on queue.
type worker struct {
	c      *Cache
	region string
	client *memcache.Client
	queue  chan invalidation
	opts   map[string]metric.AddOption // by result; read-only after newWorker

	// Owned by run's goroutine:
	pending   map[string]*pending
	down      time.Duration // current backoff while the cluster is down
	downUntil time.Time     // no memcached calls before this
}

const (
	retryMin   = 10 * time.Millisecond
	retryMax   = time.Second
	maxPending = 1 << 16
)

func (c *Cache) newWorker(region string, cl *memcache.Client) *worker {
	w := &worker{
		c: c, region: region, client: cl,
		queue:   make(chan invalidation, c.cfg.InvalidationQueue),
		opts:    map[string]metric.AddOption{},
		pending: map[string]*pending{},
	}
	for _, r := range []string{"ok", "retried", "dropped"} {
		w.opts[r] = metric.WithAttributeSet(attribute.NewSet(attrRegion.String(region), attrResult.String(r)))
	}
	return w
}

func (w *worker) count(ctx context.Context, result string) {
	if w.c.tel.invalidations != nil {
		w.c.tel.invalidations.Add(ctx, 1, w.opts[result])
	}
}

// enqueue hands iv to the worker; when the queue is full it waits, bounded
// by ctx, which keeps invalidations from being lost.
func (w *worker) enqueue(ctx context.Context, iv invalidation) error {
	select {
	case w.queue <- iv:
		return nil
	default:
	}
	select {
	case w.queue <- iv:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *worker) run(ctx context.Context) {
	defer w.c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			w.drain()
			return
		case iv := <-w.queue:
			w.attempt(ctx, iv.key, iv.pos)
		case <-timer.C:
			w.retryDue(ctx)
		}
		w.arm(timer)
	}
}

// attempt writes one marker; on failure the key joins pending (positions
// merged), and it reports whether the failure was a transport fault. While
// the cluster is considered down (after a transport fault, for a growing
// backoff) it does not call memcached at all, so a dead region costs no
// timeouts per invalidation.
func (w *worker) attempt(ctx context.Context, key, pos string) (transport bool) {
	p := w.pending[key]
	if p != nil {
		pos = w.merge(p.pos, pos)
	}
	now := time.Now()
	var err error
	if now.Before(w.downUntil) {
		err, transport = errRegionDown, true
	} else {
		err = w.c.mark(w.client, key, pos)
	}
	if err == nil {
		w.down, w.downUntil = 0, time.Time{}
		if p != nil {
			delete(w.pending, key)
			w.count(ctx, "retried")
		} else {
			w.count(ctx, "ok")
		}
		return false
	}
	if err != errRegionDown && !errors.Is(err, errContended) {
		kind, tr, _ := classify(err)
		w.c.tel.remoteFault(ctx, attrRegion.String(w.region), kind)
		transport = tr
		if tr {
			w.down = min(max(2*w.down, retryMin), retryMax)
			w.downUntil = now.Add(w.down)
		}
	}
	if p == nil {
		if len(w.pending) >= maxPending {
			w.count(ctx, "dropped")
			w.c.log.LogAttrs(ctx, slog.LevelError, "cache: invalidation dropped, retry queue full: the region may serve an old value until its TTL",
				slog.String("region", w.region), slog.String("error", err.Error()))
			return transport
		}
		p = &pending{first: now, backoff: retryMin}
		w.pending[key] = p
	} else {
		p.backoff = min(2*p.backoff, retryMax)
	}
	p.pos = pos
	p.next = now.Add(p.backoff)
	if p.next.Before(w.downUntil) {
		p.next = w.downUntil
	}
	return transport
}

// errRegionDown stands for the memcached call a worker skips while its
// cluster is considered down.
var errRegionDown = errors.New("cache: region cluster down")

func (w *worker) merge(a, b string) string {
	if w.c.cons != nil {
		return w.c.cons.MergePositions(a, b)
	}
	if a != "" {
		return a
	}
	return b
}

// retryDue retries the pending invalidations whose time has come; a
// transport fault ends the pass (the cluster is likely down).
func (w *worker) retryDue(ctx context.Context) {
	now := time.Now()
	for key, p := range w.pending {
		if now.Before(p.next) {
			continue
		}
		if now.Sub(p.first) > w.c.cfg.InvalidationRetry {
			delete(w.pending, key)
			w.count(ctx, "dropped")
			w.c.log.LogAttrs(ctx, slog.LevelError, "cache: invalidation dropped after retries: the region may serve an old value until its TTL",
				slog.String("region", w.region), slog.Duration("retried_for", now.Sub(p.first)))
			continue
		}
		if w.attempt(ctx, key, "") {
			// The cluster looks down: push every other due entry back too.
			for _, q := range w.pending {
				if q.next.Before(w.downUntil) {
					q.next = w.downUntil
				}
			}
			return
		}
	}
}

// arm sets timer to the earliest pending attempt.
func (w *worker) arm(timer *time.Timer) {
	if len(w.pending) == 0 {
		timer.Stop()
		return
	}
	var next time.Time
	for _, p := range w.pending {
		if next.IsZero() || p.next.Before(next) {
			next = p.next
		}
	}
	timer.Reset(max(0, time.Until(next)))
}

// drain makes one last attempt at everything queued or pending, stopping at
// the first transport fault, and logs what it drops.
func (w *worker) drain() {
	ctx := context.Background()
	w.downUntil = time.Time{} // one real attempt, even if the cluster was down
	for {
		select {
		case iv := <-w.queue:
			if w.attempt(ctx, iv.key, iv.pos) {
				w.dropAll(ctx)
				return
			}
			continue
		default:
		}
		break
	}
	for key := range w.pending {
		if w.attempt(ctx, key, "") {
			break
		}
	}
	w.dropAll(ctx)
}

func (w *worker) dropAll(ctx context.Context) {
	n := len(w.pending)
	for {
		select {
		case <-w.queue:
			n++
			continue
		default:
		}
		break
	}
	if n == 0 {
		return
	}
	for range n {
		w.count(ctx, "dropped")
	}
	clear(w.pending)
	w.c.log.LogAttrs(ctx, slog.LevelError, "cache: invalidations dropped at Close: the region may serve old values until their TTL",
		slog.String("region", w.region), slog.Int("count", n))
}
