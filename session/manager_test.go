package session_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	sessionharness "github.com/regiondb/regiondb/internal/harness/session"
	"github.com/regiondb/regiondb/session"
)

const tokyo = "ap-northeast-1"

func TestConfigValidation(t *testing.T) {
	ok := map[string]session.Client{tokyo: dynamodb.New(dynamodb.Options{Region: tokyo})}
	for _, tc := range []struct {
		name  string
		cfg   session.Config
		field string
	}{
		{"no table", session.Config{Region: tokyo, Clients: ok}, "Table"},
		{"no region", session.Config{Table: "t", Clients: ok}, "Region"},
		{"no local client", session.Config{Table: "t", Region: "us-east-1", Clients: ok}, "Clients"},
		{"bad cookie name", session.Config{Table: "t", Region: tokyo, Clients: ok, CookieName: "a b"}, "CookieName"},
		{"touch not below idle", session.Config{Table: "t", Region: tokyo, Clients: ok, IdleTimeout: time.Minute, TouchInterval: time.Minute}, "TouchInterval"},
		{"negative", session.Config{Table: "t", Region: tokyo, Clients: ok, MaxAttempts: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := session.New(tc.cfg)
			var ce *session.ConfigError
			if !errors.Is(err, session.ErrInvalidConfig) || !errors.As(err, &ce) || !strings.Contains(ce.Field+" "+ce.Reason, tc.field) {
				t.Fatalf("New: %v, want a *ConfigError naming %s", err, tc.field)
			}
		})
	}
	if _, err := session.New(session.Config{Table: "t", Region: tokyo, Clients: ok}); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
}

