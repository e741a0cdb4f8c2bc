package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the writer search.
const (
	// DefaultWriterProbeTimeout bounds one probe of one endpoint during a
	// writer search (connect, handshake and one query) while the router has
	// not yet measured how long connecting to that endpoint takes. Once it
	// has (every new connection of the router's pools and probes is timed),
	// a probe gets four times the smoothed connect time, at least
	// [MinWriterProbeTimeout] and at most [MaxWriterProbeTimeout], so that a
	// cross-region handshake fits and a dead local endpoint fails fast. The
	// probes of a search run concurrently, so the longest bounds the search.
	DefaultWriterProbeTimeout = time.Second
	// MinWriterProbeTimeout is the floor of a probe timeout sized to the
	// measured connect time.
	MinWriterProbeTimeout = 300 * time.Millisecond
	// MaxWriterProbeTimeout is the cap of a probe timeout sized to the
	// measured connect time.
	MaxWriterProbeTimeout = 5 * time.Second
	// DefaultWriterSearchInterval is the least time between the starts of two
	// writer searches of one router. Statements that need the writer while a
	// search is running wait for it (bounded by their context); within the
	// interval after a search they get its result without probing again.
	DefaultWriterSearchInterval = 500 * time.Millisecond
)

// searchBackoffSteps bounds the back-off of searches that find no writer:
// the gap after the n-th such search in a row is the interval times
// 2^min(n-1, searchBackoffSteps), lengthened at random by up to a quarter so
// that the searches of a fleet spread out. With the defaults a process
// probes each endpoint at most every 2–2.5 s during a long outage.
const searchBackoffSteps = 2

// Queries of a writer probe. Both variables exist in MariaDB, MySQL and
// Aurora MySQL; Aurora readers report innodb_read_only = 1.
const (
	probeReadOnlyQuery = "SELECT @@global.read_only, @@global.innodb_read_only"
	// On Aurora MySQL the probe also asks the instance for its own id and
	// the topology table for the writer's id (the row of the writer has
	// SESSION_ID = 'MASTER_SESSION_ID'; during a failover two rows may, and
	// the newest wins).
	probeAuroraIDQuery       = "SELECT @@aurora_server_id, @@global.innodb_read_only"
	probeAuroraTopologyQuery = "SELECT SERVER_ID FROM information_schema.replica_host_status WHERE SESSION_ID = 'MASTER_SESSION_ID' " +
		"ORDER BY LAST_UPDATE_TIMESTAMP DESC LIMIT 1"
)

// writerCandidate is one configured endpoint that a writer search probes: the
// configured writer and every reader (a reader may have been promoted).
type writerCandidate struct {
	name      string           // endpoint name, for logs and errors (never a DSN)
	connector driver.Connector // opens a fresh connection for each probe
	rtt       *rttStat         // its measured connect time, or nil
}

// probeRTTFactor is how many measured connect times a probe may take.
const probeRTTFactor = 4

// rttStat is the smoothed time one endpoint takes to accept a connection
// (TCP, TLS and authentication: several round trips). The zero value has
// no measurement.
type rttStat struct{ nanos atomic.Int64 }

// record adds one measurement (an exponential average, weight 1/8).
func (s *rttStat) record(d time.Duration) {
	if s == nil || d <= 0 {
		return
	}
	for {
		old := s.nanos.Load()
		next := int64(d)
		if old > 0 {
			next = old - old/8 + int64(d)/8
		}
		if s.nanos.CompareAndSwap(old, next) {
			return
		}
	}
}

// probeTimeout returns the probe timeout for an endpoint with this
// measurement: DefaultWriterProbeTimeout without one.
func (s *rttStat) probeTimeout() time.Duration {
	if s == nil || s.nanos.Load() == 0 {
		return DefaultWriterProbeTimeout
	}
	return min(max(probeRTTFactor*time.Duration(s.nanos.Load()), MinWriterProbeTimeout), MaxWriterProbeTimeout)
}

// sharedWriterTTL is how long a found writer stays in the WatermarkStore.
const sharedWriterTTL = time.Minute

// sharedStoreTimeout bounds one WatermarkStore call of a writer search.
const sharedStoreTimeout = 300 * time.Millisecond

// errNotProbed stands for the candidates a search did not probe because the
// writer the fleet shares answered.
var errNotProbed = errors.New("dbrouter: not probed (the shared writer answered)")

// sharedWriterKey is the WatermarkStore key of the writer found by any
// process whose writer candidates have the same names.
func sharedWriterKey(cands []writerCandidate) string {
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.name
	}
	slices.Sort(names)
	h := fnv.New64a()
	h.Write([]byte(strings.Join(names, "\n")))
	return watermarkPrefix + "writer/" + strconv.FormatUint(h.Sum64(), 16)
}

