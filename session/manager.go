package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"
)

// Manager is the net/http side of the sessions: [Manager.Middleware] gives
// every request a lazily loaded session, and the accessors ([Manager.Get],
// [Manager.Put], [Manager.Remove], [Manager.RenewToken], [Manager.Destroy])
// work on the session of the request whose context they get. A Manager
// starts no goroutines, needs no Close, and is safe for concurrent use by
// multiple goroutines; so is one request's session.
type Manager struct {
	cfg      Config
	local    *Store
	stores   map[string]*Store // by region, the local one included
	fallback *Store            // the first other region by name, or nil: serves while the local table is unavailable
	tel      *telemetry
	key      *contextKey
	br       breaker // the local table's availability
}

// contextKey is the type of a Manager's key for its request state; each
// Manager has its own, so two Managers never see each other's sessions.
type contextKey struct{ _ byte }

// New returns a Manager for cfg. It copies and validates cfg (an invalid
// field gives a [*ConfigError], matched by [ErrInvalidConfig]) and does no
// I/O.
func New(cfg Config) (*Manager, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: c, tel: newTelemetry(c), stores: make(map[string]*Store, len(c.Clients)), key: new(contextKey)}
	m.br.interval = c.ProbeInterval
	for region := range c.Clients {
		m.stores[region] = newStore(c, region, m.tel.tracer)
	}
	m.local = m.stores[c.Region]
	other := ""
	for region := range c.Clients {
		if region != c.Region && (other == "" || region < other) {
			other = region
		}
	}
	m.fallback = m.stores[other]
	return m, nil
}

// Store returns the Manager's Store of the given region, or nil if
// [Config.Clients] has none (for creating tables, or for scs).
func (m *Manager) Store(region string) *Store { return m.stores[region] }

func (m *Manager) now() time.Time { return m.cfg.Now() }

// request is what the middleware allocates for every request: small, so
// that a request that never uses its session costs little. Its session
// state is allocated on first use.
type request struct {
	m   *Manager
	req *http.Request // as received: its cookie is parsed on first use
	rw  responseWriter

	mu sync.Mutex // protects st
	st *state
}

// session returns the request's state, allocating it on first use.
func (q *request) session() *state {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.st == nil {
		q.st = &state{m: q.m, req: q.req}
	}
	return q.st
}

// used returns the request's state, or nil if the session was never used.
func (q *request) used() *state {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.st
}

// commit saves the session if it was used (see state.commit).
func (q *request) commit(ctx context.Context, h http.Header) error {
	if st := q.used(); st != nil {
		return st.commit(ctx, h)
	}
	return nil
}

// state is one request's session.
type state struct {
	m   *Manager
	req *http.Request // as received: its cookie is parsed on first use

	mu          sync.Mutex // protects the fields below
	parsed      bool       // the cookie was parsed
	tok         token      // the cookie's token (hasTok) or the one just written
	hasTok      bool
	clearCookie bool // the request's cookie named no usable session
	loaded      bool
	loadErr     error     // the store was unavailable (fail policy)
	degraded    bool      // the store was unavailable (continue policy)
	stale       bool      // the newest copy was unreachable: an older one is shown, changes are refused
	srv         *Store    // the table the session was read from and is written to
	base        record    // the newest copy read, or the one written
	local       condition // what srv held at the last read
	values      map[string]string
	changes     map[string]*string // nil value: removed
	renew       bool
	destroyed   bool
	reads       int64
	writes      int64
}

func (m *Manager) state(ctx context.Context) (*state, error) {
	q, ok := ctx.Value(m.key).(*request)
	if !ok {
		return nil, ErrNoMiddleware
	}
	return q.session(), nil
}

