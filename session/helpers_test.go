package session_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regiondb/regiondb/session"
)

// testApp serves a few routes over one Manager.
func testApp(t *testing.T, m *session.Manager) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		v, err := m.Get(r.Context(), r.FormValue("key"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, v)
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Put(r.Context(), r.FormValue("key"), r.FormValue("value")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if err := m.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /static", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "static") })
	srv := httptest.NewServer(m.Middleware(mux))
	t.Cleanup(srv.Close)
	return srv
}

// browser is a client with a cookie jar.
type browser struct {
	t  *testing.T
	c  *http.Client
	tr *http.Transport
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: t, c: &http.Client{Jar: jar, Transport: tr}, tr: tr}
}

// do sends a request; extra cookies (name=value) replace the jar's.
func (b *browser) do(method, url string, cookies ...*http.Cookie) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	c := b.c
	if cookies != nil {
		c = &http.Client{Transport: b.tr}
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(body))
}

func (b *browser) cookie(srv *httptest.Server, name string) *http.Cookie {
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	for _, c := range b.c.Jar.Cookies(req.URL) {
		if c.Name == name {
			return c
		}
	}
	return nil
}