// writerSearchConfig configures a writerSearch. Zero durations mean the
// defaults.
type writerSearchConfig struct {
	// probeTimeout, if set, bounds every probe; if zero, each probe's
	// timeout is sized to its candidate's measured connect time.
	probeTimeout time.Duration
	interval     time.Duration
	// aurora makes probes also read Aurora MySQL's own instance id and the
	// topology table, and prefer the endpoint the topology names as writer.
	aurora bool
	logger *slog.Logger
	// now is the clock (tests inject one); nil means time.Now.
	now func() time.Time
	// onChange, if not nil, is called (outside any lock) when a search
	// finds a writer other than the current one.
	onChange func(from, to int)
	// onSearch, if not nil, is called (outside any lock) after every
	// search, found or not.
	onSearch func()
	// shared, if not nil, shares the found writer with the fleet under
	// sharedKey: a search first probes the writer it names alone, and a
	// search that had to probe every candidate publishes what it found.
	shared    WatermarkStore
	sharedKey string
}

// writerSearch finds the one writable endpoint among the candidates. At most
// one search runs at a time: concurrent callers share it (singleflight), and
// searches start at most once per interval. Each search runs in a goroutine
// owned by the writerSearch (callers wait for it, bounded by their own
// context) and probes every candidate concurrently, each probe bounded by
// the probe timeout; close cancels a running search and waits for it.
type writerSearch struct {
	cfg   writerSearchConfig
	cands []writerCandidate // only grows (see add); read under mu, or a search's copy

	base    context.Context // cancelled by close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // running search goroutines
	started atomic.Int64   // searches started
	hits    atomic.Int64   // searches settled by the shared writer alone

	mu       sync.Mutex // protects the fields below
	current  int        // index of the writer as last known
	running  *writerSearchCall
	lastDone time.Time     // when the last search ended
	gap      time.Duration // least time after lastDone before the next search
	failures int           // searches in a row that found no writer
	goneAt   time.Time     // when the first of them ended
	last     *writerSearchCall
	closed   bool
}

// writerSearchCall is one search; done is closed when idx and err are set.
type writerSearchCall struct {
	done chan struct{}
	idx  int
	err  error
}

func newWriterSearch(cfg writerSearchConfig, cands []writerCandidate, current int) *writerSearch {
	if cfg.interval <= 0 {
		cfg.interval = DefaultWriterSearchInterval
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &writerSearch{cfg: cfg, cands: cands, base: ctx, cancel: cancel, current: current}
}

// add makes c a candidate of the searches that start from now on and
// returns its index. Indexes of the candidates before it do not change.
func (w *writerSearch) add(c writerCandidate) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cands = append(slices.Clip(w.cands), c)
	return len(w.cands) - 1
}

// writer returns the index of the writer as last known.
func (w *writerSearch) writer() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// find returns the index of the writable candidate. It joins a running
// search, returns the result of a search that ended less than the interval
// (or, after searches that found no writer, the back-off) ago, or starts a
// new one, and waits for the result as long as ctx allows.
// The error wraps ErrNoWriter when no writable candidate answered.
func (w *writerSearch) find(ctx context.Context) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return -1, &noWriterError{}
	}
	call := w.running
	if call == nil {
		if w.last != nil && w.cfg.now().Sub(w.lastDone) < w.gap {
			c := w.last
			w.mu.Unlock()
			return c.idx, c.err
		}
		call = &writerSearchCall{done: make(chan struct{})}
		w.running = call
		w.wg.Add(1)
		go w.search(call)
	}
	w.mu.Unlock()
	select {
	case <-call.done:
		return call.idx, call.err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// gone returns since when searches have found no writer and the error of
// the last one; the error is nil when the last
// search found one or no search ended yet. While it is not nil, the writer
// is known to be unreachable.
func (w *writerSearch) gone() (since time.Time, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failures == 0 || w.last == nil {
		return time.Time{}, nil
	}
	return w.goneAt, w.last.err
}

// kick starts a search in the background, unless one is running or the
// last one ended less than the interval ago. It does not wait.
func (w *writerSearch) kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.running != nil || (w.last != nil && w.cfg.now().Sub(w.lastDone) < w.gap) {
		return
	}
	call := &writerSearchCall{done: make(chan struct{})}
	w.running = call
	w.wg.Add(1)
	go w.search(call)
}