// Middleware returns next wrapped so that every request carries a session.
// The session is read from DynamoDB only when the handler first uses it
// (the cookie, too, is parsed only then), saved (one conditional write)
// only when it changed, and its idle deadline is extended by a write at
// most once per [Config.TouchInterval]. The save happens before the first
// byte of the response, so that the Set-Cookie header can go out; a
// failure there answers the request through [Config.ErrorFunc] instead of
// the handler's response. The response has "Vary: Cookie".
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := &request{m: m, req: r}
		w.Header().Add("Vary", "Cookie")
		r = r.WithContext(context.WithValue(r.Context(), m.key, q))
		rw := &q.rw
		rw.ResponseWriter, rw.q, rw.r = w, q, r
		next.ServeHTTP(rw, r)
		st := q.used()
		if st == nil {
			return // the session was never used: nothing to save or count
		}
		ctx := r.Context()
		if !rw.wroteHeader {
			rw.wroteHeader = true
			if err := st.commit(ctx, w.Header()); err != nil {
				rw.err = err
				m.fail(w, r, err)
			}
		} else if rw.err == nil {
			// Changes made after the response started: saved, but the
			// cookie (and its version) could not be updated any more.
			if err := st.commit(ctx, nil); err != nil {
				m.cfg.Logger.ErrorContext(ctx, "session: saving changes made after the response started failed", slog.Any("error", err))
			}
		}
		st.mu.Lock()
		used, reads, writes := st.loaded || st.destroyed, st.reads, st.writes
		st.mu.Unlock()
		if used {
			m.tel.reads.Record(ctx, reads, m.tel.attrs)
			m.tel.writes.Record(ctx, writes, m.tel.attrs)
		}
	})
}

// fail answers a request whose session could not be loaded or saved.
func (m *Manager) fail(w http.ResponseWriter, r *http.Request, err error) {
	if m.cfg.ErrorFunc != nil {
		m.cfg.ErrorFunc(w, r, err)
		return
	}
	m.cfg.Logger.ErrorContext(r.Context(), "session: request failed", slog.Any("error", err))
	if errors.Is(err, ErrUnavailable) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
}

