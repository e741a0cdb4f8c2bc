package main

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/regiondb/regiondb/dbrouter"
)

// Records cached for every request.
type user struct {
	ID         int64  `json:"id"`
	Email      string `json:"email"`
	Name       string `json:"name"`
	HomeRegion string `json:"home_region"`
}

type member struct {
	UserID int64  `json:"user_id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
}

type family struct {
	ID      int64    `json:"id"`
	Name    string   `json:"name"`
	Members []member `json:"members"`
}

type photo struct {
	ID          int64     `json:"id"`
	UploadedBy  int64     `json:"uploaded_by"`
	Caption     string    `json:"caption"`
	ContentType string    `json:"content_type"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	CreatedAt   time.Time `json:"created_at"`
}

type album struct {
	ID       int64   `json:"id"`
	FamilyID int64   `json:"family_id"`
	Title    string  `json:"title"`
	Photos   []photo `json:"photos"`
}

type notification struct {
	ID         int64     `json:"id"`
	Kind       string    `json:"kind"`
	AlbumID    int64     `json:"album_id"`
	PhotoCount int       `json:"photo_count"`
	Link       string    `json:"link"`
	CreatedAt  time.Time `json:"created_at"`
}

// push is a notification as sent to the push provider (see outbox).
type push struct {
	UserID   int64   `json:"user_id"`
	AlbumID  int64   `json:"album_id"`
	PhotoIDs []int64 `json:"photo_ids"`
	Link     string  `json:"link"`
}

// outbox stands in for a push or email provider: it keeps the last pushes
// per user until GET /debug/outbox fetches them.
type outbox struct {
	mu     sync.Mutex // protects byUser
	byUser map[int64][]push
}

func (o *outbox) send(p push) {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := append(o.byUser[p.UserID], p)
	if len(q) > 100 {
		q = q[len(q)-100:]
	}
	o.byUser[p.UserID] = q
}

func (o *outbox) take(userID int64) []push {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.byUser[userID]
	delete(o.byUser, userID)
	return q
}

type app struct {
	cfg    config
	b      *backends
	tel    *telemetry
	log    *slog.Logger
	outbox outbox
}

func newApp(cfg config, b *backends, tel *telemetry, logger *slog.Logger) *app {
	return &app{cfg: cfg, b: b, tel: tel, log: logger, outbox: outbox{byUser: map[int64][]push{}}}
}

type userKey struct{}

// handler routes the API. Each route runs inside its span, then the session
// middleware, then the consistency (read-your-writes token) middleware.
func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error, auth bool) {
		var next http.Handler = a.errors(h)
		if auth {
			next = a.requireUser(next)
		}
		next = a.b.sessions.Middleware(a.b.consistency(next))
		mux.Handle(pattern, a.tel.instrument(pattern, next))
	}
	handle("POST /signup", a.signup, false)
	handle("POST /login", a.login, false)
	handle("POST /logout", a.logout, false)
	handle("GET /me", a.me, true)
	handle("PATCH /me", a.renameMe, true)
	handle("POST /families", a.createFamily, true)
	handle("GET /families/{id}", a.getFamily, true)
	handle("PATCH /families/{id}", a.renameFamily, true)
	handle("POST /families/{id}/members", a.addMember, true)
	handle("POST /families/{id}/albums", a.createAlbum, true)
	handle("GET /albums/{id}", a.getAlbum, true)
	handle("POST /albums/{id}/photos", a.addPhotos, true)
	handle("GET /notifications", a.notifications, true)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		a.b.health.serve(w, r, a.cfg.region, a.b.describe)
	})
	if a.cfg.debug {
		mux.HandleFunc("GET /debug/metrics", a.tel.serveMetrics)
		mux.HandleFunc("GET /debug/outbox", func(w http.ResponseWriter, r *http.Request) {
			id, _ := strconv.ParseInt(r.URL.Query().Get("user"), 10, 64)
			writeJSON(w, http.StatusOK, a.outbox.take(id))
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-Region", a.cfg.region)
		mux.ServeHTTP(w, r)
	})
}

