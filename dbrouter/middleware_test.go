package dbrouter

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// kvHandler writes ?k=..&v=.. if v is set, then reads k and writes its
// value in the body.
func kvHandler(t *testing.T, rt *Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, v := r.URL.Query().Get("k"), r.URL.Query().Get("v")
		if v != "" {
			if _, err := rt.ExecContext(r.Context(), "REPLACE INTO kv (k, v) VALUES (?, ?)", k, v); err != nil {
				t.Error(err)
			}
		}
		var got int64
		if err := rt.QueryRowContext(r.Context(), "SELECT v FROM kv WHERE k = ?", k).Scan(&got); err != nil {
			got = -1
		}
		w.Write([]byte(strconv.FormatInt(got, 10)))
	})
}

func do(h http.Handler, url string, cookies []*http.Cookie, header string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, url, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	if header != "" {
		req.Header.Set(DefaultTokenHeader, header)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestMiddlewareStack(t *testing.T) {
	s := testserver.Require(t)
	tokyo := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	virginia := openRouter(t, stackConfig(t, s, testserver.SecondaryRegion))
	ht, hv := tokyo.Middleware(kvHandler(t, tokyo)), virginia.Middleware(kvHandler(t, virginia))
	k := key(t)

	// r2 stalls, so only the token can make Virginia see the write.
	if err := s.Stall(t.Context(), "r2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r2") })

	rec := do(ht, "/?k="+k+"&v=7", nil, "")
	if rec.Body.String() != "7" {
		t.Fatalf("same-request read got %s", rec.Body)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || !strings.HasPrefix(cookies[0].Name, DefaultTokenCookie+".") || cookies[0].Value == "" || !cookies[0].HttpOnly {
		t.Fatalf("cookies %v", cookies)
	}
	if tok := rec.Header().Get(DefaultTokenHeader); tok != cookies[0].Value || len(tok) >= 100 {
		t.Fatalf("header token %q, cookie %q", tok, cookies[0].Value)
	}
	if rec.Header().Get("Vary") != "Cookie" {
		t.Errorf("Vary %q", rec.Header().Get("Vary"))
	}

	t.Run("cookie across regions", func(t *testing.T) {
		if got := do(hv, "/?k="+k, cookies, "").Body.String(); got != "7" {
			t.Errorf("Virginia read %s with the cookie", got)
		}
	})
	t.Run("header across regions", func(t *testing.T) {
		if got := do(hv, "/?k="+k, nil, cookies[0].Value).Body.String(); got != "7" {
			t.Errorf("Virginia read %s with the header", got)
		}
	})
	t.Run("forged token ignored and counted", func(t *testing.T) {
		before := virginia.Stats().TokensRejected
		bad := []*http.Cookie{{Name: DefaultTokenCookie, Value: cookies[0].Value[:10] + "AAAA" + cookies[0].Value[14:]}}
		rec := do(hv, "/?k="+k, bad, "")
		if rec.Code != http.StatusOK {
			t.Errorf("status %d", rec.Code)
		}
		if virginia.Stats().TokensRejected != before+1 {
			t.Errorf("rejected token not counted")
		}
	})
	t.Run("token kept once every known reader has it", func(t *testing.T) {
		// Readers this router does not monitor may still be behind.
		if err := s.Resume(t.Context(), "r2"); err != nil {
			t.Fatal(err)
		}
		rec := do(hv, "/?k="+k, cookies, "")
		if rec.Body.String() != "7" {
			t.Fatalf("read %s", rec.Body)
		}
		for _, c := range rec.Result().Cookies() {
			if c.MaxAge < 0 {
				t.Errorf("cookie %s deleted by a request that superseded nothing", c.Name)
			}
		}
	})
}

// TestMiddlewareConcurrentTabs: a read-only request that started before the
// user's write and answers after it must not take the write's token away
// from the browser (issue 11, item 2).
func TestMiddlewareConcurrentTabs(t *testing.T) {
	s := testserver.Require(t)
	tokyo := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	virginia := openRouter(t, stackConfig(t, s, testserver.SecondaryRegion))
	k := key(t)
	// v=1, known everywhere.
	first := do(tokyo.Middleware(kvHandler(t, tokyo)), "/?k="+k+"&v=1", nil, "")
	jar := first.Result().Cookies()
	if err := s.Stall(t.Context(), "r2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r2") })
	// Tab 1 reads in Virginia; before it answers, tab 2 writes v=2 in Tokyo.
	release := make(chan struct{})
	slow := virginia.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kvHandler(t, virginia).ServeHTTP(httptest.NewRecorder(), r)
		<-release
		w.Write([]byte("ok"))
	}))
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- do(slow, "/?k="+k, jar, "") }()
	write := do(tokyo.Middleware(kvHandler(t, tokyo)), "/?k="+k+"&v=2", jar, "")
	close(release)
	read := <-done
	jar = applyCookies(applyCookies(jar, write.Result().Cookies()), read.Result().Cookies())
	if got := do(virginia.Middleware(kvHandler(t, virginia)), "/?k="+k, jar, "").Body.String(); got != "2" {
		t.Errorf("next read in Virginia got %s, want 2 (jar %d cookies)", got, len(jar))
	}
}