// Get returns the value of key in the request's session, or "" if it has
// none. The first accessor call of a request reads the session. If DynamoDB
// is unavailable, the error wraps [ErrUnavailable] (and the request will
// be answered with 503), unless [Config.ContinueWithoutSession] is set:
// then the session is empty and the error nil.
func (m *Manager) Get(ctx context.Context, key string) (string, error) {
	st, err := m.state(ctx)
	if err != nil {
		return "", err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.load(ctx); err != nil {
		return "", err
	}
	return st.values[key], nil
}

// Put sets key to value in the request's session. The session is saved
// before the response starts. Setting a key to the value it has is not a
// change (it costs no write). If the session would exceed [MaxItemSize],
// Put returns a [*SizeError] and changes nothing.
func (m *Manager) Put(ctx context.Context, key, value string) error {
	return m.change(ctx, key, &value)
}

// Remove deletes key from the request's session; a missing key is not an error.
func (m *Manager) Remove(ctx context.Context, key string) error {
	return m.change(ctx, key, nil)
}

// removeIfWritten removes key from the request's session if the session
// will be written anyway (it has other changes); else it leaves it.
func (m *Manager) removeIfWritten(ctx context.Context, key string) error {
	st, err := m.state(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	dirty := len(st.changes) > 0 || st.renew
	st.mu.Unlock()
	if !dirty {
		return nil
	}
	return m.change(ctx, key, nil)
}

func (m *Manager) change(ctx context.Context, key string, value *string) error {
	st, err := m.state(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.writable(ctx); err != nil {
		return err
	}
	cur, ok := st.values[key]
	if value == nil {
		if !ok {
			return nil
		}
		delete(st.values, key)
	} else {
		if ok && cur == *value {
			return nil
		}
		next := maps.Clone(st.values)
		next[key] = *value
		if n := itemSize(encodeItem(hashKey(st.tok.id[:]), record{data: encodeValues(next), version: 1 << 62, expiresAt: 1 << 40, createdMS: 1 << 50, touchedMS: 1 << 50, region: m.cfg.Region})); n > MaxItemSize {
			return &SizeError{Key: key, Size: n}
		}
		st.values = next
	}
	if st.changes == nil {
		st.changes = map[string]*string{}
	}
	st.changes[key] = value
	return nil
}

// writable loads the session and reports whether it can be changed.
func (st *state) writable(ctx context.Context) error {
	if st.destroyed {
		return ErrDestroyed
	}
	if err := st.load(ctx); err != nil {
		return err
	}
	if st.degraded {
		return fmt.Errorf("session: continuing without a session, the change cannot be saved: %w", ErrUnavailable)
	}
	if st.stale {
		return fmt.Errorf("session: the newest copy of the session is in a region that cannot be reached, a change now could overwrite it: %w", ErrUnavailable)
	}
	return nil
}

// RenewToken gives the request's session a new id, keeping its values, and
// ends the old id when the session is saved. Call it when the user logs in
// or out or their privileges change (session fixation).
func (m *Manager) RenewToken(ctx context.Context) error {
	st, err := m.state(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.writable(ctx); err != nil {
		return err
	}
	st.renew = true
	return nil
}

// Destroy ends the request's session when the response starts: its item is
// replaced by a tombstone in every region and the cookie removed. It needs
// no read. A destroyed session id never becomes valid again (see the
// package doc, "Logout").
func (m *Manager) Destroy(ctx context.Context) error {
	st, err := m.state(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.destroyed = true
	st.values, st.changes, st.renew = map[string]string{}, nil, false
	return nil
}

// expired reports whether r is past its expiry, its idle deadline or its
// absolute deadline under the current configuration.
func (m *Manager) expired(r record, now time.Time) bool {
	ms := now.UnixMilli()
	return now.Unix() >= r.expiresAt ||
		ms >= r.touchedMS+m.cfg.IdleTimeout.Milliseconds() ||
		ms >= r.createdMS+m.cfg.AbsoluteTimeout.Milliseconds()
}

// parseCookie reads the request's session cookie, once.
func (st *state) parseCookie() {
	if st.parsed {
		return
	}
	st.parsed = true
	c, err := st.req.Cookie(st.m.cfg.CookieName)
	if err != nil {
		return
	}
	if t, err := parseToken(c.Value); err == nil {
		st.tok, st.hasTok = t, true
	} else {
		st.clearCookie = true
	}
}

// load reads the session on first use, from the local table, or from the
// fallback region's while the local one is unavailable. A session whose
// copy there is missing or older than the version in the cookie is read
// from the region the cookie names (once). Unknown, destroyed, expired and
// corrupt sessions give an empty new session.
func (st *state) load(ctx context.Context) error {
	if st.loaded {
		return st.loadErr
	}
	st.loaded = true
	st.values = map[string]string{}
	st.parseCookie()
	if !st.hasTok {
		return nil
	}
	m := st.m
	key := hashKey(st.tok.id[:])
	srv, cur, err := m.read(ctx, st, key)
	if err != nil {
		return st.unavailable(ctx, err)
	}
	st.srv = srv
	st.local = condition{exists: cur.found, version: cur.version}
	best := cur
	now := m.now()
	behind := !cur.found || cur.version < st.tok.version
	// Just after an outage, the local copy may predate what the fallback
	// region received meanwhile (a change, or a logout's tombstone).
	recovering := !behind && srv == m.local && m.fallback != nil && !cur.tomb && m.br.recovering(now, cur.touchedMS)
	unreachable := ""
	if behind || recovering {
		other := m.fallback
		if !recovering {
			other = m.remote(st.tok.region, srv)
		}
		switch {
		case other == nil:
		case other == m.local && m.br.isOpen():
			unreachable = other.region
		default:
			m.tel.fallbacks.Add(ctx, 1, m.tel.attrs)
			st.reads++
			remote, err := m.crossGet(ctx, other, key)
			switch {
			case err != nil:
				unreachable = other.region
				m.cfg.Logger.WarnContext(ctx, "session: cannot read the session's other copy",
					slog.String("region", other.region), slog.Any("error", err))
			case remote.found && (!best.found || remote.version > best.version):
				best = remote
			}
		}
	}
	if unreachable != "" && best.version < st.tok.version && srv == m.fallback && !best.tomb && m.cfg.ReplicationWait > 0 {
		// The newest copy was written in the local region, now
		// unavailable, and may still be on its way here: wait for it a
		// little (Global Tables replicate within about a second).
		if r, ok := st.awaitReplica(ctx, key); ok {
			best = r
			st.local = condition{exists: r.found, version: r.version}
		}
	}
	if unreachable != "" && best.version < st.tok.version {
		// The newest copy is in a region that cannot be read now.
		if !best.found {
			return st.unavailable(ctx, fmt.Errorf("session: the session's newest copy is in %s, which cannot be reached: %w", unreachable, ErrUnavailable))
		}
		st.stale = true
		m.tel.stale.Add(ctx, 1, m.tel.attrs)
	}
	if !best.found || best.tomb {
		st.forget()
		return nil
	}
	if m.expired(best, now) {
		m.tel.expired.Add(ctx, 1, m.tel.attrs)
		st.forget()
		return nil
	}
	vals, err := decodeValues(best.data)
	if err != nil {
		m.cfg.Logger.WarnContext(ctx, "session: unreadable session data, starting a new session", slog.Any("error", err))
		st.forget()
		return nil
	}
	st.base, st.values = best, vals
	return nil
}

// awaitReplica re-reads key from the fallback region's table until it
// holds the cookie's version or newer, for at most [Config.ReplicationWait].
func (st *state) awaitReplica(ctx context.Context, key string) (record, bool) {
	m := st.m
	deadline := time.Now().Add(m.cfg.ReplicationWait)
	for {
		t := time.NewTimer(replicaPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return record{}, false
		case <-t.C:
		}
		st.reads++
		r, err := m.crossGet(ctx, m.fallback, key)
		if err == nil && r.found && r.version >= st.tok.version {
			return r, true
		}
		if err != nil || !time.Now().Before(deadline) {
			return record{}, false
		}
	}
}

// replicaPoll is the interval of awaitReplica's reads.
const replicaPoll = 100 * time.Millisecond

// read reads key from the local table, or, when the breaker says it is
// unavailable or this read finds it so, from the fallback region's. It
// returns the table it read.
func (m *Manager) read(ctx context.Context, st *state, key string) (*Store, record, error) {
	useLocal, probe := true, false
	if m.fallback != nil {
		useLocal, probe = m.br.route(m.now())
	}
	if useLocal {
		st.reads++
		r, err := m.local.get(ctx, key)
		if m.fallback == nil || m.localResult(ctx, err, probe) {
			return m.local, r, err
		}
	}
	st.reads++
	m.tel.failover.Add(ctx, 1, m.tel.attrs)
	r, err := m.crossGet(ctx, m.fallback, key)
	return m.fallback, r, err
}

// crossGet reads key from another region's table and records the time it
// took (the cross-region round trip).
func (m *Manager) crossGet(ctx context.Context, s *Store, key string) (record, error) {
	t0 := time.Now()
	r, err := s.get(ctx, key)
	m.tel.crossRegion.Record(ctx, time.Since(t0).Seconds(), m.tel.attrs)
	return r, err
}

// localResult reports the outcome of a call to the local table to the
// breaker. It returns false if the local table is unavailable (the caller
// then uses the fallback region), true if the result stands.
func (m *Manager) localResult(ctx context.Context, err error, probe bool) bool {
	if err == nil {
		if m.br.success(m.now()) {
			m.cfg.Logger.InfoContext(ctx, "session: the local table is available again", slog.String("region", m.cfg.Region))
		}
		return true
	}
	if !isOutage(ctx, err) {
		if probe {
			m.br.release()
		}
		return true
	}
	if m.br.failure(m.now()) {
		m.tel.breakerOpened.Add(ctx, 1, m.tel.attrs)
		m.cfg.Logger.WarnContext(ctx, "session: the local table is unavailable, serving sessions from another region's replica",
			slog.String("region", m.cfg.Region), slog.String("fallback_region", m.fallback.region), slog.Any("error", err))
	}
	return false
}

// writeTarget is the table a new session is written to.
func (m *Manager) writeTarget() *Store {
	if m.fallback != nil && m.br.isOpen() {
		return m.fallback
	}
	return m.local
}

// remote returns the store to read when the copy in srv of a session whose
// cookie names home is missing or older than the cookie's version: home's,
// or, when home is srv's region (its newer copy was overwritten by an older
// one replicated late: Global Tables resolve concurrent writes by last
// writer wins), another region's. nil if there is none.
func (m *Manager) remote(home string, srv *Store) *Store {
	if home != srv.region {
		if s := m.stores[home]; s != nil {
			return s
		}
	}
	if srv != m.local {
		return m.local
	}
	return m.fallback
}

// forget drops the cookie's session: the next save creates a new one, and
// the response clears the cookie if nothing is saved.
func (st *state) forget() {
	st.hasTok, st.clearCookie, st.tok = false, true, token{}
}

// unavailable applies the failure policy to a load error.
func (st *state) unavailable(ctx context.Context, err error) error {
	st.m.tel.unavailable.Add(ctx, 1, st.m.tel.attrs)
	if st.m.cfg.ContinueWithoutSession {
		st.degraded = true
		st.m.cfg.Logger.WarnContext(ctx, "session: store unavailable, continuing without a session", slog.Any("error", err))
		return nil
	}
	st.loadErr = err
	return err
}

// commit saves the session if it changed or its idle deadline is due for
// extension, and sets the cookie in h (nil: the response has started).
func (st *state) commit(ctx context.Context, h http.Header) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.m
	if st.loadErr != nil {
		return st.loadErr
	}
	if st.destroyed {
		st.parseCookie()
		if st.hasTok {
			if err := st.bury(ctx, hashKey(st.tok.id[:]), true); err != nil {
				return err
			}
			st.hasTok = false
		}
		st.setCookie(h, "", time.Time{})
		return nil
	}
	if !st.parsed {
		return nil // the session was never used
	}
	now := m.now()
	dirty := len(st.changes) > 0 || st.renew
	touch := !dirty && st.loaded && st.base.found && !st.degraded && !st.stale &&
		now.UnixMilli()-st.base.touchedMS >= m.cfg.TouchInterval.Milliseconds()
	if !dirty && !touch {
		if st.clearCookie {
			st.setCookie(h, "", time.Time{})
			st.clearCookie = false
		}
		return nil
	}
	err := st.save(ctx, h, now)
	if err != nil && !dirty && errors.Is(err, ErrUnavailable) {
		// A failed touch loses nothing the user did: count it and go on.
		m.tel.unavailable.Add(ctx, 1, m.tel.attrs)
		m.cfg.Logger.WarnContext(ctx, "session: extending the idle deadline failed", slog.Any("error", err))
		return nil
	}
	return err
}

// bury replaces the item of key by a tombstone in the table the session
// was read from (or the local one, or the fallback while the local one is
// unavailable), and, if everywhere, in every other region's table too, so
// that a save racing the logout there succeeds only before the tombstone
// arrives. A failure in the first table is returned; in the others it is
// logged (replication delivers the tombstone later).
func (st *state) bury(ctx context.Context, key string, everywhere bool) error {
	m := st.m
	now := m.now()
	srv := st.srv
	if srv == nil {
		srv = m.writeTarget()
	}
	// While the local table is unavailable, its copy may be newer than the
	// fallback's, or the only one (not replicated yet): the fallback gets
	// the tombstone whether it holds the item or not, so that last writer
	// wins ends that copy too when the regions reconcile.
	mustExist := !(srv == m.fallback && m.br.isOpen())
	st.writes++
	exists, err := srv.putTomb(ctx, key, now, m.cfg.AbsoluteTimeout, mustExist)
	if srv == m.local && m.fallback != nil && !m.localResult(ctx, err, false) {
		srv = m.fallback
		st.writes++
		exists, err = srv.putTomb(ctx, key, now, m.cfg.AbsoluteTimeout, false)
	}
	if err != nil || !everywhere {
		return err
	}
	// A session that exists gets the tombstone in every other region even
	// where it has not arrived yet: its versions on the way are older.
	for _, o := range m.stores {
		if o == srv || (o == m.local && m.br.isOpen()) {
			continue
		}
		st.writes++
		if _, err := o.putTomb(ctx, key, now, m.cfg.AbsoluteTimeout, !exists); err != nil {
			m.cfg.Logger.WarnContext(ctx, "session: writing a destroyed session's tombstone in another region failed; replication will deliver it",
				slog.String("region", o.region), slog.Any("error", err))
		}
	}
	return nil
}

// save writes the session with a conditional put on the table it was read
// from (the local one unless it was unavailable). When another request
// changed the session first (the condition fails), it re-reads the item,
// applies this request's changed keys onto it (per-key last writer wins;
// keys this request did not change keep the other request's values) and
// tries again, at most MaxConflictRetries times. When the local table
// turns out to be unavailable, it does the same against the fallback
// region's replica, provided that replica is at least as new as every
// version this request knows of.
func (st *state) save(ctx context.Context, h http.Header, now time.Time) error {
	m := st.m
	id := st.tok.id
	fresh := !st.hasTok || st.renew
	cond, srv := st.local, st.srv
	if fresh || srv == nil {
		srv = m.writeTarget()
	}
	if fresh {
		var err error
		if id, err = newID(); err != nil {
			return fmt.Errorf("session: new session id: %w", err)
		}
		cond = condition{}
	}
	known := max(st.base.version, cond.version)
	if st.hasTok {
		known = max(known, st.tok.version)
	}
	key := hashKey(id[:])
	base, values := st.base, st.values
	for attempt := 0; ; attempt++ {
		rec := record{
			data:      encodeValues(values),
			version:   max(base.version, cond.version) + 1,
			createdMS: base.createdMS,
			touchedMS: now.UnixMilli(),
			region:    srv.region,
		}
		if !base.found || rec.createdMS == 0 {
			rec.createdMS = now.UnixMilli()
		}
		rec.expiresAt = (min(rec.touchedMS+m.cfg.IdleTimeout.Milliseconds(), rec.createdMS+m.cfg.AbsoluteTimeout.Milliseconds()) + 999) / 1000
		rec.found = true
		st.writes++
		err := srv.put(ctx, key, rec, cond)
		failover := srv == m.local && m.fallback != nil && !m.localResult(ctx, err, false)
		if err == nil {
			if fresh && st.hasTok { // renewed: the old id must stop working
				if err := st.bury(ctx, hashKey(st.tok.id[:]), false); err != nil {
					m.cfg.Logger.WarnContext(ctx, "session: ending the renewed session's old id failed", slog.Any("error", err))
				}
			}
			st.tok = token{id: id, version: rec.version, region: srv.region}
			st.hasTok, st.renew, st.changes, st.clearCookie = true, false, nil, false
			st.base, st.values, st.local, st.srv = rec, values, condition{exists: true, version: rec.version}, srv
			st.setCookie(h, st.tok.format(), time.UnixMilli(rec.createdMS+m.cfg.AbsoluteTimeout.Milliseconds()))
			return nil
		}
		if failover {
			srv = m.fallback
			m.tel.failover.Add(ctx, 1, m.tel.attrs)
			if fresh {
				continue
			}
		} else {
			if !errors.Is(err, errConditionFailed) {
				return err
			}
			m.tel.conflicts.Add(ctx, 1, m.tel.attrs)
			if attempt >= m.cfg.MaxConflictRetries {
				return fmt.Errorf("%w (%d attempts)", ErrConflict, attempt+1)
			}
			if fresh { // a 192-bit id collided: draw another
				if id, err = newID(); err != nil {
					return fmt.Errorf("session: new session id: %w", err)
				}
				key = hashKey(id[:])
				continue
			}
		}
		st.reads++
		cur, err := srv.get(ctx, key)
		if err != nil {
			return err
		}
		if failover && !cur.tomb && (!cur.found || cur.version < known) {
			// The replica has not received this session's newest version:
			// writing there would fork it, and last writer wins would
			// drop that version when the regions reconcile.
			return fmt.Errorf("session: the local table is unavailable and %s's replica of the session is older than its newest version: %w", srv.region, ErrUnavailable)
		}
		destroyed := cur.tomb || (!failover && cond.exists && !cur.found)
		cond = condition{exists: cur.found, version: cur.version}
		if destroyed {
			if len(st.changes) == 0 && !st.renew {
				// Only a touch of a session another request destroyed.
				st.forget()
				st.base, st.values, st.local = record{}, map[string]string{}, condition{}
				st.setCookie(h, "", time.Time{})
				return nil
			}
			// The id stays dead: the changes this request made go to a
			// new session, as if they had come after the logout.
			if id, err = newID(); err != nil {
				return fmt.Errorf("session: new session id: %w", err)
			}
			fresh, key, cond, base = true, hashKey(id[:]), condition{}, record{}
			values = map[string]string{}
			for k, nv := range st.changes {
				if nv != nil {
					values[k] = *nv
				}
			}
			continue
		}
		var from map[string]string
		if cur.found && cur.version >= base.version && !m.expired(cur, now) {
			if v, err := decodeValues(cur.data); err == nil {
				base, from = cur, v
			}
		}
		if from != nil { // rebase this request's changes onto the newer copy
			for k, nv := range st.changes {
				if nv == nil {
					delete(from, k)
				} else {
					from[k] = *nv
				}
			}
			values = from
		}
		if len(st.changes) == 0 && !st.renew && base.found && now.UnixMilli()-base.touchedMS < m.cfg.TouchInterval.Milliseconds() {
			// Only a touch, and the concurrent writer already extended the
			// deadline.
			st.base, st.values, st.local, st.srv = base, values, cond, srv
			st.tok.version = max(st.tok.version, base.version)
			return nil
		}
	}
}

// setCookie adds the session cookie (value "" removes it) to h.
func (st *state) setCookie(h http.Header, value string, expires time.Time) {
	if h == nil {
		return
	}
	c := st.m.cfg
	ck := &http.Cookie{
		Name:     c.CookieName,
		Value:    value,
		Path:     c.CookiePath,
		Domain:   c.CookieDomain,
		Secure:   !c.InsecureCookie,
		HttpOnly: !c.ScriptReadableCookie,
		SameSite: c.CookieSameSite,
	}
	if value == "" {
		ck.MaxAge = -1
		ck.Expires = time.Unix(1, 0)
	} else {
		ck.Expires = expires.UTC()
	}
	h.Add("Set-Cookie", ck.String())
	h.Add("Cache-Control", `no-cache="Set-Cookie"`)
}

// responseWriter saves the session before the response's first byte.
type responseWriter struct {
	http.ResponseWriter
	q           *request
	r           *http.Request
	wroteHeader bool
	err         error // the save failed and the response was replaced
}

// WriteHeader saves the session, then writes the header (or, if the save
// failed, the error response instead).
func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // informational: the real header comes later
		return
	}
	if !w.wroteHeader {
		w.wroteHeader = true
		if err := w.q.commit(w.r.Context(), w.Header()); err != nil {
			w.err = err
			w.q.m.fail(w.ResponseWriter, w.r, err)
			return
		}
	}
	if w.err == nil {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write saves the session before the first byte. After a failed save it
// discards b and returns the save's error.
func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	return w.ResponseWriter.Write(b)
}

// Flush saves the session, then flushes the underlying writer if it can.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