// httpError is an error with the status and message the client gets.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// errors turns a handler's error into a JSON error response; unexpected
// errors are logged and answered with a bare 500 or 503.
func (a *app) errors(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpError
		switch {
		case errors.As(err, &he):
		case errors.Is(err, sql.ErrNoRows):
			he = &httpError{http.StatusNotFound, "not found"}
		case errors.Is(err, context.Canceled):
			return
		case errors.Is(err, dbrouter.ErrOutcomeUnknown):
			// The write may or may not have committed (the connection
			// broke after it was sent): say so rather than invite a
			// blind retry.
			a.log.WarnContext(r.Context(), "write outcome unknown", "route", r.Pattern, "err", err)
			he = &httpError{http.StatusServiceUnavailable, "the outcome of this change is unknown: reload before retrying"}
		case errors.Is(err, dbrouter.ErrNoWriter):
			a.log.WarnContext(r.Context(), "no writer (failover?)", "route", r.Pattern, "err", err)
			w.Header().Set("Retry-After", "1")
			he = &httpError{http.StatusServiceUnavailable, "temporarily unavailable"}
		default:
			a.log.ErrorContext(r.Context(), "request failed", "route", r.Pattern, "err", err)
			he = &httpError{http.StatusServiceUnavailable, "temporarily unavailable"}
		}
		writeJSON(w, he.status, map[string]string{"error": he.msg})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "bad JSON body")
	}
	return nil
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusNotFound, "not found")
	}
	return id, nil
}

// requireUser loads the session's user record (through the cache) or answers 401.
func (a *app) requireUser(next http.Handler) http.Handler {
	return a.errors(func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		id, err := a.b.sessions.UserID(ctx)
		if err != nil {
			return err
		}
		if id == 0 {
			return errorf(http.StatusUnauthorized, "log in first")
		}
		u, err := a.user(ctx, id)
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(http.StatusUnauthorized, "log in first")
		}
		if err != nil {
			return err
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userKey{}, u)))
		return nil
	})
}

func currentUser(ctx context.Context) user {
	u, _ := ctx.Value(userKey{}).(user)
	return u
}

func (a *app) userCacheKey(id int64) string {
	return a.cfg.cachePrefix + "user:" + strconv.FormatInt(id, 10)
}
func (a *app) familyCacheKey(id int64) string {
	return a.cfg.cachePrefix + "family:" + strconv.FormatInt(id, 10)
}

