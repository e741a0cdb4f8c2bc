package ryw

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
)

// servers are the harness's real HTTP servers, one per region and kind.
type servers struct {
	router    [2]string // dbrouter's middleware, routers that know both regions
	tabsCtl   [2]string // the tabs control: the last response's token wins
	localOnly [2]string // dbrouter's middleware, routers that know their region's reader only
	localCtl  [2]string // the local_only control: the token dropped once the known reader has the write

	transport *http.Transport
	list      []*httptest.Server
}

func newServers(routers, locals [2]*dbrouter.Router, p *pools, g *gates) *servers {
	srv := &servers{transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	start := func(h http.Handler) string {
		ts := httptest.NewServer(h)
		srv.list = append(srv.list, ts)
		return ts.URL
	}
	for i := range 2 {
		srv.router[i] = start(routers[i].Middleware(serveHandler(routers[i], g)))
		srv.tabsCtl[i] = start(lastWins(routers[i], g))
		srv.localOnly[i] = start(locals[i].Middleware(serveHandler(locals[i], g)))
		srv.localCtl[i] = start(dropIfApplied(locals[i], p.readers[i], g))
	}
	return srv
}

func (srv *servers) close() {
	for _, ts := range srv.list {
		ts.Close()
	}
	srv.transport.CloseIdleConnections()
}

// client returns a browser: a client with its own cookie jar. The regions'
// servers share the host 127.0.0.1 (cookies ignore ports), as one site
// served from two regions does.
func (srv *servers) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: srv.transport, Jar: jar, Timeout: 30 * time.Second}
}

// gates hold a request after its reads until the harness releases it, so
// that a sequence can make a response land after another one.
type gates struct {
	mu sync.Mutex // protects m
	m  map[string]*gate
}

type gate struct {
	reached chan struct{} // closed when the request has read
	release chan struct{} // closed by the harness
}

func (g *gates) get(id string) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	gt := g.m[id]
	if gt == nil {
		gt = &gate{reached: make(chan struct{}), release: make(chan struct{})}
		g.m[id] = gt
	}
	return gt
}

// serve runs one harness request under ctx: ?id=N [&v=V: write V first]
// [&f=M: also read M's row] [&gate=G: hold the response at gate G]. The
// body is "<id's value> <M's value or -1>".
func serve(ctx context.Context, rt *dbrouter.Router, g *gates, r *http.Request) (string, error) {
	q := r.URL.Query()
	id := q.Get("id")
	if v := q.Get("v"); v != "" {
		if _, err := rt.ExecContext(ctx, updateQuery, v, id); err != nil {
			return "", err
		}
	}
	var got int64
	if err := rt.QueryRowContext(ctx, selectQuery, id).Scan(&got); err != nil {
		return "", err
	}
	follow := int64(-1)
	if f := q.Get("f"); f != "" {
		if err := rt.QueryRowContext(ctx, selectQuery, f).Scan(&follow); err != nil {
			return "", err
		}
	}
	if id := q.Get("gate"); id != "" {
		gt := g.get(id)
		close(gt.reached)
		select {
		case <-gt.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return fmt.Sprintf("%d %d", got, follow), nil
}

func reply(w http.ResponseWriter, body string, err error) {
	if err != nil {
		http.Error(w, "request failed", http.StatusInternalServerError)
		return
	}
	io.WriteString(w, body)
}

// serveHandler serves harness requests on rt, in the scope the middleware
// around it made.
func serveHandler(rt *dbrouter.Router, g *gates) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := serve(r.Context(), rt, g, r)
		reply(w, body, err)
	})
}

// controlCookie is the cookie of the controls' token handling.
const controlCookie = "ctl_ryw"

// controlScope starts a scope from the control cookie.
func controlScope(rt *dbrouter.Router, r *http.Request) context.Context {
	tok := ""
	if c, err := r.Cookie(controlCookie); err == nil {
		tok = c.Value
	}
	ctx, _ := rt.WithToken(dbrouter.NewContext(r.Context()), tok)
	return ctx
}

