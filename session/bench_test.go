package session_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/regiondb/regiondb/session"
)

// BenchmarkMiddlewareUntouched is the cost of the middleware (no OTel SDK
// installed) for a request that never uses its session, against the bare
// handler: no DynamoDB call, a few allocations for the request state.
func BenchmarkMiddlewareUntouched(b *testing.B) {
	m, err := session.New(session.Config{Table: "t", Region: tokyo,
		Clients: map[string]session.Client{tokyo: dynamodb.New(dynamodb.Options{Region: tokyo})}})
	if err != nil {
		b.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"bare", h}, {"middleware", m.Middleware(h)}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: "AQ"})
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