// close stops a running search and waits for it. It is idempotent.
func (w *writerSearch) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// probeResult is what one probe learned about one candidate.
type probeResult struct {
	err      error
	writable bool   // read_only = 0 and innodb_read_only = 0
	serverID string // Aurora: the instance's own id
	writerID string // Aurora: the writer's id as the topology table says
}

// search runs one search for call, in its own goroutine.
func (w *writerSearch) search(call *writerSearchCall) {
	defer w.wg.Done()
	w.started.Add(1)
	w.mu.Lock()
	cands := w.cands // the candidates of this search (add never changes them)
	w.mu.Unlock()
	results := make([]probeResult, len(cands))
	shared := w.tryShared(cands, results)
	if !shared {
		var pwg sync.WaitGroup
		for i, c := range cands {
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				results[i] = w.probe(c)
			}()
		}
		pwg.Wait()
	}

	w.mu.Lock()
	prev := w.current
	idx, err := w.choose(results, prev)
	call.idx, call.err = idx, err
	w.gap = w.cfg.interval
	if err == nil {
		w.current = idx
		w.failures = 0
	} else {
		w.failures++
		if w.failures == 1 {
			w.goneAt = w.cfg.now()
		}
		w.gap <<= min(w.failures-1, searchBackoffSteps)
		w.gap += rand.N(w.gap/4 + 1)
	}
	w.running = nil
	w.last = call
	w.lastDone = w.cfg.now()
	w.mu.Unlock()
	// Log and report before releasing the waiters, so that a caller that
	// saw the new writer also sees it counted.
	defer close(call.done)
	if w.cfg.onSearch != nil {
		defer w.cfg.onSearch()
	}

	if err == nil && !shared && w.cfg.shared != nil {
		sctx, cancel := context.WithTimeout(w.base, sharedStoreTimeout)
		w.cfg.shared.Set(sctx, w.cfg.sharedKey, "v1 "+cands[idx].name, sharedWriterTTL)
		cancel()
	}
	if err != nil {
		w.cfg.logger.LogAttrs(w.base, slog.LevelWarn, "dbrouter: writer search found no writable server",
			slog.String("error", err.Error()))
		return
	}
	if idx != prev {
		w.cfg.logger.LogAttrs(w.base, slog.LevelWarn, "dbrouter: writer changed",
			slog.String("from", cands[prev].name), slog.String("to", cands[idx].name))
		if w.cfg.onChange != nil {
			w.cfg.onChange(prev, idx)
		}
	}
}

// probe probes candidate c, bounded by its timeout (see rttStat).
func (w *writerSearch) probe(c writerCandidate) probeResult {
	d := w.cfg.probeTimeout
	if d <= 0 {
		d = c.rtt.probeTimeout()
	}
	ctx, cancel := context.WithTimeout(w.base, d)
	defer cancel()
	return probeWriter(ctx, c.connector, w.cfg.aurora, c.rtt)
}

// tryShared probes alone the writer the fleet shares, if any, and reports
// whether it settles the search: it answered writable (on Aurora, also as
// the writer of its own topology table). Then results holds its answer and
// errNotProbed for the others.
func (w *writerSearch) tryShared(cands []writerCandidate, results []probeResult) bool {
	if w.cfg.shared == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(w.base, sharedStoreTimeout)
	v, err := w.cfg.shared.Get(ctx, w.cfg.sharedKey)
	cancel()
	name, ok := strings.CutPrefix(v, "v1 ")
	if err != nil || !ok {
		return false
	}
	i := slices.IndexFunc(cands, func(c writerCandidate) bool { return c.name == name })
	if i < 0 {
		return false // not one of ours (the store is as hostile as the network)
	}
	r := w.probe(cands[i])
	if r.err != nil || !r.writable || (w.cfg.aurora && !strings.EqualFold(r.writerID, r.serverID)) {
		return false
	}
	for j := range results {
		results[j].err = errNotProbed
	}
	results[i] = r
	w.hits.Add(1)
	return true
}

