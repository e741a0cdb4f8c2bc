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
	cfg    Config
	local  *Store
	stores map[string]*Store // by region, the local one included
	tel    *telemetry
	key    *contextKey
	other  string // the first other region by name, or ""
}

// contextKey is the type of a Manager's key for its request state; each
// Manager has its own, so two Managers never see each other's sessions.
type contextKey struct{ _ byte }

// New returns a Manager for cfg. It copies and validates cfg and does no I/O.
func New(cfg Config) (*Manager, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: c, tel: newTelemetry(c), stores: make(map[string]*Store, len(c.Clients)), key: new(contextKey)}
	for region := range c.Clients {
		m.stores[region] = newStore(c, region, m.tel.tracer)
	}
	m.local = m.stores[c.Region]
	for region := range c.Clients {
		if region != c.Region && (m.other == "" || region < m.other) {
			m.other = region
		}
	}
	return m, nil
}

// Store returns the Manager's Store of the given region, or nil if
// [Config.Clients] has none (for creating tables, or for scs).
func (m *Manager) Store(region string) *Store { return m.stores[region] }

// state is one request's session.
type state struct {
	m *Manager

	mu          sync.Mutex // protects the fields below
	tok         token      // the cookie's token (hasTok) or the one just written
	hasTok      bool
	clearCookie bool // the request's cookie named no usable session
	loaded      bool
	loadErr     error     // the store was unavailable (fail policy)
	degraded    bool      // the store was unavailable (continue policy)
	base        record    // the newest copy read, or the one written
	local       condition // what the local table held at the last read
	values      map[string]string
	changes     map[string]*string // nil value: removed
	renew       bool
	destroyed   bool
	reads       int64
	writes      int64
}

func (m *Manager) state(ctx context.Context) (*state, error) {
	st, ok := ctx.Value(m.key).(*state)
	if !ok {
		return nil, ErrNoMiddleware
	}
	return st, nil
}

// Middleware returns next wrapped so that every request carries a session.
// The session is read from DynamoDB only when the handler first uses it,
// saved (one conditional write) only when it changed, and its idle deadline
// is extended by a write at most once per [Config.TouchInterval]. The save
// happens before the first byte of the response, so that the Set-Cookie
// header can go out; a failure there answers the request through
// [Config.ErrorFunc] instead of the handler's response. The response has
// "Vary: Cookie".
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &state{m: m}
		if c, err := r.Cookie(m.cfg.CookieName); err == nil {
			if t, err := parseToken(c.Value); err == nil {
				st.tok, st.hasTok = t, true
			} else {
				st.clearCookie = true
			}
		}
		w.Header().Add("Vary", "Cookie")
		r = r.WithContext(context.WithValue(r.Context(), m.key, st))
		rw := &responseWriter{ResponseWriter: w, st: st, r: r}
		next.ServeHTTP(rw, r)
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
				m.cfg.Logger.ErrorContext(ctx, "session: saving changes made after the response started failed", slog.Any("err", err))
			}
		}
		st.mu.Lock()
		reads, writes := st.reads, st.writes
		st.mu.Unlock()
		m.tel.reads.Record(ctx, reads, m.tel.attrs)
		m.tel.writes.Record(ctx, writes, m.tel.attrs)
	})
}

// fail answers a request whose session could not be loaded or saved.
func (m *Manager) fail(w http.ResponseWriter, r *http.Request, err error) {
	if m.cfg.ErrorFunc != nil {
		m.cfg.ErrorFunc(w, r, err)
		return
	}
	m.cfg.Logger.ErrorContext(r.Context(), "session: request failed", slog.Any("err", err))
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
	return nil
}

// RenewToken gives the request's session a new id, keeping its values, and
// deletes the old id's item when the session is saved. Call it when the
// user logs in or out or their privileges change (session fixation).
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

// Destroy ends the request's session: its item is deleted and the cookie
// removed when the response starts. It needs no read.
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

// load reads the session on first use. A session whose local copy is
// missing or older than the version in the cookie is read from the region
// the cookie names (once). Unknown, expired and corrupt sessions give an
// empty new session.
func (st *state) load(ctx context.Context) error {
	if st.loaded {
		return st.loadErr
	}
	st.loaded = true
	st.values = map[string]string{}
	if !st.hasTok {
		return nil
	}
	m := st.m
	key := hashKey(st.tok.id[:])
	local, err := m.local.get(ctx, key)
	st.reads++
	if err != nil {
		return st.unavailable(ctx, err)
	}
	st.local = condition{exists: local.found, version: local.version}
	best := local
	if !local.found || local.version < st.tok.version {
		if home := m.remote(st.tok.region); home != nil {
			m.tel.fallbacks.Add(ctx, 1, m.tel.attrs)
			remote, err := home.get(ctx, key)
			st.reads++
			switch {
			case err != nil && !local.found:
				return st.unavailable(ctx, err)
			case err != nil:
				m.cfg.Logger.WarnContext(ctx, "session: home region unreachable, using the older local copy",
					slog.String("home_region", home.region), slog.Any("err", err))
			case remote.found && (!best.found || remote.version > best.version):
				best = remote
			}
		}
	}
	if !best.found {
		st.forget()
		return nil
	}
	if m.expired(best, m.cfg.Now()) {
		m.tel.expired.Add(ctx, 1, m.tel.attrs)
		st.forget()
		return nil
	}
	vals, err := decodeValues(best.data)
	if err != nil {
		m.cfg.Logger.WarnContext(ctx, "session: unreadable session data, starting a new session", slog.Any("err", err))
		st.forget()
		return nil
	}
	st.base, st.values = best, vals
	return nil
}

