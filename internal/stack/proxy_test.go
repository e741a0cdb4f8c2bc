package stack

import (
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// echoServer listens on a loopback port and echoes what it reads, until the
// test ends.
func echoServer(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln
}

// echoRoundTrip dials addr, sends a ping and returns how long the echo took.
func echoRoundTrip(t *testing.T, addr string) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	return time.Since(start)
}

func TestDelayProxyDelaysServerToClient(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := newDelayProxy("127.0.0.1:0", echo.Addr().String(), 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func() time.Duration {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("read %q, %v", buf, err)
		}
		return time.Since(start)
	}
	if d := roundTrip(); d < 100*time.Millisecond {
		t.Fatalf("round trip %s through a 100 ms proxy", d)
	}
	p.SetDelay(0)
	if d := roundTrip(); d >= 100*time.Millisecond {
		t.Fatalf("round trip %s after the delay was removed", d)
	}
}

func TestLowerGTID(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"0-1-5", "0-1-9", "0-1-5"},
		{"0-1-12", "0-2-9", "0-2-9"},
		{"", "0-1-3", "0-1-3"},
		{"0-1-3", "", "0-1-3"},
	} {
		if got := lowerGTID(tc.a, tc.b); got != tc.want {
			t.Errorf("lowerGTID(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestDelayProxyReportsItsDeath(t *testing.T) {
	echo := echoServer(t)
	failed := make(chan *delayProxy, 1)
	p, err := newDelayProxy("127.0.0.1:0", echo.Addr().String(), 0, func(p *delayProxy, err error) { failed <- p })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	echoRoundTrip(t, p.Addr())
	p.ln.Close() // behind its back
	select {
	case got := <-failed:
		if got != p {
			t.Fatalf("failure hook got %p, want the failed proxy %p", got, p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a proxy whose listener was closed behind its back did not report its death")
	}
	q, err := newDelayProxy("127.0.0.1:0", echo.Addr().String(), 0, func(*delayProxy, error) { t.Error("a closed proxy reported a death") })
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
}

// testRoutePorts is the port base of TestClientRoutes' stack (its routes
// only: no server runs).
const testRoutePorts = 23500

func TestClientRoutes(t *testing.T) {
	const rtt = 60 * time.Millisecond
	s := &Stack{cfg: Config{Dir: t.TempDir(), PortBase: testRoutePorts, RegionRTT: rtt, Logf: t.Logf},
		servers: map[string]*server{}, proxies: map[string]*delayProxy{}, routes: map[string]*route{}, restarts: map[string]int{}}
	s.define()
	s.defineRoutes()
	if err := s.checkPorts(); err != nil {
		t.Fatal(err)
	}
	// Each route's server is an echo server here.
	for _, n := range mariadbServers {
		s.servers[n].Port = echoServer(t).Addr().(*net.TCPAddr).Port
	}
	if err := s.startRoutes(); err != nil {
		t.Fatal(err)
	}
	defer s.Down()

	st := s.State()
	want := map[string][2]string{ // route -> server, from
		"m1 via us-east-1":      {"m1", testserver.SecondaryRegion},
		"r1 via us-east-1":      {"r1", testserver.SecondaryRegion},
		"r2 via ap-northeast-1": {"r2", testserver.PrimaryRegion},
	}
	if len(st.Routes) != len(want) {
		t.Fatalf("routes %+v, want %v", st.Routes, want)
	}
	for _, r := range st.Routes {
		if w, ok := want[r.Name]; !ok || r.Server != w[0] || r.From != w[1] || !r.Running || r.RTTMillis != rtt.Milliseconds() {
			t.Errorf("route %+v, want server %s from %s, running, %d ms", r, w[0], w[1], rtt.Milliseconds())
		}
		if s.servers[r.Server].Region == r.From {
			t.Errorf("route %s serves %s's own region", r.Name, r.Server)
		}
		if d := echoRoundTrip(t, r.Addr()); d < rtt {
			t.Errorf("round trip through %s took %s, less than its %s", r.Name, d, rtt)
		}
	}
	if err := s.setRegionRTT(0); err != nil {
		t.Fatal(err)
	}
	if d := echoRoundTrip(t, st.Routes[0].Addr()); d >= rtt {
		t.Errorf("round trip %s after the region RTT was set to 0", d)
	}

	// A route that dies behind the stack's back is a death (it fails
	// `stack run`), and the stack brings it back.
	s.mu.Lock()
	old := s.routes["m1 via us-east-1"].proxy
	s.mu.Unlock()
	old.ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		deaths := s.UnexpectedDeaths()
		s.mu.Lock()
		cur := s.routes["m1 via us-east-1"].proxy
		s.mu.Unlock()
		if slices.ContainsFunc(deaths, func(d testserver.Death) bool {
			return d.Server == "m1 via us-east-1" && d.Kind == testserver.KindProxy && strings.Contains(d.String(), "died unexpectedly")
		}) && cur != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no death recorded and no restart after the route's listener was closed: deaths %v", deaths)
		}
		time.Sleep(10 * time.Millisecond)
	}
	echoRoundTrip(t, st.Routes[0].Addr())
}
