package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The one-round-trip read path. When routing sends a read to a reader that
// is not known to have applied what the read must observe, or a read of a
// read-your-writes scope, it puts a readDirective in the context of the
// statement (see Router.execute). The reader's pool opens connections
// through readConnector, whose connections send the read as one text:
//
//	<guard>; <statement>; <sample>
//
// The guard fails the whole text (the server stops a multi-statement text
// at its first error, so the statement does not run) unless the reader has
// applied the position within the wait budget; the sample reads the
// reader's applied position after the statement ran: an upper bound of
// what it served, which the scope requires from then on (monotonic reads)
// and which raises the reader's watermark. Either part is left out when not
// needed. The caller sees only the statement's result set.

// readDirective is what routing asks of one read on one reader. It is also
// the context of the read's statement (see target.runCtx): the statement's
// context with the directive as its value, in one allocation.
type readDirective struct {
	context.Context
	rt   *Router
	r    *reader
	need *position     // not empty: the guard, waiting up to wait
	wait time.Duration // the guard's budget
	t    *tracker      // not nil: the sample, advancing t
	// retry: the read's second guard (see Router.afterGuard); if it
	// fails too, the read goes to the writer.
	retry bool
}

type directiveKey struct{}

// Value returns d for directiveKey, else the statement context's value.
func (d *readDirective) Value(key any) any {
	if key == (directiveKey{}) {
		return d
	}
	return d.Context.Value(key)
}

// errGuard is matched by the error of a read whose reader had not applied
// the position it needed within the wait budget; the statement did not run.
var errGuard = errors.New("dbrouter: reader had not applied the required position in time")

// guardError is a guard failure: the read did not run, and routing retries
// it where the position is known to be.
type guardError struct {
	d   *readDirective
	err error
}

func (e *guardError) Error() string        { return errGuard.Error() + ": " + e.err.Error() }
func (e *guardError) Unwrap() error        { return e.err }
func (e *guardError) Is(target error) bool { return target == errGuard }

// combining is how an endpoint's pool treats statements (see
// Config.DisableCombinedStatements).
type combining struct {
	// on: the router set multiStatements on this pool, so every user text
	// is checked to be one statement, and the router may combine.
	on  bool
	sql *combineSQL
}

// readConnector opens the connections of a reader's pool.
type readConnector struct {
	inner driver.Connector
	rt    *Router
	r     *reader // set before the pool is used
	comb  combining
	// texts holds the combined text of each statement read with a
	// sample and no guard (the steady state of a scope's reads), so that
	// it is built once: string -> string, at most classCacheSize.
	texts  sync.Map
	ntexts atomic.Int64
}

func (c *readConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &readConn{Conn: conn, c: c}, nil
}

func (c *readConnector) Driver() driver.Driver { return c.inner.Driver() }

// readConn is used by one goroutine at a time (database/sql's guarantee).
type readConn struct {
	driver.Conn
	c *readConnector
	// rows is the result of the connection's latest combined read: one
	// at a time, since database/sql closes a connection's rows before it
	// lends the connection again.
	rows readRows
}

func (c *readConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	end := len(query)
	if c.c.comb.on {
		var ok bool
		if end, ok = c.c.rt.stmts.end(query, len(args) > 0); !ok {
			return nil, ErrMultiStatement
		}
	}
	d, _ := ctx.Value(directiveKey{}).(*readDirective)
	if d == nil || end == 0 {
		// No directive, or no statement at all (the server reports it).
		return q.QueryContext(ctx, query, args)
	}
	if d.r != c.c.r || !c.c.comb.on || c.c.comb.sql == nil {
		// Not for this pool (cannot happen: routing sets a directive
		// only for a combining reader's pool): fail as a guard, so the
		// read goes where the position is known.
		return nil, &guardError{d: d, err: errors.New("directive for another endpoint")}
	}
	return c.combined(ctx, q, d, query[:end], args)
}