// cached reads a record through the cache; load must use the ctx it gets.
// ctx carries the request's read-your-writes scope (the consistency
// middleware restores it from the token), so a user who just changed the
// record never gets an older cached copy, in any region: the cache loads it
// for them instead, even before the other regions' invalidation arrives.
func cached[T any](ctx context.Context, a *app, kind, key string, load func(ctx context.Context) (T, error)) (T, error) {
	var v T
	b, err := a.b.cache.Get(ctx, key, func(ctx context.Context) ([]byte, error) {
		// photoalbum.fresh_after_write is always false now (the cookie that
		// bypassed the cache after a write is gone); the demo's report
		// still selects on it.
		a.tel.loads.Add(ctx, 1, metric.WithAttributes(attribute.String("photoalbum.record", kind), attribute.Bool("photoalbum.fresh_after_write", false)))
		v, err := load(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	})
	if err != nil {
		return v, err
	}
	err = json.Unmarshal(b, &v)
	return v, err
}

func (a *app) user(ctx context.Context, id int64) (user, error) {
	return cached(ctx, a, "user", a.userCacheKey(id), func(ctx context.Context) (user, error) {
		u := user{ID: id}
		err := a.b.db.QueryRowContext(ctx, "SELECT email, name, home_region FROM users WHERE id = ?", id).
			Scan(&u.Email, &u.Name, &u.HomeRegion)
		return u, err
	})
}

func (a *app) family(ctx context.Context, id int64) (family, error) {
	return cached(ctx, a, "family", a.familyCacheKey(id), func(ctx context.Context) (family, error) {
		f := family{ID: id, Members: []member{}}
		if err := a.b.db.QueryRowContext(ctx, "SELECT name FROM families WHERE id = ?", id).Scan(&f.Name); err != nil {
			return f, err
		}
		rows, err := a.b.db.QueryContext(ctx,
			`SELECT m.user_id, u.name, m.role FROM memberships m JOIN users u ON u.id = m.user_id
			 WHERE m.family_id = ? ORDER BY m.user_id`, id)
		if err != nil {
			return f, err
		}
		defer rows.Close()
		for rows.Next() {
			var m member
			if err := rows.Scan(&m.UserID, &m.Name, &m.Role); err != nil {
				return f, err
			}
			f.Members = append(f.Members, m)
		}
		return f, rows.Err()
	})
}

// memberFamily returns the family record if the current user belongs to it.
func (a *app) memberFamily(ctx context.Context, id int64) (family, error) {
	f, err := a.family(ctx, id)
	if err != nil {
		return f, err
	}
	me := currentUser(ctx).ID
	for _, m := range f.Members {
		if m.UserID == me {
			return f, nil
		}
	}
	return f, errorf(http.StatusNotFound, "not found")
}

func hashPassword(password string, salt []byte) []byte {
	// 4096 rounds keep the demo fast; use far more (or argon2id) in production.
	h, _ := pbkdf2.Key(sha256.New, password, salt, 4096, 32)
	return h
}

func (a *app) signup(w http.ResponseWriter, r *http.Request) error {
	var in struct{ Email, Name, Password string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	in.Email = strings.ToLower(strings.TrimSpace(in.Email))
	if in.Email == "" || in.Name == "" || len(in.Password) < 8 {
		return errorf(http.StatusBadRequest, "email, name and a password of 8 or more characters are required")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	ctx := r.Context()
	res, err := a.b.db.ExecContext(ctx,
		"INSERT INTO users (email, name, password_salt, password_hash, home_region) VALUES (?, ?, ?, ?, ?)",
		in.Email, in.Name, salt, hashPassword(in.Password, salt), a.cfg.region)
	if isDuplicate(err) {
		return errorf(http.StatusConflict, "email already registered")
	}
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if err := a.b.sessions.Login(ctx, id); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, user{ID: id, Email: in.Email, Name: in.Name, HomeRegion: a.cfg.region})
	return nil
}

func (a *app) login(w http.ResponseWriter, r *http.Request) error {
	var in struct{ Email, Password string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	ctx := r.Context()
	var (
		u          user
		salt, hash []byte
	)
	u.Email = strings.ToLower(strings.TrimSpace(in.Email))
	err := a.b.db.QueryRowContext(ctx,
		"SELECT id, name, home_region, password_salt, password_hash FROM users WHERE email = ?", u.Email).
		Scan(&u.ID, &u.Name, &u.HomeRegion, &salt, &hash)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !hmac.Equal(hash, hashPassword(in.Password, salt))) {
		return errorf(http.StatusUnauthorized, "wrong email or password")
	}
	if err != nil {
		return err
	}
	if err := a.b.sessions.Login(ctx, u.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) error {
	if err := a.b.sessions.Logout(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *app) me(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	u := currentUser(ctx)
	families, err := a.familiesOf(ctx, u.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u, "families": families})
	return nil
}

func (a *app) renameMe(w http.ResponseWriter, r *http.Request) error {
	var in struct{ Name string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if in.Name == "" {
		return errorf(http.StatusBadRequest, "name is required")
	}
	ctx := r.Context()
	u := currentUser(ctx)
	if _, err := a.b.db.ExecContext(ctx, "UPDATE users SET name = ? WHERE id = ?", in.Name, u.ID); err != nil {
		return err
	}
	// The user's name is also part of each family record. Ask the writer
	// which families: a reader would first have to apply the update (a
	// wait in a remote region), and reading before the update could miss a
	// family joined meanwhile.
	families, err := a.familiesOf(dbrouter.WithWriter(ctx), u.ID)
	if err != nil {
		return err
	}
	keys := []string{a.userCacheKey(u.ID)}
	for _, id := range families {
		keys = append(keys, a.familyCacheKey(id))
	}
	for _, key := range keys {
		if err := a.b.cache.Invalidate(ctx, key); err != nil {
			return err
		}
	}
	u.Name = in.Name
	writeJSON(w, http.StatusOK, u)
	return nil
}

// familiesOf returns the ids of the user's families.
func (a *app) familiesOf(ctx context.Context, userID int64) ([]int64, error) {
	rows, err := a.b.db.QueryContext(ctx, "SELECT family_id FROM memberships WHERE user_id = ? ORDER BY family_id", userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (a *app) createFamily(w http.ResponseWriter, r *http.Request) error {
	var in struct{ Name string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if in.Name == "" {
		return errorf(http.StatusBadRequest, "name is required")
	}
	ctx := r.Context()
	u := currentUser(ctx)
	res, err := a.b.db.ExecContext(ctx, "INSERT INTO families (name) VALUES (?)", in.Name)
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if _, err := a.b.db.ExecContext(ctx, "INSERT INTO memberships (family_id, user_id, role) VALUES (?, ?, 'parent')", id, u.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, family{ID: id, Name: in.Name, Members: []member{{UserID: u.ID, Name: u.Name, Role: "parent"}}})
	return nil
}

func (a *app) getFamily(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	f, err := a.memberFamily(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (a *app) renameFamily(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct{ Name string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if in.Name == "" {
		return errorf(http.StatusBadRequest, "name is required")
	}
	ctx := r.Context()
	f, err := a.memberFamily(ctx, id)
	if err != nil {
		return err
	}
	if _, err := a.b.db.ExecContext(ctx, "UPDATE families SET name = ? WHERE id = ?", in.Name, id); err != nil {
		return err
	}
	if err := a.b.cache.Invalidate(ctx, a.familyCacheKey(id)); err != nil {
		return err
	}
	f.Name = in.Name
	writeJSON(w, http.StatusOK, f)
	return nil
}

var roles = map[string]bool{"parent": true, "grandparent": true, "child": true, "member": true}

func (a *app) addMember(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct{ Email, Role string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if !roles[in.Role] {
		return errorf(http.StatusBadRequest, "role must be parent, grandparent, child or member")
	}
	ctx := r.Context()
	if _, err := a.memberFamily(ctx, id); err != nil {
		return err
	}
	var uid int64
	err = a.b.db.QueryRowContext(ctx, "SELECT id FROM users WHERE email = ?", strings.ToLower(in.Email)).Scan(&uid)
	if errors.Is(err, sql.ErrNoRows) {
		return errorf(http.StatusNotFound, "no user with that email")
	}
	if err != nil {
		return err
	}
	if _, err := a.b.db.ExecContext(ctx,
		"INSERT INTO memberships (family_id, user_id, role) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE role = VALUES(role)",
		id, uid, in.Role); err != nil {
		return err
	}
	if err := a.b.cache.Invalidate(ctx, a.familyCacheKey(id)); err != nil {
		return err
	}
	f, err := a.family(ctx, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (a *app) createAlbum(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct{ Title string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if in.Title == "" {
		return errorf(http.StatusBadRequest, "title is required")
	}
	ctx := r.Context()
	if _, err := a.memberFamily(ctx, id); err != nil {
		return err
	}
	res, err := a.b.db.ExecContext(ctx, "INSERT INTO albums (family_id, title, created_by) VALUES (?, ?, ?)",
		id, in.Title, currentUser(ctx).ID)
	if err != nil {
		return err
	}
	aid, err := res.LastInsertId()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, album{ID: aid, FamilyID: id, Title: in.Title, Photos: []photo{}})
	return nil
}

// albumFor loads an album's row and checks that the current user may see it.
func (a *app) albumFor(ctx context.Context, id int64) (album, family, error) {
	al := album{ID: id, Photos: []photo{}}
	err := a.b.db.QueryRowContext(ctx, "SELECT family_id, title FROM albums WHERE id = ?", id).Scan(&al.FamilyID, &al.Title)
	if err != nil {
		return al, family{}, err
	}
	f, err := a.memberFamily(ctx, al.FamilyID)
	return al, f, err
}

// getAlbum shows an album. Opened from a notification, the link's token
// (?rt=) makes the reads observe the writes that the notification is about,
// even though they were another user's, made in another region.
func (a *app) getAlbum(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if rt := r.URL.Query().Get("rt"); rt != "" {
		ctx = a.b.tokens.WithLinkToken(ctx, rt)
	}
	al, _, err := a.albumFor(ctx, id)
	if err != nil {
		return err
	}
	rows, err := a.b.db.QueryContext(ctx,
		"SELECT id, uploaded_by, caption, content_type, width, height, created_at FROM photos WHERE album_id = ? ORDER BY id", id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var p photo
		if err := rows.Scan(&p.ID, &p.UploadedBy, &p.Caption, &p.ContentType, &p.Width, &p.Height, &p.CreatedAt); err != nil {
			return err
		}
		al.Photos = append(al.Photos, p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, al)
	return nil
}

// addPhotos records photo metadata and notifies the other family members
// with a link that carries the writer's consistency token.
func (a *app) addPhotos(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct {
		Photos []struct {
			Caption     string
			ContentType string `json:"content_type"`
			Width       int
			Height      int
		}
	}
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if len(in.Photos) == 0 || len(in.Photos) > 50 {
		return errorf(http.StatusBadRequest, "send 1 to 50 photos")
	}
	ctx := r.Context()
	al, f, err := a.albumFor(ctx, id)
	if err != nil {
		return err
	}
	me := currentUser(ctx)
	var ids []int64
	for _, p := range in.Photos {
		if p.ContentType == "" {
			p.ContentType = "image/jpeg"
		}
		res, err := a.b.db.ExecContext(ctx,
			"INSERT INTO photos (album_id, uploaded_by, caption, content_type, width, height) VALUES (?, ?, ?, ?, ?, ?)",
			al.ID, me.ID, p.Caption, p.ContentType, p.Width, p.Height)
		if err != nil {
			return err
		}
		pid, err := res.LastInsertId()
		if err != nil {
			return err
		}
		ids = append(ids, pid)
	}
	link := "/albums/" + strconv.FormatInt(al.ID, 10)
	if tok := a.b.tokens.LinkToken(ctx); tok != "" {
		link += "?rt=" + url.QueryEscape(tok)
	}
	var notified []int64
	for _, m := range f.Members {
		if m.UserID == me.ID {
			continue
		}
		if _, err := a.b.db.ExecContext(ctx,
			"INSERT INTO notifications (user_id, kind, album_id, photo_count, link) VALUES (?, 'photos_added', ?, ?, ?)",
			m.UserID, al.ID, len(ids), link); err != nil {
			return err
		}
		notified = append(notified, m.UserID)
	}
	// Push only once every write committed, as a real service would after
	// its transaction (or from an outbox table).
	for _, uid := range notified {
		a.outbox.send(push{UserID: uid, AlbumID: al.ID, PhotoIDs: ids, Link: link})
	}
	a.tel.notified.Add(ctx, int64(len(notified)))
	writeJSON(w, http.StatusCreated, map[string]any{"photo_ids": ids, "notified": notified, "link": link})
	return nil
}

func (a *app) notifications(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	rows, err := a.b.db.QueryContext(ctx,
		"SELECT id, kind, album_id, photo_count, link, created_at FROM notifications WHERE user_id = ? ORDER BY id DESC LIMIT 50",
		currentUser(ctx).ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := []notification{}
	for rows.Next() {
		var n notification
		if err := rows.Scan(&n.ID, &n.Kind, &n.AlbumID, &n.PhotoCount, &n.Link, &n.CreatedAt); err != nil {
			return err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