func TestNoMiddleware(t *testing.T) {
	m, err := session.New(session.Config{Table: "t", Region: tokyo, Clients: map[string]session.Client{tokyo: dynamodb.New(dynamodb.Options{Region: tokyo})}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(context.Background(), "k"); !errors.Is(err, session.ErrNoMiddleware) {
		t.Fatalf("Get without middleware: %v", err)
	}
}

func TestMiddlewareLazyReadsAndWrites(t *testing.T) {
	e := openEnv(t)
	clock := sessionharness.NewClock(time.Now())
	cfg := e.Config(tokyo, false)
	// The defaults: Secure, HttpOnly, SameSite=Lax. The test server is
	// plain HTTP (r.TLS == nil), as behind a TLS-terminating load
	// balancer: the cookie must be Secure all the same.
	cfg.InsecureCookie = false
	//lint:ignore SA1019 the module keeps its fake clock for tests against the real dynalite (synctest cannot drive real network I/O)
	cfg.Now = clock.Now
	cfg.IdleTimeout = time.Hour
	cfg.TouchInterval = time.Minute
	m, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := testApp(t, m)
	b := newBrowser(t)
	cnt := e.Count[tokyo]
	calls := func() (int64, int64) { return cnt.Reads.Load(), cnt.Writes.Load() }
	expect := func(step string, r0, w0, dr, dw int64) {
		t.Helper()
		r, w := calls()
		if r-r0 != dr || w-w0 != dw {
			t.Fatalf("%s: %d reads, %d writes; want %d, %d", step, r-r0, w-w0, dr, dw)
		}
	}

	r0, w0 := calls()
	resp, _ := b.do(http.MethodGet, srv.URL+"/static")
	expect("untouched, no cookie", r0, w0, 0, 0)
	if resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("Vary") != "Cookie" {
		t.Fatalf("untouched: Set-Cookie %q, Vary %q", resp.Header.Get("Set-Cookie"), resp.Header.Get("Vary"))
	}
	resp, _ = b.do(http.MethodPost, srv.URL+"/put?key=user&value=ann")
	expect("first put", r0, w0, 0, 1)
	sc := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{session.DefaultCookieName + "=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Expires="} {
		if !strings.Contains(sc, attr) {
			t.Fatalf("Set-Cookie %q lacks %s", sc, attr)
		}
	}
	ck := resp.Cookies()[0]

	r0, w0 = calls()
	if _, body := b.do(http.MethodGet, srv.URL+"/get?key=user", ck); body != "ann" {
		t.Fatalf("get: %q", body)
	}
	expect("read-only", r0, w0, 1, 0)
	r0, w0 = calls()
	b.do(http.MethodGet, srv.URL+"/static", ck)
	expect("untouched with a session", r0, w0, 0, 0)
	r0, w0 = calls()
	b.do(http.MethodPost, srv.URL+"/put?key=user&value=ann", ck)
	expect("put of the same value", r0, w0, 1, 0)

	// The idle deadline is extended at most once per TouchInterval.
	clock.Advance(59 * time.Second)
	r0, w0 = calls()
	b.do(http.MethodGet, srv.URL+"/get?key=user", ck)
	expect("read before the touch interval", r0, w0, 1, 0)
	clock.Advance(2 * time.Second)
	r0, w0 = calls()
	resp, _ = b.do(http.MethodGet, srv.URL+"/get?key=user", ck)
	expect("read after the touch interval", r0, w0, 1, 1)
	ck = resp.Cookies()[0] // the touch wrote a new version
	r0, w0 = calls()
	b.do(http.MethodGet, srv.URL+"/get?key=user", ck)
	expect("read right after the touch", r0, w0, 1, 0)

	// Idle timeout: a new, empty session; no error page.
	clock.Advance(time.Hour)
	resp, body := b.do(http.MethodGet, srv.URL+"/get?key=user", ck)
	if resp.StatusCode != http.StatusOK || body != "" {
		t.Fatalf("expired session: %d %q", resp.StatusCode, body)
	}
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("expired session's cookie not cleared: %q", sc)
	}
}

func TestAbsoluteTimeout(t *testing.T) {
	e := openEnv(t)
	clock := sessionharness.NewClock(time.Now())
	cfg := e.Config(tokyo, false)
	//lint:ignore SA1019 the module keeps its fake clock for tests against the real dynalite (synctest cannot drive real network I/O)
	cfg.Now = clock.Now
	cfg.IdleTimeout, cfg.TouchInterval, cfg.AbsoluteTimeout = time.Hour, time.Minute, 2*time.Hour
	rd := sdkmetric.NewManualReader()
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	m, _ := session.New(cfg)
	srv := testApp(t, m)
	b := newBrowser(t)
	b.do(http.MethodPost, srv.URL+"/put?key=user&value=ann")
	for range 3 { // active every 30 minutes: the idle deadline never passes
		clock.Advance(30 * time.Minute)
		if _, body := b.do(http.MethodGet, srv.URL+"/get?key=user"); body != "ann" {
			t.Fatalf("session ended early: %q", body)
		}
	}
	clock.Advance(31 * time.Minute) // 2h01m after creation
	if _, body := b.do(http.MethodGet, srv.URL+"/get?key=user"); body != "" {
		t.Fatalf("session outlived its absolute timeout: %q", body)
	}
	if n := sessionharness.Sum(context.Background(), rd, "regiondb.session.expired"); n != 1 {
		t.Fatalf("expired sessions counted: %d", n)
	}
}

func TestBadCookiesStartNewSession(t *testing.T) {
	e := openEnv(t)
	m, _ := session.New(e.Config(tokyo, false))
	srv := testApp(t, m)
	b := newBrowser(t)
	resp, _ := b.do(http.MethodPost, srv.URL+"/put?key=user&value=ann")
	good := resp.Cookies()[0]
	b.do(http.MethodPost, srv.URL+"/destroy", good)
	for _, tc := range []struct{ name, value string }{
		{"garbage", "%%%not-a-cookie"},
		{"tampered", good.Value[:len(good.Value)-2] + "AA"},
		{"unknown (destroyed)", good.Value},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := b.do(http.MethodGet, srv.URL+"/get?key=user", &http.Cookie{Name: session.DefaultCookieName, Value: tc.value})
			if resp.StatusCode != http.StatusOK || body != "" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestRenewTokenDeletesOldID(t *testing.T) {
	e := openEnv(t)
	m, _ := session.New(e.Config(tokyo, false))
	srv := testApp(t, m)
	b := newBrowser(t)
	resp, _ := b.do(http.MethodPost, srv.URL+"/put?key=user&value=ann")
	old := resp.Cookies()[0]
	resp, _ = b.do(http.MethodPost, srv.URL+"/renew", old)
	renewed := resp.Cookies()[0]
	if renewed.Value == old.Value {
		t.Fatal("RenewToken kept the cookie")
	}
	if _, body := b.do(http.MethodGet, srv.URL+"/get?key=user", renewed); body != "ann" {
		t.Fatalf("renewed session lost its values: %q", body)
	}
	if _, body := b.do(http.MethodGet, srv.URL+"/get?key=user", old); body != "" {
		t.Fatalf("the old id still works: %q", body)
	}
}

func TestTooLargeBeforeWrite(t *testing.T) {
	e := openEnv(t)
	m, _ := session.New(e.Config(tokyo, false))
	var putErr error
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		putErr = m.Put(r.Context(), "photo", strings.Repeat("x", session.MaxItemSize))
	}))
	w0 := e.Count[tokyo].Writes.Load()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	var se *session.SizeError
	if !errors.Is(putErr, session.ErrTooLarge) || !errors.As(putErr, &se) || se.Key != "photo" {
		t.Fatalf("Put: %v", putErr)
	}
	if e.Count[tokyo].Writes.Load() != w0 || rec.Code != http.StatusOK {
		t.Fatalf("oversized value was written (or failed the request: %d)", rec.Code)
	}
}

