// Package cacheharness holds the measurements of the cache package against
// the local stack: the hit-path comparison with raw gomemcache, the
// cross-process stampede, the stale-refill race against a lagging replica
// (with a plain gomemcache cache-aside as the control that must go stale),
// and the cross-region invalidation. The cache tests and the bench-cache
// command both use it.
package cacheharness

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver
)

// GTIDConsistency is a minimal stand-in for dbrouter's read-your-writes over
// MariaDB GTIDs, implementing cache.Consistency for the harness: writes
// through [GTIDConsistency.Write] record @@last_gtid in the returned context;
// reads through [GTIDConsistency.Read] under RequirePosition wait up to Wait
// for the replica to apply the position (MASTER_GTID_WAIT) and otherwise
// read the writer, unless NoFallback, in which case they read the replica
// anyway and the check reports false.
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
	pos   string
	stale atomic.Bool
}

// WithPosition returns ctx carrying pos as its written position.
func WithPosition(ctx context.Context, pos string) context.Context {
	return context.WithValue(ctx, posKey{}, pos)
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

// Read reads kv.v for id from replica, honouring a position requirement in ctx.
func (g *GTIDConsistency) Read(ctx context.Context, replica *sql.DB, id int64) (int64, error) {
	r, _ := ctx.Value(reqKey{}).(*requirement)
	if r == nil {
		return readV(ctx, replica, id)
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
		return readV(ctx, conn, id)
	}
	if g.NoFallback {
		r.stale.Store(true)
		return readV(ctx, conn, id)
	}
	g.WriterReads.Add(1)
	return readV(ctx, g.Writer, id)
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
