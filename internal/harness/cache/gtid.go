// Package cache holds the measurements of the cache package against
// the local stack: the hit-path comparison with raw gomemcache, the
// cross-process stampede, the stale-refill race against a lagging replica
// (with a plain gomemcache cache-aside as the control that must go stale),
// and the cross-region invalidation. The cache tests and the bench-cache
// command both use it.
package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver

	"github.com/regiondb/regiondb/cache"
)

// GTIDConsistency is a minimal stand-in for dbrouter's read-your-writes over
// MariaDB GTIDs, implementing cache.Consistency and its optional
// capabilities cache.ReadScope and cache.PositionObserver for the harness
// (the methods *dbrouter.Router would need to offer them): writes through
// [GTIDConsistency.Write] record @@last_gtid in the returned context, which
// is then the caller's read-your-writes scope; reads through
// [GTIDConsistency.Read] that must observe a position (the scope's, or
// RequirePosition's) wait up to Wait for the replica to apply it
// (MASTER_GTID_WAIT) and otherwise read the writer, unless NoFallback, in
// which case they read the replica anyway and the check reports false.
// Under ObservePosition, reads also record the position their source had
// applied (one more query per read).
type GTIDConsistency struct {
	Writer *sql.DB
	// Wait is how long a replica read waits for the position. If zero, 20 ms.
	Wait time.Duration
	// NoFallback makes position-bound reads use the replica even when it has
	// not applied the position (the check then reports false).
	NoFallback bool

	// WriterReads counts reads sent to the writer because a replica lagged.
	WriterReads atomic.Int64
}

type posKey struct{}
type reqKey struct{}

type requirement struct {
	pos    string
	stale  atomic.Bool
	parent *requirement // the RequirePosition requirement this one extends
}

func (r *requirement) markStale() {
	for ; r != nil; r = r.parent {
		r.stale.Store(true)
	}
}

// WithPosition returns ctx carrying pos as its written position: the
// read-your-writes scope of a caller who wrote pos (here or, through a
// token, in another region).
func WithPosition(ctx context.Context, pos string) context.Context {
	return context.WithValue(ctx, posKey{}, pos)
}

// RequiredPosition implements cache.ReadScope: the scope's position.
func (g *GTIDConsistency) RequiredPosition(ctx context.Context) string {
	p, _ := ctx.Value(posKey{}).(string)
	return p
}

