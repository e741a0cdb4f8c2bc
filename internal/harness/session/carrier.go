package session

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"

	"github.com/regiondb/regiondb/session"
)

// CarrierResult is the outcome of [CarrierWrites]: session writes per
// request for each kind of token event dbrouter's middleware produces.
type CarrierResult struct {
	Requests  int     `json:"requests_per_kind"`
	Advance   float64 `json:"writes_per_advancing_request"` // SaveToken(new token)
	Unchanged float64 `json:"writes_per_unchanged_request"` // SaveToken(the token the session holds)
	Removal   float64 `json:"writes_per_removing_request"`  // SaveToken(""): every reader passed it
}

// CarrierWrites drives the session's TokenCarrier as dbrouter's middleware
// does (LoadToken, then SaveToken before the first byte), n requests per
// kind of event, and counts the DynamoDB writes.
func CarrierWrites(ctx context.Context, e *Env, n int) (CarrierResult, error) {
	res := CarrierResult{Requests: n}
	m, err := session.New(e.Config(Regions[0], false))
	if err != nil {
		return res, err
	}
	tc := m.TokenCarrier()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tc.LoadToken(r)
		if tok, ok := r.URL.Query()["token"]; ok {
			tc.SaveToken(w, r, tok[0])
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	var ck *http.Cookie
	do := func(query string) error {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/?"+query, nil)
		if ck != nil {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			return fmt.Errorf("sessionharness: carrier request: %d %s", rec.Code, rec.Body)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == session.DefaultCookieName && c.Value != "" {
				ck = c
			}
		}
		return nil
	}
	if err := do("token=0-1-1"); err != nil { // the session exists
		return res, err
	}
	cnt := e.Count[Regions[0]]
	measure := func(query func(i int) string) (float64, error) {
		w0 := cnt.Writes.Load()
		for i := range n {
			if err := do(query(i)); err != nil {
				return 0, err
			}
		}
		return float64(cnt.Writes.Load()-w0) / float64(n), nil
	}
	if res.Advance, err = measure(func(i int) string { return "token=0-1-" + strconv.Itoa(i+2) }); err != nil {
		return res, err
	}
	last := "0-1-" + strconv.Itoa(n+1)
	if res.Unchanged, err = measure(func(int) string { return "token=" + last }); err != nil {
		return res, err
	}
	if res.Removal, err = measure(func(int) string { return "token=" }); err != nil {
		return res, err
	}
	return res, nil
}
