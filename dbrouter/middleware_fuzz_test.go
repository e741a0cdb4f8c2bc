package dbrouter

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzMiddleware sends any token cookies and header through
// Router.Middleware, to a handler that writes (advancing the scope) or only
// reads: the response must be the handler's, never a 500 or a panic, and
// every cookie it sets must be a token cookie with a token the router
// accepts. No server is needed: the router is never asked to connect.
func FuzzMiddleware(f *testing.F) {
	rt, err := Open(Config{
		Region:    "ap-northeast-1",
		Writer:    Endpoint{Name: "w", DSN: "u:p@tcp(127.0.0.1:1)/db"},
		TokenKeys: []TokenKey{{ID: 1, Secret: []byte("fuzz-middleware-secret-0123456789")}},
	})
	if err != nil {
		f.Fatal(err)
	}
	defer rt.Close()
	tok, err := rt.tokens.encode(newPosition([]posPart{{key: domainKey(0), seq: 7}}), time.Now())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct {
		cookie, header string
		write          bool
	}{
		{"", "", false},
		{"regiondb_ryw=" + tok, "", true},
		{"regiondb_ryw.abc=" + tok + "; regiondb_ryw.def=garbage", "", false},
		{"", tok + "," + tok + ",x", true},
		{"regiondb_ryw=%%%; regiondb_ryw=" + strings.Repeat("A", 5000), "", false},
		{"", strings.Repeat(",", 100), true},
	} {
		f.Add(seed.cookie, seed.header, seed.write)
	}
	h := rt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/write") {
			trackerFrom(r.Context()).advance(newPosition([]posPart{{key: domainKey(0), seq: 9}}), true)
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	f.Fuzz(func(t *testing.T, cookie, header string, write bool) {
		path := "/read"
		if write {
			path = "/write"
		}
		req := httptest.NewRequest("GET", path, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		if header != "" {
			req.Header.Set(rt.cfg.TokenHeader, header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusTeapot {
			t.Fatalf("status %d, want the handler's", rec.Code)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name != rt.cfg.TokenCookie && !strings.HasPrefix(c.Name, rt.cfg.TokenCookie+".") {
				t.Fatalf("set a cookie %q that is not a token cookie", c.Name)
			}
			if c.MaxAge >= 0 && c.Value != "" {
				if _, err := rt.tokens.decode(c.Value, time.Now()); err != nil {
					t.Fatalf("set token cookie %q=%q that the router rejects: %v", c.Name, c.Value, err)
				}
			}
		}
		if write {
			if got := rec.Header().Get(rt.cfg.TokenHeader) + strings.Join(rec.Header().Values("Set-Cookie"), ""); got == "" {
				t.Fatal("a request that wrote returned no token")
			}
		}
	})
}
