package cache_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/regiondb/regiondb/cache"
)

// fakeDB is an in-memory record store with a writer position, and
// fakeConsistency its read-your-writes contract with every optional
// capability of cache.Consistency. The real *dbrouter.Router implements
// cache.ReadScope (router_test.go) but not yet cache.PositionObserver, and
// what these tests need of it (a source that is exactly at a chosen
// position) no local server gives on demand, hence the fake. Positions are decimal
// sequence numbers ("" for none).
type fakeDB struct {
	mu       sync.Mutex // protects versions and pos
	versions []fakeVersion
	pos      int64 // writer position: the last write
	// lag is how far behind the writer the replica serves reads.
	lag atomic.Int64
	// required records every position handed to RequirePosition.
	reqMu    sync.Mutex // protects required
	required []string
}

type fakeVersion struct {
	pos   int64
	value string
}

type fakeConsistency struct{ db *fakeDB }

type (
	scopeKey   struct{}
	requireKey struct{}
	observeKey struct{}
)

// scope is a caller's read-your-writes scope.
type scope struct{ need atomic.Int64 }

// observation collects the least position the reads of a load reflected.
type observation struct {
	mu   sync.Mutex // protects pos, any
	pos  int64
	any  bool
	fail bool
}

type requirement struct {
	pos int64
	ok  atomic.Bool
}

func withScope(ctx context.Context) (context.Context, *scope) {
	s := &scope{}
	return context.WithValue(ctx, scopeKey{}, s), s
}

func parsePos(s string) int64 {
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func formatPos(n int64) string {
	if n <= 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

// write stores value as a new version and advances the scope in ctx.
func (db *fakeDB) write(ctx context.Context, value string) int64 {
	db.mu.Lock()
	db.pos++
	p := db.pos
	db.versions = append(db.versions, fakeVersion{p, value})
	db.mu.Unlock()
	if s, _ := ctx.Value(scopeKey{}).(*scope); s != nil {
		s.need.Store(max(s.need.Load(), p))
	}
	return p
}

// read returns the newest value a source at the replica's position (or,
// if ctx requires more, at the writer's) holds, recording the position.
func (db *fakeDB) read(ctx context.Context) string {
	db.mu.Lock()
	defer db.mu.Unlock()
	at := max(db.pos-db.lag.Load(), 0)
	need := int64(0)
	if s, _ := ctx.Value(scopeKey{}).(*scope); s != nil {
		need = s.need.Load()
	}
	if r, _ := ctx.Value(requireKey{}).(*requirement); r != nil {
		need = max(need, r.pos)
	}
	if need > at {
		at = db.pos // the router's rule: wait or fall back to the writer
	}
	if o, _ := ctx.Value(observeKey{}).(*observation); o != nil {
		o.mu.Lock()
		if !o.any || at < o.pos {
			o.pos, o.any = at, true
		}
		o.mu.Unlock()
	}
	v := ""
	for _, ver := range db.versions {
		if ver.pos <= at {
			v = ver.value
		}
	}
	return v
}

func (f fakeConsistency) WrittenPosition(ctx context.Context) string {
	if s, _ := ctx.Value(scopeKey{}).(*scope); s != nil {
		return formatPos(s.need.Load())
	}
	return ""
}

func (f fakeConsistency) RequirePosition(ctx context.Context, pos string) (context.Context, func() bool) {
	f.db.reqMu.Lock()
	f.db.required = append(f.db.required, pos)
	f.db.reqMu.Unlock()
	r := &requirement{pos: parsePos(pos)}
	r.ok.Store(r.pos >= 0)
	return context.WithValue(ctx, requireKey{}, r), r.ok.Load
}

func (f fakeConsistency) MergePositions(a, b string) string {
	return formatPos(max(parsePos(a), parsePos(b)))
}

func (f fakeConsistency) RequiredPosition(ctx context.Context) string {
	if s, _ := ctx.Value(scopeKey{}).(*scope); s != nil {
		return formatPos(s.need.Load())
	}
	return ""
}

func (f fakeConsistency) CoversPosition(a, b string) bool {
	pa, pb := parsePos(a), parsePos(b)
	return pa >= 0 && pb >= 0 && pa >= pb
}

func (f fakeConsistency) ObservePosition(ctx context.Context) (context.Context, func() string) {
	o := &observation{}
	return context.WithValue(ctx, observeKey{}, o), func() string {
		o.mu.Lock()
		defer o.mu.Unlock()
		if !o.any {
			return ""
		}
		return formatPos(o.pos)
	}
}

func (db *fakeDB) requiredPositions() []string {
	db.reqMu.Lock()
	defer db.reqMu.Unlock()
	return append([]string(nil), db.required...)
}

var (
	_ cache.ReadScope        = fakeConsistency{}
	_ cache.PositionObserver = fakeConsistency{}
)
