package dbrouter

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
)

// CookieSecure says when the token cookie is marked Secure (see
// [Config.TokenCookieSecure]).
type CookieSecure int

const (
	// CookieSecureAuto marks the cookie Secure when the request came over
	// TLS to this process (r.TLS != nil). It is the default.
	CookieSecureAuto CookieSecure = iota
	// CookieSecureAlways always marks the cookie Secure: use it behind a
	// load balancer or proxy that terminates TLS. Browsers then send the
	// cookie over HTTPS only (and to http://localhost).
	CookieSecureAlways
	// CookieSecureNever never marks it Secure (plain-HTTP development).
	CookieSecureNever
)

// secureCookie reports whether the token cookie of a response to r is
// marked Secure.
func (rt *Router) secureCookie(r *http.Request) bool {
	switch rt.cfg.TokenCookieSecure {
	case CookieSecureAlways:
		return true
	case CookieSecureNever:
		return false
	}
	return r.TLS != nil
}

// maxCarriedTokens is the most tokens one request may carry (cookies, or
// comma-separated header values); more are ignored.
const maxCarriedTokens = 8

// Middleware returns net/http middleware that gives each request a
// read-your-writes scope (see [NewContext]) started from the request's
// tokens, and returns the advanced token with the response.
//
// Tokens are read from the [Config.TokenHeader] header (API clients; several
// comma-separated tokens are merged), else from [Config.TokenCarrier] if
// set, else from the [Config.TokenCookie] cookies (browsers): the cookie of
// that name and those named after it with a dot and a suffix
// ("regiondb_ryw.AbCd1234"), at most 8 in all. A corrupt, forged or expired
// token is ignored and counted in [Stats].TokensRejected; the request
// proceeds.
//
// Tokens only move forward on the client. Before the first byte of the
// response, and only if the request advanced its scope beyond every token
// it carried (it wrote, or its reads showed newer data), the new token (the
// maximum of what the request carried and what it did) is set in the
// response header and saved with the carrier or as a new cookie, and the
// cookies the request carried (which the new token covers) are deleted. A
// request that advanced nothing sets and deletes nothing. So a response
// never removes a token it did not supersede: when a user's second tab, a
// prefetch or a retry runs concurrently with a write, the two responses set
// cookies of different names, the browser keeps both, and its next request
// carries both. Writes made after the response's first byte cannot travel
// with that response.
//
// API clients that send requests concurrently must do the same themselves
// (a header is not merged by a browser): keep a set of tokens, send them all
// (comma-separated), and when a response carries a token, add it and drop
// the tokens that request sent. A client that keeps only the last token it
// received may lose a newer one to an older response. A [TokenCarrier] is
// called with the merged token only by requests that advanced; if it stores
// one value per user (a session), two concurrent advancing requests of one
// user race in it like a header does.
//
// The response varies by cookie (Vary: Cookie). The wrapper of the
// ResponseWriter has Unwrap, so [http.ResponseController] works through it.
func (rt *Router) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in, names []string
		if vals := r.Header.Values(rt.cfg.TokenHeader); len(vals) > 0 {
			for _, v := range vals {
				for tok := range strings.SplitSeq(v, ",") {
					if tok = strings.TrimSpace(tok); tok != "" && len(in) < maxCarriedTokens {
						in = append(in, tok)
					}
				}
			}
		} else if rt.cfg.TokenCarrier != nil {
			if tok := rt.cfg.TokenCarrier.LoadToken(r); tok != "" {
				in = append(in, tok)
			}
		} else {
			for _, c := range r.Cookies() {
				if (c.Name == rt.cfg.TokenCookie || strings.HasPrefix(c.Name, rt.cfg.TokenCookie+".")) &&
					len(in) < maxCarriedTokens && !slices.Contains(names, c.Name) {
					in, names = append(in, c.Value), append(names, c.Name)
				}
			}
		}
		ctx := NewContext(r.Context())
		valid := 0
		single := ""
		for _, tok := range in {
			var err error
			if ctx, err = rt.WithToken(ctx, tok); err == nil {
				valid++
				single = tok
			}
		}
		if valid != 1 {
			single = ""
		}
		r = r.WithContext(ctx)
		tw := &tokenWriter{ResponseWriter: w, rt: rt, r: r, in: single, names: names, start: trackerFrom(ctx).need.Load()}
		next.ServeHTTP(tw, r)
		tw.save()
	})
}

// tokenWriter saves the token before the first byte of the response.
type tokenWriter struct {
	http.ResponseWriter
	rt    *Router
	r     *http.Request
	in    string    // the one valid token the request carried, if exactly one
	names []string  // the token cookies the request carried
	start *position // the scope's requirement when the request started
	saved bool
}

func (w *tokenWriter) save() {
	if w.saved {
		return
	}
	w.saved = true
	rt := w.rt
	ctx := w.r.Context()
	t := trackerFrom(ctx)
	rt.settle(ctx, t)
	need := t.need.Load()
	advanced := !w.start.covers(need)
	// A request that did not move the requirement sends back the token it
	// came with: re-issuing it would only change its timestamp, and cost
	// a carrier such as a session store a write per request.
	out := w.in
	if advanced || (out == "" && !need.empty()) {
		out = rt.Token(ctx)
	}
	h := w.Header()
	h.Add("Vary", "Cookie")
	if out != "" {
		h.Set(rt.cfg.TokenHeader, out)
	}
	if !advanced || out == "" {
		return
	}
	if rt.cfg.TokenCarrier != nil {
		rt.cfg.TokenCarrier.SaveToken(w.ResponseWriter, w.r, out)
		return
	}
	secure := rt.secureCookie(w.r)
	// The cookie's name ends with the token's tag, so that concurrent
	// responses set cookies of different names.
	name := rt.cfg.TokenCookie + "." + out[len(out)-8:]
	http.SetCookie(w.ResponseWriter, &http.Cookie{
		Name: name, Value: out, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(rt.cfg.TokenMaxAge.Seconds()),
	})
	for _, n := range w.names {
		if n != name {
			http.SetCookie(w.ResponseWriter, &http.Cookie{
				Name: n, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode, MaxAge: -1,
			})
		}
	}
}

func (w *tokenWriter) WriteHeader(code int) {
	w.save()
	w.ResponseWriter.WriteHeader(code)
}

func (w *tokenWriter) Write(b []byte) (int, error) {
	w.save()
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the wrapped ResponseWriter.
func (w *tokenWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends buffered data, saving the token first.
func (w *tokenWriter) Flush() {
	w.save()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack lets protocols such as WebSocket take over the connection.
func (w *tokenWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.save()
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("dbrouter: response writer does not support hijacking")
}

// TokenCarrier keeps the read-your-writes token of a request somewhere else
// than the router's cookie, such as the user's server-side session.
type TokenCarrier interface {
	// LoadToken returns the token saved for the request's user, or "".
	LoadToken(r *http.Request) string
	// SaveToken saves token for the request's user; "" removes it. It is
	// called before the response's first byte is written.
	SaveToken(w http.ResponseWriter, r *http.Request, token string)
}
