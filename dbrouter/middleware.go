package dbrouter

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// Middleware returns net/http middleware that gives each request a
// read-your-writes scope (see [NewContext]) started from the request's
// token, and returns the advanced token with the response.
//
// The token is read from the [Config.TokenHeader] header (API clients),
// else from [Config.TokenCarrier] if set, else from the [Config.TokenCookie]
// cookie (browsers). A corrupt, forged or expired token is ignored and
// counted in [Stats].TokensRejected; the request proceeds. Before the first
// byte of the response, the token of the scope is set in the response
// header and saved with the carrier or as the cookie; once every reader has
// applied it, it is removed instead (the cookie is deleted). Writes made
// after the response's first byte cannot travel with that response.
//
// The response varies by cookie (Vary: Cookie). The wrapper of the
// ResponseWriter has Unwrap, so [http.ResponseController] works through it.
func (rt *Router) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := r.Header.Get(rt.cfg.TokenHeader)
		fromHeader := in != ""
		if !fromHeader {
			if rt.cfg.TokenCarrier != nil {
				in = rt.cfg.TokenCarrier.LoadToken(r)
			} else if c, err := r.Cookie(rt.cfg.TokenCookie); err == nil {
				in = c.Value
			}
		}
		ctx, _ := rt.WithToken(NewContext(r.Context()), in)
		r = r.WithContext(ctx)
		tw := &tokenWriter{ResponseWriter: w, rt: rt, r: r, in: in, start: trackerFrom(ctx).need.Load()}
		next.ServeHTTP(tw, r)
		tw.save()
	})
}

// samePosition reports whether p and q are the same position.
func samePosition(p, q *position) bool { return p == q || p.covers(q) && q.covers(p) }

// tokenWriter saves the token before the first byte of the response.
type tokenWriter struct {
	http.ResponseWriter
	rt    *Router
	r     *http.Request
	in    string
	start *position // the scope's requirement when the request started
	saved bool
}

func (w *tokenWriter) save() {
	if w.saved {
		return
	}
	w.saved = true
	rt := w.rt
	// A request that did not move the requirement sends back the token it
	// came with (unless every reader has passed it): re-issuing it would
	// only change its timestamp, and cost a carrier such as a session
	// store a write per request.
	out := w.in
	if need := trackerFrom(w.r.Context()).need.Load(); w.in == "" || !samePosition(need, w.start) || need.empty() || rt.passedByAll(need) {
		out = rt.Token(w.r.Context())
	}
	h := w.Header()
	h.Add("Vary", "Cookie")
	if out != "" {
		h.Set(rt.cfg.TokenHeader, out)
	}
	if out == w.in {
		return
	}
	if rt.cfg.TokenCarrier != nil {
		rt.cfg.TokenCarrier.SaveToken(w.ResponseWriter, w.r, out)
		return
	}
	c := &http.Cookie{
		Name:     rt.cfg.TokenCookie,
		Value:    out,
		Path:     "/",
		HttpOnly: true,
		Secure:   w.r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   int(rt.cfg.TokenMaxAge.Seconds()),
	}
	if out == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w.ResponseWriter, c)
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
