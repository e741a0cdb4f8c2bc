package stack

import (
	"fmt"
	"strconv"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// DefaultRegionRTT is the round trip a client adds when it reaches a MariaDB
// server of the other region (through the server's client route).
const DefaultRegionRTT = 150 * time.Millisecond

// route is a client route: a delaying proxy through which clients of one
// region reach a MariaDB server of the other, so that a cross-region query
// costs a real round trip (see testserver.Route).
type route struct {
	name   string // "m1 via us-east-1"
	server string
	from   string // the clients' region
	port   int
	proxy  *delayProxy
}

// defineRoutes lays out one client route per MariaDB server, from the
// region it is not in.
func (s *Stack) defineRoutes() {
	for i, n := range mariadbServers {
		from := testserver.SecondaryRegion
		if s.servers[n].Region == testserver.SecondaryRegion {
			from = testserver.PrimaryRegion
		}
		name := n + " via " + from
		s.routes[name] = &route{name: name, server: n, from: from, port: s.cfg.port(7 + i)}
		s.routeOrder = append(s.routeOrder, name)
	}
}

// startRoutes starts the client routes' proxies, with the region RTT.
func (s *Stack) startRoutes() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.routeOrder {
		rt := s.routes[name]
		hook := s.proxyFailed(name, rt.from, func(old, p *delayProxy) bool {
			if rt.proxy != old {
				return false
			}
			rt.proxy = p
			return true
		})
		p, err := newDelayProxy("127.0.0.1:"+strconv.Itoa(rt.port), s.servers[rt.server].Addr(), s.cfg.RegionRTT, hook)
		if err != nil {
			return fmt.Errorf("stack: client route %s: %w", name, err)
		}
		rt.proxy = p
	}
	return nil
}

// setRegionRTT sets the round trip every client route adds.
func (s *Stack) setRegionRTT(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("stack: region round trip %s is negative", d)
	}
	for _, rt := range s.routes {
		if rt.proxy != nil {
			rt.proxy.SetDelay(d)
		}
	}
	return nil
}

// routeStates returns the client routes as published.
func (s *Stack) routeStates() []testserver.Route {
	var out []testserver.Route
	for _, name := range s.routeOrder {
		rt := s.routes[name]
		r := testserver.Route{Name: name, Server: rt.server, From: rt.from, Host: "127.0.0.1", Port: rt.port}
		if rt.proxy != nil {
			r.Running = !rt.proxy.closed.Load()
			r.RTTMillis = rt.proxy.Delay().Milliseconds()
		}
		out = append(out, r)
	}
	return out
}

// proxyFailed returns the failure hook of a proxy named name (for the death
// record) serving clients of region: the failure is recorded like a
// server's death (it fails `stack run`) and a new proxy with the same
// address, target and delay replaces the failed one (at most maxRestarts
// times), through replace, which reports whether old was still current.
func (s *Stack) proxyFailed(name, region string, replace func(old, p *delayProxy) bool) func(*delayProxy, error) {
	var hook func(*delayProxy, error)
	hook = func(old *delayProxy, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		old.Close()
		if s.closed {
			return
		}
		d := testserver.Death{Server: name, Kind: testserver.KindProxy, Region: region, PID: 0,
			Exit: "stopped serving: " + err.Error(), At: time.Now().UTC(), LastLog: []string{err.Error()}}
		s.deaths = append(s.deaths, d)
		s.cfg.Logf("%s", d)
		defer func() {
			if err := s.writeState(); err != nil {
				s.cfg.Logf("write state after %s's death: %v", name, err)
			}
		}()
		if s.restarts[name] >= maxRestarts {
			s.cfg.Logf("%s not restarted: it died %d times", name, s.restarts[name]+1)
			return
		}
		s.restarts[name]++
		p, lerr := newDelayProxy(old.Addr(), old.target.Load().(string), old.Delay(), hook)
		if lerr != nil {
			s.cfg.Logf("restart %s: %v", name, lerr)
			return
		}
		if !replace(old, p) {
			p.Close()
			return
		}
		s.cfg.Logf("%s restarted (restart %d of at most %d)", name, s.restarts[name], maxRestarts)
	}
	return hook
}
