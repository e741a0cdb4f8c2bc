package session_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	sessionharness "github.com/regiondb/regiondb/internal/harness/session"
	"github.com/regiondb/regiondb/session"
)

// BenchmarkMiddlewareUntouched is the cost of the middleware (no OTel SDK
// installed) for a request that never uses its session, with a session
// cookie, against the bare handler and against scs's LoadAndSave with its
// memory store (the anchor: a cookie read and a context value). No
// DynamoDB call; the cookie is not even parsed. bench-session reports the
// paired, interleaved ratio (untouched_request_ns_ratio).
func BenchmarkMiddlewareUntouched(b *testing.B) {
	m, err := session.New(session.Config{Table: "t", Region: tokyo,
		Clients: map[string]session.Client{tokyo: dynamodb.New(dynamodb.Options{Region: tokyo})}})
	if err != nil {
		b.Fatal(err)
	}
	sm := sessionharness.NewSCS() // scs.New's settings, its memstore without the goroutine
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, bc := range []struct {
		name   string
		h      http.Handler
		cookie string
	}{
		{"bare", h, ""},
		{"middleware", m.Middleware(h), session.DefaultCookieName},
		{"scs", sm.LoadAndSave(h), sm.Cookie.Name},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if bc.cookie != "" {
				req.AddCookie(&http.Cookie{Name: bc.cookie, Value: validCookie(1, 3, tokyo)})
			}
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