func setControlCookie(w http.ResponseWriter, tok string) {
	c := &http.Cookie{Name: controlCookie, Value: tok, Path: "/", HttpOnly: true, MaxAge: 3600}
	if tok == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// lastWins is the tabs control: one token cookie, which every response
// sets to its own request's token, as the middleware did before tokens
// only moved forward (it also deleted it once every known reader had the
// position). A response that started before a concurrent write and lands
// after it takes the write's token away.
func lastWins(rt *dbrouter.Router, g *gates) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := controlScope(rt, r)
		body, err := serve(ctx, rt, g, r)
		setControlCookie(w, rt.Token(ctx))
		reply(w, body, err)
	})
}

// dropIfApplied is the local_only control: as the router did before, the
// token of a write is dropped once every reader the router knows (here its
// region's only) has applied it; requests that write nothing leave the
// cookie alone.
func dropIfApplied(rt *dbrouter.Router, reader *sql.DB, g *gates) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := controlScope(rt, r)
		body, err := serve(ctx, rt, g, r)
		if pos := rt.WrittenPosition(ctx); pos != "" {
			tok := rt.Token(ctx)
			if applied(r.Context(), reader, pos) {
				tok = ""
			}
			setControlCookie(w, tok)
		}
		reply(w, body, err)
	})
}

// applied reports whether reader has applied pos (a dbrouter position text,
// "domain:seq,...") within a second.
func applied(ctx context.Context, reader *sql.DB, pos string) bool {
	var gtids []string
	for p := range strings.SplitSeq(pos, ",") {
		d, seq, ok := strings.Cut(p, ":")
		if !ok {
			return false
		}
		gtids = append(gtids, d+"-0-"+seq)
	}
	var res sql.NullInt64
	err := reader.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 1)", strings.Join(gtids, ",")).Scan(&res)
	return err == nil && res.Valid && res.Int64 == 0
}

// get sends a harness request and returns the values of its body.
func get(ctx context.Context, c *http.Client, url string) (got, follow int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("rywharness: %s: %s", url, resp.Status)
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &got, &follow); err != nil {
		return 0, 0, fmt.Errorf("rywharness: %s: body %q: %w", url, b, err)
	}
	return got, follow, nil
}

// httpStrategy sends each request to a real HTTP server of the region, with
// the user's browser (its own cookie jar).
type httpStrategy struct {
	urls [2]string
	srv  *servers
}

func (h *httpStrategy) request(ctx context.Context, u *user, region int, write bool, value int64) (outcome, error) {
	if u.client == nil {
		u.client = h.srv.client()
	}
	url := fmt.Sprintf("%s/u?id=%d&f=%d", h.urls[region], u.id, u.follow)
	if write {
		url += fmt.Sprintf("&v=%d", value)
	}
	start := time.Now()
	got, follow, err := get(ctx, u.client, url)
	return outcome{got: got, follow: follow, lat: time.Since(start)}, err
}

// runTabsUser runs one user with two tabs until ctx is done: each round
// sends two requests at once, in the two regions (which one where
// alternates), the first writing with probability WriteProbability. A read
// must show every write acknowledged before its request was sent; the
// write's own request must show the write.
func runTabsUser(ctx context.Context, cfg Config, srv *servers, u *user, rng *rand.Rand, t *tally) {
	c := srv.client()
	var acked int64
	for round := 0; ctx.Err() == nil; round++ {
		before := acked
		write := rng.Float64() < cfg.WriteProbability
		var res [2]struct {
			got int64
			lat time.Duration
			err error
		}
		var wg sync.WaitGroup
		for tab := range 2 {
			url := fmt.Sprintf("%s/u?id=%d", srv.router[(round+tab)%2], u.id)
			if tab == 0 && write {
				url += fmt.Sprintf("&v=%d", before+1)
			}
			wg.Go(func() {
				start := time.Now()
				res[tab].got, _, res[tab].err = get(ctx, c, url)
				res[tab].lat = time.Since(start)
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		for tab := range 2 {
			r := res[tab]
			if r.err != nil {
				t.errors.Add(1)
				continue
			}
			want := before
			if tab == 0 && write {
				want = before + 1
				acked = before + 1
				t.writes.Add(1)
			}
			t.reads.Add(1)
			if r.got < want {
				t.violations.Add(1)
			}
			t.mu.Lock()
			t.lat = append(t.lat, r.lat)
			t.mu.Unlock()
		}
		sleep(ctx, think(rng, cfg.MeanThink))
	}
}
