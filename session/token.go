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
// DynamoDB read. SaveToken writes only when the token changed, which
// dbrouter does when the request wrote, or read newer data than the token
// required (monotonic reads: the token then records what the user saw).
// A user who writes or reads fresh data on most requests therefore costs a
// session write on most requests while replicas lag; the cookie dbrouter
// uses by default costs nothing to rewrite. A TokenCarrier is safe for
// concurrent use.
type TokenCarrier struct {
	m   *Manager
	key string
}

// TokenCarrier returns a carrier that keeps the token under [DefaultTokenKey].
func (m *Manager) TokenCarrier() *TokenCarrier {
	return &TokenCarrier{m: m, key: DefaultTokenKey}
}

// LoadToken returns the token kept in r's session, or "" if there is none
// or the session cannot be read.
func (c *TokenCarrier) LoadToken(r *http.Request) string {
	v, _ := c.m.Get(r.Context(), c.key)
	return v
}

// SaveToken keeps token in r's session ("" removes it). It must be called
// before the response's first byte to reach the session's save; a failure
// (an unavailable store, a session over the size limit) is logged.
func (c *TokenCarrier) SaveToken(_ http.ResponseWriter, r *http.Request, token string) {
	var err error
	if token == "" {
		err = c.m.Remove(r.Context(), c.key)
	} else {
		err = c.m.Put(r.Context(), c.key, token)
	}
	if err != nil {
		c.m.cfg.Logger.WarnContext(r.Context(), "session: keeping the read-your-writes token failed", slog.Any("err", err))
	}
}