// applyCookies is a browser's cookie jar: a Set-Cookie replaces the cookie
// of its name, MaxAge < 0 deletes it.
func applyCookies(jar, set []*http.Cookie) []*http.Cookie {
	out := slices.Clone(jar)
	for _, c := range set {
		out = slices.DeleteFunc(out, func(o *http.Cookie) bool { return o.Name == c.Name })
		if c.MaxAge >= 0 && c.Value != "" {
			out = append(out, c)
		}
	}
	return out
}

type mapCarrier struct{ m map[string]string }

func (c *mapCarrier) LoadToken(r *http.Request) string { return c.m[r.URL.Query().Get("user")] }
func (c *mapCarrier) SaveToken(_ http.ResponseWriter, r *http.Request, tok string) {
	c.m[r.URL.Query().Get("user")] = tok
}

func TestMiddlewareCarrierStack(t *testing.T) {
	s := testserver.Require(t)
	carrier := &mapCarrier{m: map[string]string{}}
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.TokenCarrier = carrier
	rt := openRouter(t, cfg)
	h := rt.Middleware(kvHandler(t, rt))
	k := key(t)
	if err := s.Stall(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r1") })
	rec := do(h, "/?user=u1&k="+k+"&v=3", nil, "")
	if len(rec.Result().Cookies()) != 0 {
		t.Errorf("cookie set although a carrier is configured")
	}
	if carrier.m["u1"] == "" {
		t.Fatal("carrier got no token")
	}
	if got := do(h, "/?user=u1&k="+k, nil, "").Body.String(); got != "3" {
		t.Errorf("next request read %s", got)
	}
}

type countingCarrier struct {
	mapCarrier
	saves int
}

func (c *countingCarrier) SaveToken(w http.ResponseWriter, r *http.Request, tok string) {
	c.saves++
	c.mapCarrier.SaveToken(w, r, tok)
}

// A request that moves no position must not re-save the token: with a
// session store as the carrier, each save is a DynamoDB write.
func TestMiddlewareKeepsUnchangedToken(t *testing.T) {
	s := testserver.Require(t)
	carrier := &countingCarrier{mapCarrier: mapCarrier{m: map[string]string{}}}
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.TokenCarrier = carrier
	rt := openRouter(t, cfg)
	k := key(t)
	if err := s.Stall(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Resume(context.Background(), "r1") })
	do(rt.Middleware(kvHandler(t, rt)), "/?user=u1&k="+k+"&v=4", nil, "")
	p, err := rt.tokens.decode(carrier.m["u1"], time.Now())
	if err != nil {
		t.Fatalf("carrier token: %v", err)
	}
	// The same requirement, issued a while ago (as by an earlier request).
	old, err := rt.tokens.encode(p, time.Now().Add(-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	carrier.m["u1"], carrier.saves = old, 0
	idle := rt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	rec := do(idle, "/?user=u1", nil, "")
	if carrier.saves != 0 || carrier.m["u1"] != old {
		t.Fatalf("request that moved nothing saved the token %d times", carrier.saves)
	}
	if got := rec.Header().Get(rt.cfg.TokenHeader); got != old {
		t.Fatalf("response header token = %q, want the unchanged incoming one", got)
	}
}

// TestTokenCookieSecure checks the Secure attribute in each mode, without
// TLS to this process (as behind a TLS-terminating load balancer) and with.
func TestTokenCookieSecure(t *testing.T) {
	advance := func(rt *Router) http.Handler {
		return rt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			trackerFrom(r.Context()).advance(newPosition([]posPart{{key: domainKey(0), seq: 42}}), true)
		}))
	}
	for _, tc := range []struct {
		name      string
		mode      CookieSecure
		tls, want bool
	}{
		{"auto without TLS", CookieSecureAuto, false, false},
		{"auto with TLS", CookieSecureAuto, true, true},
		{"always without TLS", CookieSecureAlways, false, true},
		{"never with TLS", CookieSecureNever, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := openRouter(t, Config{
				Writer:            Endpoint{Name: "w", DSN: "u:p@tcp(127.0.0.1:1)/db"},
				TokenKeys:         []TokenKey{{ID: 1, Secret: []byte("0123456789abcdef")}},
				TokenCookieSecure: tc.mode,
			})
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.tls {
				req = httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
			}
			rec := httptest.NewRecorder()
			advance(rt).ServeHTTP(rec, req)
			cs := rec.Result().Cookies()
			if len(cs) != 1 || cs[0].Secure != tc.want {
				t.Fatalf("cookies %v, want one with Secure=%v", cs, tc.want)
			}
		})
	}
}