// remote returns the store to read when the local copy of a session whose
// cookie names home is missing or older than the cookie's version: home's,
// or, when home is this region (its newer copy was overwritten by an older
// one replicated late: Global Tables resolve concurrent writes by last
// writer wins), the first other region's. nil if there is none.
func (m *Manager) remote(home string) *Store {
	if home != m.cfg.Region {
		return m.stores[home]
	}
	return m.stores[m.other]
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
		st.m.cfg.Logger.WarnContext(ctx, "session: store unavailable, continuing without a session", slog.Any("err", err))
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
		if st.hasTok {
			st.writes++
			if err := m.local.del(ctx, hashKey(st.tok.id[:])); err != nil {
				return err
			}
			st.hasTok = false
		}
		st.setCookie(h, "", time.Time{})
		return nil
	}
	now := m.cfg.Now()
	dirty := len(st.changes) > 0 || st.renew
	touch := !dirty && st.loaded && st.base.found && !st.degraded &&
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
		m.cfg.Logger.WarnContext(ctx, "session: extending the idle deadline failed", slog.Any("err", err))
		return nil
	}
	return err
}

// save writes the session with a conditional put on the local table. When
// another request changed the session first (the condition fails), it
// re-reads the local item, applies this request's changed keys onto it
// (per-key last writer wins; keys this request did not change keep the
// other request's values) and tries again, at most MaxConflictRetries times.
func (st *state) save(ctx context.Context, h http.Header, now time.Time) error {
	m := st.m
	id := st.tok.id
	fresh := !st.hasTok || st.renew
	cond := st.local
	if fresh {
		var err error
		if id, err = newID(); err != nil {
			return fmt.Errorf("session: new session id: %w", err)
		}
		cond = condition{}
	}
	key := hashKey(id[:])
	base, values := st.base, st.values
	for attempt := 0; ; attempt++ {
		rec := record{
			data:      encodeValues(values),
			version:   max(base.version, cond.version) + 1,
			createdMS: base.createdMS,
			touchedMS: now.UnixMilli(),
			region:    m.cfg.Region,
		}
		if !base.found || rec.createdMS == 0 {
			rec.createdMS = now.UnixMilli()
		}
		rec.expiresAt = (min(rec.touchedMS+m.cfg.IdleTimeout.Milliseconds(), rec.createdMS+m.cfg.AbsoluteTimeout.Milliseconds()) + 999) / 1000
		rec.found = true
		st.writes++
		err := m.local.put(ctx, key, rec, cond)
		if err == nil {
			if fresh && st.hasTok { // renewed: the old id must stop working
				st.writes++
				if err := m.local.del(ctx, hashKey(st.tok.id[:])); err != nil {
					m.cfg.Logger.WarnContext(ctx, "session: deleting the renewed session's old item failed", slog.Any("err", err))
				}
			}
			st.tok = token{id: id, version: rec.version, region: m.cfg.Region}
			st.hasTok, st.renew, st.changes, st.clearCookie = true, false, nil, false
			st.base, st.values, st.local = rec, values, condition{exists: true, version: rec.version}
			st.setCookie(h, st.tok.format(), time.UnixMilli(rec.createdMS+m.cfg.AbsoluteTimeout.Milliseconds()))
			return nil
		}
		if !errors.Is(err, errConflict) {
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
		cur, err := m.local.get(ctx, key)
		st.reads++
		if err != nil {
			return err
		}
		deleted := cond.exists && !cur.found // destroyed by a concurrent request
		cond = condition{exists: cur.found, version: cur.version}
		var from map[string]string
		switch {
		case deleted:
			base, from = record{}, map[string]string{}
		case cur.found && cur.version >= base.version && !m.expired(cur, now):
			if v, err := decodeValues(cur.data); err == nil {
				base, from = cur, v
			}
		}
		if deleted && len(st.changes) == 0 && !st.renew {
			// Only a touch of a session another request destroyed.
			st.forget()
			st.base, st.values, st.local = record{}, map[string]string{}, condition{}
			st.setCookie(h, "", time.Time{})
			return nil
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
			st.base, st.values, st.local = base, values, cond
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
	st          *state
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
		if err := w.st.commit(w.r.Context(), w.Header()); err != nil {
			w.err = err
			w.st.m.fail(w.ResponseWriter, w.r, err)
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