// choose picks the writer from the probe results: on Aurora the candidate
// whose own id the topology table names as writer, if it is writable;
// otherwise the writable candidate, preferring the current writer if several
// are writable (which only happens while a failover is half done).
func (w *writerSearch) choose(results []probeResult, current int) (int, error) {
	if w.cfg.aurora {
		votes := map[string]int{}
		for _, r := range results {
			if r.err == nil && r.writerID != "" {
				votes[r.writerID]++
			}
		}
		best, n := "", 0
		for id, v := range votes {
			if v > n || (v == n && id < best) {
				best, n = id, v
			}
		}
		if best != "" {
			found := -1
			for i, r := range results {
				if r.err == nil && r.writable && strings.EqualFold(r.serverID, best) {
					if i == current {
						return i, nil
					}
					if found < 0 {
						found = i
					}
				}
			}
			if found >= 0 {
				return found, nil
			}
		}
	}
	found := -1
	for i, r := range results {
		if r.err == nil && r.writable {
			if i == current {
				return i, nil
			}
			if found < 0 {
				found = i
			}
		}
	}
	if found >= 0 {
		return found, nil
	}
	// A current writer that answered "full" is alive: keep it rather than
	// report that there is no writer.
	if current >= 0 && current < len(results) && classifyFailure(nil, results[current].err) == failOverloaded {
		return current, nil
	}
	// Say why each candidate was rejected (endpoint names, never DSNs).
	e := &noWriterError{names: make([]string, len(results)), errs: make([]error, len(results))}
	for i, r := range results {
		e.names[i] = w.cands[i].name
		e.errs[i] = r.err
	}
	return -1, e
}

// noWriterError is the error of a writer search that found no writable
// endpoint. It matches ErrNoWriter and unwraps to the probes' errors.
type noWriterError struct {
	names []string
	errs  []error // nil where the endpoint answered read-only
}

func (e *noWriterError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNoWriter.Error())
	for i, name := range e.names {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(name)
		if e.errs[i] != nil {
			b.WriteString(": ")
			b.WriteString(e.errs[i].Error())
		} else {
			b.WriteString(": read-only")
		}
	}
	return b.String()
}

func (e *noWriterError) Unwrap() []error {
	out := []error{ErrNoWriter}
	for _, err := range e.errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// probeWriter opens a fresh connection through c (so that neither a pooled
// connection to a demoted server nor a cached DNS answer can mislead it),
// asks whether the server is writable and, on Aurora, for its own id and the
// writer's id, and closes the connection. ctx bounds it.
func probeWriter(ctx context.Context, c driver.Connector, aurora bool, rtt *rttStat) (res probeResult) {
	start := time.Now()
	conn, err := c.Connect(ctx)
	if err != nil {
		return probeResult{err: unwrapConnectError(err)}
	}
	rtt.record(time.Since(start))
	defer conn.Close()
	if aurora {
		vals, err := probeQuery(ctx, conn, probeAuroraIDQuery, 2)
		if err != nil {
			return probeResult{err: err}
		}
		res.serverID = probeString(vals[0])
		ro, err := probeBool(vals[1])
		if err != nil {
			return probeResult{err: err}
		}
		res.writable = !ro
		// The topology table is read on every instance; its answer is
		// used only if it names a writer.
		if vals, err := probeQuery(ctx, conn, probeAuroraTopologyQuery, 1); err == nil && vals != nil {
			res.writerID = probeString(vals[0])
		}
		return res
	}
	vals, err := probeQuery(ctx, conn, probeReadOnlyQuery, 2)
	if err != nil {
		return probeResult{err: err}
	}
	ro, err := probeBool(vals[0])
	if err != nil {
		return probeResult{err: err}
	}
	iro, err := probeBool(vals[1])
	if err != nil {
		return probeResult{err: err}
	}
	res.writable = !ro && !iro
	return res
}

// errProbeNoQueryer is returned by a probe when the driver's connection
// cannot run a query without a prepared statement.
var errProbeNoQueryer = errors.New("dbrouter: driver connection does not implement driver.QueryerContext")

// probeQuery runs query on conn and returns the first row's n values, or nil
// if there is no row.
func probeQuery(ctx context.Context, conn driver.Conn, query string, n int) ([]driver.Value, error) {
	q, ok := conn.(driver.QueryerContext)
	if !ok {
		return nil, errProbeNoQueryer
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if len(rows.Columns()) != n {
		return nil, fmt.Errorf("dbrouter: probe got %d columns, want %d", len(rows.Columns()), n)
	}
	vals := make([]driver.Value, n)
	if err := rows.Next(vals); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, err
	}
	for i, v := range vals {
		if b, ok := v.([]byte); ok {
			vals[i] = string(b) // the driver reuses its buffer
		}
	}
	return vals, nil
}

func probeString(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func probeBool(v driver.Value) (bool, error) {
	switch v := v.(type) {
	case int64:
		return v != 0, nil
	case bool:
		return v, nil
	case string, []byte:
		s := strings.ToUpper(probeString(v))
		switch s {
		case "1", "ON", "TRUE":
			return true, nil
		case "0", "OFF", "FALSE":
			return false, nil
		}
	}
	return false, fmt.Errorf("dbrouter: probe got %v for a boolean variable", v)
}
