package session

import (
	"log/slog"
	"net/http"
)

// TokenCarrier keeps dbrouter's read-your-writes token in the user's
// session instead of a cookie or header of its own. It has the method set
// of dbrouter's TokenCarrier interface (LoadToken, SaveToken) without
// importing dbrouter; pass it in dbrouter's configuration, and wrap the
// session middleware outside dbrouter's:
//
//	handler := sessions.Middleware(router.Middleware(mux))
//
// LoadToken reads the session (if the request has a session cookie), so a
// request that goes through dbrouter's middleware is no longer free of a
// DynamoDB read.
//
// What it writes: dbrouter calls SaveToken only when the token changed. A
// token that advanced (the request wrote, or read newer data than the
// token required: monotonic reads) costs one session write: the session
// package cannot tell a monotonic-read advance from a write, because the
// token is opaque and authenticated by dbrouter, and dropping either would
// break the router's guarantee for this user's next request, which may go
// to another process or region where only the session carries it. A token
// that every reader has passed needs no keeping: its removal ("") is never
// written on its own; it rides along when the session is written anyway,
// and until then the old token stays, harmless (every reader satisfies it).
// A token equal to the one the session holds costs nothing. A user who writes or reads
// fresh data on most requests therefore costs a session write on most
// requests while replicas lag; dbrouter's own cookie costs nothing to
// rewrite. A TokenCarrier is safe for concurrent use.
type TokenCarrier struct {
	m   *Manager
	key string
}

// TokenCarrier returns a carrier that keeps the token under [Config.TokenKey].
func (m *Manager) TokenCarrier() *TokenCarrier {
	return &TokenCarrier{m: m, key: m.cfg.TokenKey}
}

// LoadToken returns the token kept in r's session, or "" if there is none
// or the session cannot be read.
func (c *TokenCarrier) LoadToken(r *http.Request) string {
	v, _ := c.m.Get(r.Context(), c.key)
	return v
}

// SaveToken keeps token in r's session. "" (the token is no longer needed)
// removes it only if the session is written anyway. It must be called
// before the response's first byte to reach the session's save; a failure
// (an unavailable store, a session over the size limit) is logged.
func (c *TokenCarrier) SaveToken(_ http.ResponseWriter, r *http.Request, token string) {
	var err error
	if token == "" {
		err = c.m.removeIfWritten(r.Context(), c.key)
	} else {
		err = c.m.Put(r.Context(), c.key, token)
	}
	if err != nil {
		c.m.cfg.Logger.WarnContext(r.Context(), "session: keeping the read-your-writes token failed", slog.Any("error", err))
	}
}