// CoversPosition implements cache.ReadScope for MariaDB GTID lists: a
// covers b when, for each domain of b, a has that domain at a sequence
// number at least b's. It does not allocate.
func (g *GTIDConsistency) CoversPosition(a, b string) bool {
	if b == "" {
		return true
	}
	for b != "" {
		var part string
		part, b, _ = strings.Cut(b, ",")
		dom, seq, ok := splitGTID(part)
		if !ok {
			return false
		}
		found := false
		for rest := a; rest != ""; {
			var ap string
			ap, rest, _ = strings.Cut(rest, ",")
			d, q, ok := splitGTID(ap)
			if !ok {
				return false
			}
			if d == dom {
				found = q >= seq
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// splitGTID splits "domain-server-seq" into domain and seq.
func splitGTID(s string) (dom string, seq uint64, ok bool) {
	s = strings.TrimSpace(s)
	i := strings.IndexByte(s, '-')
	j := strings.LastIndexByte(s, '-')
	if i <= 0 || j <= i {
		return "", 0, false
	}
	q, err := strconv.ParseUint(s[j+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return s[:i], q, true
}

type obsKey struct{}

// observation is the least position a load's reads were served at.
type observation struct {
	mu      sync.Mutex // protects pos, unknown
	pos     string
	unknown bool
}

// ObservePosition implements cache.PositionObserver.
func (g *GTIDConsistency) ObservePosition(ctx context.Context) (context.Context, func() string) {
	o := &observation{}
	return context.WithValue(ctx, obsKey{}, o), func() string {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.unknown {
			return ""
		}
		return o.pos
	}
}

// Observed records that a read made through ctx reflected pos; tests use
// it for loaders that do not read through [GTIDConsistency.Read].
func Observed(ctx context.Context, pos string) {
	o, _ := ctx.Value(obsKey{}).(*observation)
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case pos == "":
		o.unknown = true
	case o.pos == "":
		o.pos = pos
	default: // the least of both (single domain in the harness)
		g := (*GTIDConsistency)(nil)
		if g.CoversPosition(o.pos, pos) {
			o.pos = pos
		}
	}
}

// observeAt records, if ctx observes, the position q's server had applied
// (query, e.g. "SELECT @@gtid_slave_pos").
func observeAt(ctx context.Context, q queryer, query string) error {
	if ctx.Value(obsKey{}) == nil {
		return nil
	}
	var pos string
	if err := q.QueryRowContext(ctx, query).Scan(&pos); err != nil {
		return err
	}
	Observed(ctx, pos)
	return nil
}

// WrittenPosition implements cache.Consistency.
func (g *GTIDConsistency) WrittenPosition(ctx context.Context) string {
	p, _ := ctx.Value(posKey{}).(string)
	return p
}

// RequirePosition implements cache.Consistency.
func (g *GTIDConsistency) RequirePosition(ctx context.Context, pos string) (context.Context, func() bool) {
	r := &requirement{pos: pos}
	return context.WithValue(ctx, reqKey{}, r), func() bool { return !r.stale.Load() }
}

// MergePositions implements cache.Consistency for MariaDB GTID lists
// (domain-server-seq, comma separated): the per-domain maximum.
func (g *GTIDConsistency) MergePositions(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	type gtid struct {
		server, seq uint64
	}
	m := map[uint64]gtid{}
	for _, s := range []string{a, b} {
		for _, part := range strings.Split(s, ",") {
			f := strings.Split(strings.TrimSpace(part), "-")
			if len(f) != 3 {
				continue
			}
			d, e1 := strconv.ParseUint(f[0], 10, 32)
			sv, e2 := strconv.ParseUint(f[1], 10, 32)
			q, e3 := strconv.ParseUint(f[2], 10, 64)
			if e1 != nil || e2 != nil || e3 != nil {
				continue
			}
			if cur, ok := m[d]; !ok || q > cur.seq {
				m[d] = gtid{sv, q}
			}
		}
	}
	doms := make([]uint64, 0, len(m))
	for d := range m {
		doms = append(doms, d)
	}
	sort.Slice(doms, func(i, j int) bool { return doms[i] < doms[j] })
	parts := make([]string, len(doms))
	for i, d := range doms {
		parts[i] = fmt.Sprintf("%d-%d-%d", d, m[d].server, m[d].seq)
	}
	return strings.Join(parts, ",")
}

// Write runs UPDATE kv SET v=? WHERE id=? on the writer and returns ctx
// carrying the write's GTID.
func (g *GTIDConsistency) Write(ctx context.Context, id, v int64) (context.Context, error) {
	conn, err := g.Writer.Conn(ctx)
	if err != nil {
		return ctx, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "UPDATE kv SET v = ? WHERE id = ?", v, id); err != nil {
		return ctx, err
	}
	var pos string
	if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&pos); err != nil {
		return ctx, err
	}
	return WithPosition(ctx, pos), nil
}

// Read reads kv.v for id from replica, honouring the scope's position and
// a position requirement in ctx.
func (g *GTIDConsistency) Read(ctx context.Context, replica *sql.DB, id int64) (int64, error) {
	r, _ := ctx.Value(reqKey{}).(*requirement)
	if scoped := g.RequiredPosition(ctx); scoped != "" {
		if r == nil {
			r = &requirement{pos: scoped}
		} else {
			r = &requirement{pos: g.MergePositions(r.pos, scoped), parent: r}
		}
	}
	if r == nil {
		conn, err := replica.Conn(ctx)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		if err := observeAt(ctx, conn, "SELECT @@gtid_slave_pos"); err != nil {
			return 0, err
		}
		return readV(ctx, conn, id)
	}
	wait := g.Wait
	if wait == 0 {
		wait = 20 * time.Millisecond
	}
	conn, err := replica.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var res sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", r.pos, wait.Seconds()).Scan(&res); err != nil {
		return 0, err
	}
	if res.Valid && res.Int64 == 0 {
		if err := observeAt(ctx, conn, "SELECT @@gtid_slave_pos"); err != nil {
			return 0, err
		}
		return readV(ctx, conn, id)
	}
	if g.NoFallback {
		r.markStale()
		if err := observeAt(ctx, conn, "SELECT @@gtid_slave_pos"); err != nil {
			return 0, err
		}
		return readV(ctx, conn, id)
	}
	g.WriterReads.Add(1)
	wconn, err := g.Writer.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer wconn.Close()
	if err := observeAt(ctx, wconn, "SELECT @@gtid_binlog_pos"); err != nil {
		return 0, err
	}
	return readV(ctx, wconn, id)
}

type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func readV(ctx context.Context, q queryer, id int64) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, "SELECT v FROM kv WHERE id = ?", id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return v, err
}

var (
	_ cache.ReadScope        = (*GTIDConsistency)(nil)
	_ cache.PositionObserver = (*GTIDConsistency)(nil)
)