// combined runs the read of d as one text.
func (c *readConn) combined(ctx context.Context, q driver.QueryerContext, d *readDirective, query string, args []driver.NamedValue) (driver.Rows, error) {
	cs := c.c.comb.sql
	guard := ""
	if !d.need.empty() {
		if guard = cs.guard(d.need, d.wait); guard == "" {
			return nil, &guardError{d: d, err: errors.New("position of another dialect")}
		}
	}
	var text string
	if guard == "" && d.t != nil {
		text = c.c.sampledText(query, cs.sample)
	} else {
		text = combinedText(guard, query, cs.sample, d.t != nil)
	}
	// The read tells the router r's position (the post-write watch then
	// sends no query): the guard when it passes, the sample when read.
	if guard != "" || d.t != nil {
		d.r.told.Add(1)
	}
	if guard != "" {
		c.c.rt.stats.guardedReads.Add(1)
		d.r.guarding.Add(1)
		defer d.r.guarding.Add(-1)
	}
	sent := time.Now()
	var age time.Duration // of the guard's position when sent (see lagFromWrite)
	if guard != "" && d.rt.lagFromWrite() {
		age, _ = d.rt.needAge(d.need, sent)
	}
	rows, err := q.QueryContext(ctx, text, args)
	if err == driver.ErrSkip {
		// The driver cannot put the arguments into the text (it then
		// prepares the statement): check the guard alone, and let the
		// scope bound what the read served later.
		if err := c.guardAlone(ctx, q, d, guard); err != nil {
			return nil, err
		}
		d.unsampled()
		return nil, driver.ErrSkip
	}
	if err != nil {
		if guard != "" && isErrno(err, cs.guardErrno) {
			d.r.noteWait(age, d.wait, false)
			return nil, &guardError{d: d, err: err}
		}
		d.unsampled()
		return nil, err
	}
	if guard != "" {
		// The guard raises its error in place of its row.
		if err := readToEnd(rows); err != nil {
			rows.Close()
			if isErrno(err, cs.guardErrno) {
				d.r.noteWait(age, d.wait, false)
				return nil, &guardError{d: d, err: err}
			}
			d.unsampled()
			return nil, err
		}
		d.r.raise(d.need)
		// The guard's row came after the reader applied need: an upper
		// bound of how long the reader took to get there.
		d.r.noteWait(age, time.Since(sent), true)
		if err := nextResultSet(rows); err != nil {
			// The statement's own error.
			rows.Close()
			d.unsampled()
			return nil, err
		}
	}
	if d.t == nil {
		c.rows = readRows{wrappedRows: wrappedRows{rows}}
	} else {
		c.rows = readRows{wrappedRows: wrappedRows{rows}, d: d, sent: sent}
	}
	return &c.rows, nil
}

// combinedText returns guard (if any), query and, with sample, the sample
// as one text.
func combinedText(guard, query, sample string, withSample bool) string {
	n := len(query)
	if guard != "" {
		n += len(guard) + 2
	}
	if withSample {
		n += len(sample) + 3
	}
	var b strings.Builder
	b.Grow(n)
	if guard != "" {
		b.WriteString(guard)
		b.WriteString(";\n")
	}
	b.WriteString(query)
	if withSample {
		// The newline ends a trailing "--" or "#" comment of query.
		b.WriteString("\n;\n")
		b.WriteString(sample)
	}
	return b.String()
}

// sampledText returns query followed by sample, built once per query text.
func (c *readConnector) sampledText(query, sample string) string {
	if v, ok := c.texts.Load(query); ok {
		return v.(string)
	}
	text := combinedText("", query, sample, true)
	if c.ntexts.Load() < classCacheSize {
		if _, loaded := c.texts.LoadOrStore(query, text); !loaded {
			c.ntexts.Add(1)
		}
	}
	return text
}

// guardAlone runs guard as a text of its own.
func (c *readConn) guardAlone(ctx context.Context, q driver.QueryerContext, d *readDirective, guard string) error {
	if guard == "" {
		return nil
	}
	rows, err := q.QueryContext(ctx, guard, nil)
	if err != nil {
		if isErrno(err, c.c.comb.sql.guardErrno) {
			return &guardError{d: d, err: err}
		}
		return err
	}
	err = readToEnd(rows)
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if isErrno(err, c.c.comb.sql.guardErrno) {
		return &guardError{d: d, err: err}
	}
	if err == nil {
		d.r.raise(d.need)
	}
	return err
}

// readToEnd reads the current result set of rows to its end.
func readToEnd(rows driver.Rows) error {
	vals := make([]driver.Value, len(rows.Columns()))
	var err error
	for err == nil {
		err = rows.Next(vals)
	}
	if err == io.EOF {
		return nil
	}
	return err
}

// nextResultSet moves rows to its next result set.
func nextResultSet(rows driver.Rows) error {
	n, ok := rows.(driver.RowsNextResultSet)
	if !ok {
		return errors.New("dbrouter: driver does not support multiple result sets")
	}
	return n.NextResultSet()
}

// noteWait feeds what a guard for a position at least age old (0 with a
// near writer: the lag heuristic's lag is counted from the read) showed
// into r's recent lag (the wait budget's input, see readWaitBudget). A
// guard that timed out after waited says r is at least age + waited
// behind: it only raises the lag. One that passed after waited says r took
// at most age + waited: a guard that waited (longer than two of r's round
// trips) found r catching up then, a measurement of its lag, smoothed as
// the monitor's are; one that did not wait only lowers the lag, smoothed.
// Counting the wait alone, without the position's age, or a timeout of a
// short probe as a measurement, made a reader known to be 500 ms behind
// look 60 ms behind after a few reads, and the next read waited for it in
// vain before going to the writer (issue 11).
func (r *reader) noteWait(age, waited time.Duration, passed bool) {
	if age < 0 {
		age = 0
	}
	d := int64(age + waited)
	blocked := passed && waited > max(2*r.rtt.get(), time.Millisecond)
	for {
		old := r.recentLag.Load()
		n := d
		switch {
		case !passed && n <= old, passed && !blocked && n >= old:
			return
		case passed && n < old:
			n = old - (old-n)/4
		}
		if n == old || r.recentLag.CompareAndSwap(old, n) {
			return
		}
	}
}

