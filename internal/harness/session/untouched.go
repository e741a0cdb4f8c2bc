package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/regiondb/regiondb/session"
)

// UntouchedResult compares the cost of the Manager's middleware with scs's
// LoadAndSave (memory store) on a request whose handler never touches its
// session, with and without a session cookie. CPU only: no server.
type UntouchedResult struct {
	// NsRatio is the larger of the two cases' median ratios (Manager /
	// scs) over paired, interleaved batches in one process.
	NsRatio         float64 `json:"ns_ratio"`
	NsRatioCookie   float64 `json:"ns_ratio_with_cookie"`
	NsRatioNoCookie float64 `json:"ns_ratio_without_cookie"`
	NsManager       float64 `json:"ns_per_request_manager"` // with a cookie
	NsSCS           float64 `json:"ns_per_request_scs"`     // with a cookie
	// Allocs are per request (testing.AllocsPerRun), the larger of the
	// two cases for the Manager and the smaller for scs.
	AllocsManager float64 `json:"allocs_manager"`
	AllocsSCS     float64 `json:"allocs_scs"`
	Pairs         int     `json:"pairs"`
	Batch         int     `json:"batch"`
}

// discardWriter is a ResponseWriter that keeps nothing, so that the
// comparison measures the middlewares, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// Untouched measures [UntouchedResult] with pairs batches of batch
// requests per side.
func Untouched(pairs, batch int) (UntouchedResult, error) {
	res := UntouchedResult{Pairs: pairs, Batch: batch}
	region := Regions[0]
	m, err := session.New(session.Config{Table: "t", Region: region,
		Clients: map[string]session.Client{region: dynamodb.New(dynamodb.Options{Region: region})}})
	if err != nil {
		return res, err
	}
	sm := NewSCS()
	// A session for scs's cookie.
	var scsToken string
	h := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "user", "42")
		tok, _, err := sm.Commit(r.Context())
		if err == nil {
			scsToken = tok
		}
	}))
	h.ServeHTTP(&discardWriter{h: http.Header{}}, mustRequest(context.Background()))
	// A well-formed cookie of the Manager (never read: the handler does not
	// touch the session).
	ourCookie := formatCookie([24]byte{1, 2, 3}, 7, region)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	ours, theirs := m.Middleware(next), sm.LoadAndSave(next)
	for _, withCookie := range []bool{true, false} {
		reqOurs, reqSCS := mustRequest(context.Background()), mustRequest(context.Background())
		if withCookie {
			reqOurs.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: ourCookie})
			reqSCS.AddCookie(&http.Cookie{Name: sm.Cookie.Name, Value: scsToken})
		}
		w := &discardWriter{h: http.Header{}}
		run := func(h http.Handler, r *http.Request) func() {
			return func() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		}
		a, b := run(ours, reqOurs), run(theirs, reqSCS)
		aa, ab := testing.AllocsPerRun(1000, a), testing.AllocsPerRun(1000, b)
		if withCookie {
			res.AllocsManager, res.AllocsSCS = aa, ab
		} else {
			res.AllocsManager, res.AllocsSCS = max(res.AllocsManager, aa), min(res.AllocsSCS, ab)
		}
		ratio, nsA, nsB := pairedRatio(a, b, pairs, batch)
		if withCookie {
			res.NsRatioCookie, res.NsManager, res.NsSCS = ratio, nsA, nsB
		} else {
			res.NsRatioNoCookie = ratio
		}
	}
	res.NsRatio = max(res.NsRatioCookie, res.NsRatioNoCookie)
	return res, nil
}

// formatCookie builds a session cookie value as documented in the session
// package: base64url(0x01 | id | uvarint version | len(region) | region |
// HMAC-SHA256 keyed with the id over what precedes, first 16 bytes).
func formatCookie(id [24]byte, version uint64, region string) string {
	b := append([]byte{1}, id[:]...)
	b = binary.AppendUvarint(b, version)
	b = append(b, byte(len(region)))
	b = append(b, region...)
	mac := hmac.New(sha256.New, id[:])
	mac.Write(b)
	b = append(b, mac.Sum(nil)[:16]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewSCS returns an scs session manager with scs.New's settings and its
// memory store, without the store's cleanup goroutine (scs.New starts one
// that cannot be stopped reliably: its stop channel is made inside it).
func NewSCS() *scs.SessionManager {
	return &scs.SessionManager{
		Lifetime: 24 * time.Hour,
		Store:    memstore.NewWithCleanupInterval(0),
		Codec:    scs.GobCodec{},
		ErrorFunc: func(w http.ResponseWriter, _ *http.Request, _ error) {
			http.Error(w, "", http.StatusInternalServerError)
		},
		Cookie: scs.SessionCookie{Name: "session", HttpOnly: true, Path: "/", SameSite: http.SameSiteLaxMode, Persist: true},
	}
}

func mustRequest(ctx context.Context) *http.Request {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.com/static", nil)
	if err != nil {
		panic(err)
	}
	return r
}

// pairedRatio runs a and b in alternating batches (the order flips every
// pair) and returns the median of the per-pair ratios a/b and the median
// ns per call of each.
func pairedRatio(a, b func(), pairs, batch int) (ratio, nsA, nsB float64) {
	timeBatch := func(f func()) float64 {
		t0 := time.Now()
		for range batch {
			f()
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(batch)
	}
	for range batch { // warm up
		a()
		b()
	}
	ratios, as, bs := make([]float64, pairs), make([]float64, pairs), make([]float64, pairs)
	for i := range pairs {
		var ta, tb float64
		if i%2 == 0 {
			ta, tb = timeBatch(a), timeBatch(b)
		} else {
			tb, ta = timeBatch(b), timeBatch(a)
		}
		ratios[i], as[i], bs[i] = ta/tb, ta, tb
	}
	return median(ratios), median(as), median(bs)
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}
