package main

import (
	"context"
	"database/sql"
	"net/http"

	"github.com/regiondb/regiondb/cache"
)

// The handlers reach regiondb's packages through these small interfaces, the
// way a service keeps its handlers testable: *dbrouter.Router satisfies
// database, *cache.Cache satisfies recordCache, and wire.go adapts the
// router's tokens and the session manager. wire.go builds them all.

// database is *sql.DB's context API, which *dbrouter.Router mirrors (sqlc's DBTX).
type database interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// linkTokens turns the writes made through a request's context into a token
// for a link (the notification's), and a link's token back into a context
// whose reads observe those writes, so causality crosses users and regions.
type linkTokens interface {
	// LinkToken returns the encoded read-your-writes token of the writes
	// made through ctx (and those the request came with), or "".
	LinkToken(ctx context.Context) string
	// WithLinkToken returns a context whose reads also observe the writes tok
	// describes. A forged, expired or corrupt tok is ignored.
	WithLinkToken(ctx context.Context, tok string) context.Context
}

// sessions is the login state of a request.
type sessions interface {
	// Middleware loads the session for the request and saves it afterwards.
	Middleware(next http.Handler) http.Handler
	// UserID returns the logged-in user's id, or 0.
	UserID(ctx context.Context) (int64, error)
	// Login renews the session id and records userID in it.
	Login(ctx context.Context, userID int64) error
	// Logout ends the session.
	Logout(ctx context.Context) error
}

// recordCache is the read-through cache of the user and family records that
// every request needs.
type recordCache interface {
	// Get returns key's value, or runs load (whose ctx must be used for
	// the database reads) and caches what it returns.
	Get(ctx context.Context, key string, load cache.Loader) ([]byte, error)
	// Invalidate makes every region stop serving key's value; call it after
	// the write commits, with the write's ctx.
	Invalidate(ctx context.Context, key string) error
}

// backends are the service's connections, built once at start.
type backends struct {
	db       database
	tokens   linkTokens
	sessions sessions
	cache    recordCache
	// consistency wraps the handlers inside the session middleware:
	// it restores the request's read-your-writes token and returns the
	// advanced one (dbrouter's HTTP middleware).
	consistency func(http.Handler) http.Handler
	// close releases everything, in reverse order of opening.
	close func() error
	// describe says, per package, what runs behind each interface (GET /healthz).
	describe map[string]string
	// health checks each backend's state (GET /healthz).
	health healthChecks
}