// tokenCarrier is dbrouter's TokenCarrier interface, copied: session must
// satisfy it without importing dbrouter.
type tokenCarrier interface {
	LoadToken(r *http.Request) string
	SaveToken(w http.ResponseWriter, r *http.Request, token string)
}

var _ tokenCarrier = (*session.TokenCarrier)(nil)

func TestTokenCarrier(t *testing.T) {
	e := openEnv(t)
	m, _ := session.New(e.Config(tokyo, false))
	tc := m.TokenCarrier()
	var seen string
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = tc.LoadToken(r)
		if tok := r.FormValue("set"); tok != "" {
			tc.SaveToken(w, r, tok)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?set=0-1-42", nil))
	ck := rec.Result().Cookies()[0]
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(ck)
	w0 := e.Count[tokyo].Writes.Load()
	h.ServeHTTP(httptest.NewRecorder(), req)
	if seen != "0-1-42" || e.Count[tokyo].Writes.Load() != w0 {
		t.Fatalf("LoadToken %q (writes %d)", seen, e.Count[tokyo].Writes.Load()-w0)
	}
}

// TestTokenCarrierWrites (issue 14): only a token that advances costs a
// session write; keeping or removing it costs none.
func TestTokenCarrierWrites(t *testing.T) {
	e := openEnv(t)
	res, err := sessionharness.CarrierWrites(context.Background(), e, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Advance != 1 || res.Unchanged != 0 || res.Removal != 0 {
		t.Errorf("%+v: want 1 write per advancing request, none otherwise", res)
	}
}

func TestStoreSpans(t *testing.T) {
	e := openEnv(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	cfg := e.Config(tokyo, false)
	cfg.TracerProvider = tp
	m, _ := session.New(cfg)
	srv := testApp(t, m)
	b := newBrowser(t)
	resp, _ := b.do(http.MethodPost, srv.URL+"/put?key=user&value=ann")
	b.do(http.MethodGet, srv.URL+"/get?key=user", resp.Cookies()[0])
	var names []string
	for _, s := range sr.Ended() {
		names = append(names, s.Name())
		for _, a := range s.Attributes() {
			if v := a.Value.Emit(); strings.Contains(v, resp.Cookies()[0].Value) {
				t.Fatalf("span %s attribute %s holds the cookie", s.Name(), a.Key)
			}
		}
		if s.Name() == "GetItem "+e.Table {
			found := false
			for _, a := range s.Attributes() {
				found = found || (a.Key == "db.system.name" && a.Value.AsString() == "aws.dynamodb")
			}
			if !found {
				t.Fatalf("GetItem span lacks db.system.name: %v", s.Attributes())
			}
		}
	}
	if strings.Join(names, ",") != "PutItem "+e.Table+",GetItem "+e.Table {
		t.Fatalf("spans: %v", names)
	}
}
