package ryw

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// sequences runs issue 11's three failing sequences deterministically, with
// r2 stalled so that only the token can carry what the user saw or wrote
// to the other region. Each runs through dbrouter (it must not fail) and
// through a control that reproduces the earlier behaviour (it must).
type sequences struct {
	s     *testserver.Stack
	p     *pools
	srv   *servers
	gates *gates
}

// runSequences runs each sequence cfg.Sequences times on rows from base on
// and adds the results to rep.
func runSequences(ctx context.Context, s *testserver.Stack, cfg Config, base int, p *pools, _ [2]*dbrouter.Router, srv *servers, g *gates, rep *Report) error {
	q := &sequences{s: s, p: p, srv: srv, gates: g}
	defer heal(context.WithoutCancel(ctx), s)
	for k := range cfg.Sequences {
		for ci, control := range []bool{false, true} {
			id := base + 4*k + ci
			reads, bad, err := q.monotonic(ctx, id, control)
			if err != nil {
				return fmt.Errorf("rywharness: monotonic sequence: %w", err)
			}
			if control {
				rep.MonotonicControl.Runs++
				rep.MonotonicControl.Regressions += bad
			} else {
				rep.Monotonic.Reads += reads
				rep.Monotonic.Regressions += bad
			}
			id += 2 // rows base+4k+2 and +3 for the other sequences
			reads, bad, err = q.tabs(ctx, id, control)
			if err != nil {
				return fmt.Errorf("rywharness: tabs sequence: %w", err)
			}
			if control {
				rep.TabsControl.Runs++
				rep.TabsControl.Violations += bad
			} else {
				rep.Tabs.Reads += reads
				rep.Tabs.Violations += bad
			}
			reads, bad, err = q.localOnly(ctx, id, control)
			if err != nil {
				return fmt.Errorf("rywharness: local_only sequence: %w", err)
			}
			if control {
				rep.LocalOnlyControl.Runs++
				rep.LocalOnlyControl.Violations += bad
			} else {
				rep.LocalOnly.Reads += reads
				rep.LocalOnly.Violations += bad
			}
		}
		cfg.Logf("sequences %d/%d: monotonic %d regressions (control %d), tabs %d violations (control %d), local_only %d violations (control %d)",
			k+1, cfg.Sequences, rep.Monotonic.Regressions, rep.MonotonicControl.Regressions,
			rep.Tabs.Violations, rep.TabsControl.Violations, rep.LocalOnly.Violations, rep.LocalOnlyControl.Violations)
	}
	return nil
}

// write sets row id to v on the writer.
func (q *sequences) write(ctx context.Context, id int, v int64) error {
	_, err := q.p.writer.ExecContext(ctx, updateQuery, v, id)
	return err
}

// applied waits until the reader of region i has applied everything the
// writer has.
func (q *sequences) applied(ctx context.Context, i int) error {
	var pos string
	if err := q.p.writer.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return err
	}
	var res sql.NullInt64
	if err := q.p.readers[i].QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil {
		return err
	}
	if !res.Valid || res.Int64 != 0 {
		return fmt.Errorf("reader of region %d did not apply %s in 10 s", i, pos)
	}
	return nil
}

// stallR2 stalls r2 and returns the function that resumes it and waits
// until it has caught up.
func (q *sequences) stallR2(ctx context.Context) (func() error, error) {
	if err := q.s.Stall(ctx, "r2"); err != nil {
		return nil, err
	}
	return func() error {
		return errors.Join(q.s.Resume(ctx, "r2"), q.applied(ctx, 1))
	}, nil
}

// monotonic: v=1 is on both readers and known; r2 stalls; v=2 is written and
// r1 applies it. A user reads the row in Tokyo (v=2), then in Virginia. It
// returns the reads made and the regressions (the Virginia read older than
// the Tokyo one). The control records, after a read, the position its
// reader was last known to have (its own monitor's poll, taken while v=1
// was the newest) and drops the token once every reader is known to have
// that, as the router did before.
func (q *sequences) monotonic(ctx context.Context, id int, control bool) (reads, regressions int64, err error) {
	if err := q.write(ctx, id, 1); err != nil {
		return 0, 0, err
	}
	if err := errors.Join(q.applied(ctx, 0), q.applied(ctx, 1)); err != nil {
		return 0, 0, err
	}
	kr := &knownRouter{p: q.p}
	if err := kr.poll(ctx); err != nil {
		return 0, 0, err
	}
	resume, err := q.stallR2(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, resume()) }()
	if err := q.write(ctx, id, 2); err != nil {
		return 0, 0, err
	}
	if err := q.applied(ctx, 0); err != nil {
		return 0, 0, err
	}
	var first, second int64
	if control {
		var need uint64
		if first, need, err = kr.read(ctx, 0, id, 0); err != nil {
			return 0, 0, err
		}
		if second, _, err = kr.read(ctx, 1, id, need); err != nil {
			return 0, 0, err
		}
	} else {
		// Another user's row: the reader's own row is a different one.
		c := q.srv.client()
		if _, first, err = get(ctx, c, fmt.Sprintf("%s/u?id=%d&f=%d", q.srv.router[0], id+1, id)); err != nil {
			return 0, 0, err
		}
		if _, second, err = get(ctx, c, fmt.Sprintf("%s/u?id=%d&f=%d", q.srv.router[1], id+1, id)); err != nil {
			return 0, 0, err
		}
	}
	if first != 2 {
		return 0, 0, fmt.Errorf("the Tokyo read showed %d, want 2 (r1 had applied it)", first)
	}
	if second < first {
		regressions = 1
	}
	return 2, regressions, nil
}

