package session

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/regiondb/regiondb/session"
)

// app is the service the scenarios talk to over real HTTP: a few routes
// over one region's Manager.
type app struct {
	m *session.Manager
	// loaded, if set, is called by /put after the session was read and
	// before it is changed (the concurrency scenario's barrier).
	loaded func()
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		for _, err := range []error{
			a.m.RenewToken(ctx),
			a.m.Put(ctx, "user", r.FormValue("user")),
			a.m.Put(ctx, "n", "0"),
		} {
			if err != nil {
				fail(w, err)
				return
			}
		}
		fmt.Fprint(w, r.FormValue("user"), " 0")
	})
	mux.HandleFunc("POST /incr", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		u, err := a.m.Get(ctx, "user")
		if err != nil {
			fail(w, err)
			return
		}
		s, _ := a.m.Get(ctx, "n")
		n, _ := strconv.Atoi(s)
		if err := a.m.Put(ctx, "n", strconv.Itoa(n+1)); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, u, " ", n+1)
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		u, err := a.m.Get(r.Context(), "user")
		if err != nil {
			fail(w, err)
			return
		}
		s, _ := a.m.Get(r.Context(), "n")
		fmt.Fprint(w, u, " ", s)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := a.m.Destroy(r.Context()); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /static", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "static")
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := a.m.Get(ctx, "user"); err != nil {
			fail(w, err)
			return
		}
		if a.loaded != nil {
			a.loaded()
		}
		if err := a.m.Put(ctx, r.FormValue("key"), r.FormValue("value")); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		v, err := a.m.Get(r.Context(), r.FormValue("key"))
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, v)
	})
	return a.m.Middleware(mux)
}

// server is one region's service on a real listener.
type server struct {
	*httptest.Server
	app    *app
	region string
}

func newServer(m *session.Manager) *server {
	a := &app{m: m}
	return &server{Server: httptest.NewServer(a.handler()), app: a}
}

// user is a browser: a cookie jar shared by both regions' servers (they are
// one site behind latency-based routing).
type user struct {
	name string
	c    *http.Client
}

func newUser(name string, tr http.RoundTripper) *user {
	jar, _ := cookiejar.New(nil)
	return &user{name: name, c: &http.Client{Jar: jar, Transport: tr}}
}

// do sends a request and returns the status and body.
func (u *user) do(ctx context.Context, method, base, path string, form url.Values) (int, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return 0, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := u.c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// cookieOf returns the session cookie the user's jar holds for base.
func (u *user) cookieOf(base string) *http.Cookie {
	req, _ := http.NewRequest(http.MethodGet, base, nil)
	for _, c := range u.c.Jar.Cookies(req.URL) {
		if c.Name == session.DefaultCookieName {
			return c
		}
	}
	return nil
}

// doWith sends a request with the given session cookie instead of the
// jar's (tr's connections, no jar).
func doWith(ctx context.Context, tr http.RoundTripper, method, url string, ck *http.Cookie) (int, string, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if ck != nil {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp, err
}

// barrier releases its waiters once n have arrived.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	done    chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, done: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.done)
	}
	b.mu.Unlock()
	select {
	case <-b.done:
	case <-ctx.Done():
	}
}