// unsampled records that the read was served by d.r without a sample: the
// scope bounds it later (see Router.settle).
func (d *readDirective) unsampled() {
	if d.t != nil {
		d.t.served(servedBy{rt: d.rt, r: d.r})
	}
}

// sampled records the sample p, read by a text sent at sent.
func (d *readDirective) sampled(p *position, sent time.Time) {
	r := d.r
	old := r.wm.Load()
	if r.raise(p) != old {
		d.rt.changed.broadcast()
	}
	r.sample.record(p, sent)
	d.t.advance(p, false)
}

func (c *readConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	if c.c.comb.on {
		if _, ok := c.c.rt.stmts.end(query, len(args) > 0); !ok {
			return nil, ErrMultiStatement
		}
	}
	return e.ExecContext(ctx, query, args)
}

func (c *readConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if c.c.comb.on {
		if _, ok := c.c.rt.stmts.end(query, false); !ok {
			return nil, ErrMultiStatement
		}
	}
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

func (c *readConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *readConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return beginOn(ctx, c.Conn, opts)
}

func (c *readConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *readConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *readConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *readConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// readRows shows the statement's result set of a combined read; with a
// directive, it reads the sample when closed.
type readRows struct {
	wrappedRows
	d    *readDirective // nil: no sample
	sent time.Time
	done bool
	val  [1]driver.Value // the sample's
}

func (r *readRows) Close() error {
	if r.done {
		return nil
	}
	r.done = true
	if r.d == nil {
		return r.Rows.Close()
	}
	p, serr := r.sample()
	err := r.Rows.Close()
	if serr == nil && err == nil {
		r.d.sampled(p, r.sent)
	} else {
		r.d.unsampled()
	}
	return err
}

// sample moves past the statement's rows to the sample and parses it.
func (r *readRows) sample() (*position, error) {
	n, ok := r.Rows.(driver.RowsNextResultSet)
	if !ok {
		return nil, errNoPosition
	}
	if err := n.NextResultSet(); err != nil {
		return nil, err
	}
	// The sample is the router's own one-column SELECT (asking the
	// driver for its columns would build their names on every read); a
	// value of another shape fails to parse.
	if err := r.Rows.Next(r.val[:]); err != nil {
		return nil, err
	}
	return r.d.r.parseSample(r.d.rt.dialect, r.val[0])
}

// parseSample parses a sample of r, reusing the last one when the text is
// the same (reads between writes see the same position).
func (r *reader) parseSample(d dialect, v driver.Value) (*position, error) {
	if b, ok := v.([]byte); ok {
		if last := r.lastSample.Load(); last != nil && last.text == string(b) {
			return last.pos, nil
		}
	}
	s, ok := valueText(v)
	if !ok {
		return nil, errNoPosition
	}
	p, err := d.parseReader(s)
	if err == nil {
		r.lastSample.Store(&parsedSample{text: s, pos: p})
	}
	return p, err
}

// parsedSample is a sample's text and its position.
type parsedSample struct {
	text string
	pos  *position
}

// valueText returns a text or integer column value as text.
func valueText(v driver.Value) (string, bool) {
	switch v := v.(type) {
	case []byte:
		return string(v), true
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	case uint64: // go-sql-driver/mysql returns BIGINT UNSIGNED so
		return strconv.FormatUint(v, 10), true
	case nil:
		return "", true
	}
	return "", false
}

// The statement's result set is the only one the caller sees.
func (r *readRows) HasNextResultSet() bool { return false }
func (r *readRows) NextResultSet() error   { return io.EOF }

var (
	_ driver.Connector          = (*readConnector)(nil)
	_ driver.QueryerContext     = (*readConn)(nil)
	_ driver.ExecerContext      = (*readConn)(nil)
	_ driver.ConnPrepareContext = (*readConn)(nil)
	_ driver.ConnBeginTx        = (*readConn)(nil)
	_ driver.Pinger             = (*readConn)(nil)
	_ driver.SessionResetter    = (*readConn)(nil)
	_ driver.Validator          = (*readConn)(nil)
	_ driver.NamedValueChecker  = (*readConn)(nil)
	_ driver.RowsNextResultSet  = (*readRows)(nil)
)