// tabs: the user's token holds v=1; r2 stalls. Tab 1 reads in Virginia and
// its response is held; meanwhile tab 2 writes v=2 in Tokyo and gets its
// response; then tab 1's response lands. The next read in Virginia must show
// v=2. It returns the checked reads (tab 2's read-back and the next read) and
// the violations among them. The control is lastWins.
func (q *sequences) tabs(ctx context.Context, id int, control bool) (reads, violations int64, err error) {
	urls := q.srv.router
	if control {
		urls = q.srv.tabsCtl
	}
	c := q.srv.client()
	if _, _, err := get(ctx, c, fmt.Sprintf("%s/u?id=%d&v=1", urls[0], id)); err != nil {
		return 0, 0, err
	}
	if err := errors.Join(q.applied(ctx, 0), q.applied(ctx, 1)); err != nil {
		return 0, 0, err
	}
	resume, err := q.stallR2(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, resume()) }()
	gid := fmt.Sprintf("tabs-%d-%v", id, control)
	gt := q.gates.get(gid)
	tab1 := make(chan error, 1)
	go func() {
		_, _, err := get(ctx, c, fmt.Sprintf("%s/u?id=%d&gate=%s", urls[1], id, gid))
		tab1 <- err
	}()
	select {
	case <-gt.reached:
	case err := <-tab1:
		return 0, 0, fmt.Errorf("tab 1 answered before its gate: %v", err)
	case <-time.After(10 * time.Second):
		return 0, 0, errors.New("tab 1 did not read in 10 s")
	}
	wrote, _, err := get(ctx, c, fmt.Sprintf("%s/u?id=%d&v=2", urls[0], id))
	close(gt.release)
	if err2 := <-tab1; err == nil {
		err = err2
	}
	if err != nil {
		return 0, 0, err
	}
	next, _, err := get(ctx, c, fmt.Sprintf("%s/u?id=%d", urls[1], id))
	if err != nil {
		return 0, 0, err
	}
	for _, v := range []int64{wrote, next} {
		if v < 2 {
			violations++
		}
	}
	return 2, violations, nil
}

// localOnly: each region's router knows only its own region's reader; r2
// stalls. The user writes v=2 in Tokyo (r1 applies it at once), then reads
// in Virginia, which must show v=2. The control is dropIfApplied.
func (q *sequences) localOnly(ctx context.Context, id int, control bool) (reads, violations int64, err error) {
	urls := q.srv.localOnly
	if control {
		urls = q.srv.localCtl
	}
	c := q.srv.client()
	if _, _, err := get(ctx, c, fmt.Sprintf("%s/u?id=%d&v=1", urls[0], id)); err != nil {
		return 0, 0, err
	}
	if err := errors.Join(q.applied(ctx, 0), q.applied(ctx, 1)); err != nil {
		return 0, 0, err
	}
	resume, err := q.stallR2(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, resume()) }()
	wrote, _, err := get(ctx, c, fmt.Sprintf("%s/u?id=%d&v=2", urls[0], id))
	if err != nil {
		return 0, 0, err
	}
	next, _, err := get(ctx, c, fmt.Sprintf("%s/u?id=%d", urls[1], id))
	if err != nil {
		return 0, 0, err
	}
	for _, v := range []int64{wrote, next} {
		if v < 2 {
			violations++
		}
	}
	return 2, violations, nil
}

// knownRouter is the monotonic control: reads go to the region's reader
// when its known position (the last poll) covers the token, else to the
// writer; after a read the token takes the reader's known position, and it
// is dropped (0) once every reader is known to have it. Positions are the
// sequence numbers of GTID domain 0 (the stack's only one).
type knownRouter struct {
	p     *pools
	known [2]uint64
}

// poll is the control's monitor poll.
func (k *knownRouter) poll(ctx context.Context) error {
	for i, db := range k.p.readers {
		var s string
		if err := db.QueryRowContext(ctx, "SELECT @@global.gtid_current_pos").Scan(&s); err != nil {
			return err
		}
		k.known[i] = domain0(s)
	}
	return nil
}

func (k *knownRouter) read(ctx context.Context, region, id int, need uint64) (int64, uint64, error) {
	db := k.p.readers[region]
	if k.known[region] < need {
		db = k.p.writer
	} else {
		need = max(need, k.known[region])
	}
	v, _, err := read(ctx, db, id)
	if k.known[0] >= need && k.known[1] >= need {
		need = 0
	}
	return v, need, err
}

// domain0 returns the sequence number of domain 0 in a MariaDB GTID list.
func domain0(s string) uint64 {
	for g := range strings.SplitSeq(s, ",") {
		f := strings.Split(strings.TrimSpace(g), "-")
		if len(f) == 3 && f[0] == "0" {
			n, _ := strconv.ParseUint(f[2], 10, 64)
			return n
		}
	}
	return 0
}
