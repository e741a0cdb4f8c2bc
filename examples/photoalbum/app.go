package main

// The service and its routes. Its files, by role: records.go (the records),
// cached.go (the records every request reads, through the cache), http.go
// (errors into responses, JSON in and out), auth.go (accounts and logins),
// users.go, families.go, albums.go and notifications.go (the handlers, one
// file a resource), outbox.go (the stand-in push provider); main.go (flags),
// wire.go and backends.go (opening dbrouter, session and cache), health.go,
// telemetry.go and schema.go.

import (
	"log/slog"
	"net/http"
	"strconv"
)

// app is the service: its handlers are app's methods.
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