// TestNoTokenKeysWarns: a per-process random key makes every other process
// reject the tokens, so Open says so through the logger.
func TestNoTokenKeysWarns(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	openRouter(t, Config{Writer: Endpoint{Name: "w", DSN: "u:p@tcp(127.0.0.1:1)/db"}, Logger: log})
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "no TokenKeys") {
		t.Errorf("log %q has no warning about the missing TokenKeys", buf.String())
	}
	buf.Reset()
	openRouter(t, Config{Writer: Endpoint{Name: "w", DSN: "u:p@tcp(127.0.0.1:1)/db"}, Logger: log,
		TokenKeys: []TokenKey{{ID: 1, Secret: []byte("0123456789abcdef")}}})
	if strings.Contains(buf.String(), "TokenKeys") {
		t.Errorf("warning with keys configured: %q", buf.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestMiddlewareCarriedTokens: a request may carry several tokens (cookies
// of concurrent responses, or comma-separated header values); valid ones
// are merged, hostile ones ignored and counted, at most 8 looked at; a
// request that advanced nothing sets and deletes nothing, one that advanced
// sets one cookie and deletes exactly the token cookies it carried.
func TestMiddlewareCarriedTokens(t *testing.T) {
	rt := openRouter(t, Config{
		Writer:    Endpoint{Name: "w", DSN: "u:p@tcp(127.0.0.1:1)/db"},
		TokenKeys: []TokenKey{{ID: 1, Secret: []byte("0123456789abcdef")}},
	})
	tok := func(seq uint64) string {
		s, err := rt.tokens.encode(newPosition([]posPart{{key: domainKey(0), seq: seq}}), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var need *position
	var advance uint64
	h := rt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr := trackerFrom(r.Context())
		if advance > 0 {
			tr.advance(newPosition([]posPart{{key: domainKey(0), seq: advance}}), true)
		}
		need = tr.need.Load()
	}))
	t5, t9 := tok(5), tok(9)
	for _, tc := range []struct {
		name     string
		cookies  []*http.Cookie
		header   string
		advance  uint64
		want     string // the scope's position
		rejected int64
		set      int // cookies set
		deleted  []string
	}{
		{"two tab cookies merge", []*http.Cookie{{Name: "regiondb_ryw.a", Value: t5}, {Name: "regiondb_ryw.b", Value: t9}}, "", 0, "0:9", 0, 0, nil},
		{"legacy name read", []*http.Cookie{{Name: "regiondb_ryw", Value: t9}}, "", 0, "0:9", 0, 0, nil},
		{"other cookies ignored", []*http.Cookie{{Name: "regiondb_rywx", Value: t9}, {Name: "session", Value: t5}}, "", 0, "", 0, 0, nil},
		{"garbage counted", []*http.Cookie{{Name: "regiondb_ryw.x", Value: "%%%"}, {Name: "regiondb_ryw.y", Value: t5}}, "", 0, "0:5", 1, 0, nil},
		{"header list", nil, t5 + ", " + t9 + ",,garbage", 0, "0:9", 1, 0, nil},
		{"advanced: one set, carried deleted", []*http.Cookie{{Name: "regiondb_ryw.a", Value: t5}, {Name: "regiondb_ryw.b", Value: "bad"}}, "", 7, "0:7", 1, 1, []string{"regiondb_ryw.a", "regiondb_ryw.b"}},
		{"not beyond carried: nothing set", []*http.Cookie{{Name: "regiondb_ryw.b", Value: t9}}, "", 7, "0:9", 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var many []*http.Cookie
			if tc.name == "garbage counted" {
				for i := range 20 {
					many = append(many, &http.Cookie{Name: "regiondb_ryw.g" + strconv.Itoa(i), Value: "AAAA"})
				}
			}
			advance = tc.advance
			before := rt.Stats().TokensRejected
			rec := do(h, "/", append(slices.Clone(tc.cookies), many...), tc.header)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			rejected := rt.Stats().TokensRejected - before
			if many != nil {
				// At most 8 tokens are looked at.
				if rejected > 8 {
					t.Errorf("%d tokens rejected, at most 8 looked at", rejected)
				}
			} else if rejected != tc.rejected {
				t.Errorf("%d tokens rejected, want %d", rejected, tc.rejected)
			}
			if many == nil && need.String() != tc.want {
				t.Errorf("scope at %q, want %q", need.String(), tc.want)
			}
			var set int
			var deleted []string
			for _, c := range rec.Result().Cookies() {
				if c.MaxAge < 0 {
					deleted = append(deleted, c.Name)
				} else {
					set++
				}
			}
			slices.Sort(deleted)
			if set != tc.set || !slices.Equal(deleted, tc.deleted) {
				t.Errorf("set %d cookies, deleted %v; want %d, %v", set, deleted, tc.set, tc.deleted)
			}
		})
	}
}
