package aurorashim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Resolver is a scripted name service for the driver's dial hook: it maps
// endpoint names (host:port as written in DSNs, such as
// "mycluster.cluster-xyz.ap-northeast-1.rds.test:3306") to stack addresses.
// A name may map to several addresses (a load-balanced reader endpoint):
// each dial then takes one at random, as DNS round robin looks to clients
// that cache answers differently (strict turns would lock into a phase
// with whoever else dials the name). [Resolver.Repoint] can keep the old answer
// for a while, like a client's DNS cache after Aurora moves an endpoint.
// Addresses it does not know are dialled as they are. Safe for concurrent
// use; its zero value is ready.
type Resolver struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu     sync.Mutex // protects names
	names  map[string]*answer
	dialer net.Dialer
}

type answer struct {
	addrs      []string
	stale      []string  // the old answer, served until staleUntil
	staleUntil time.Time //
	dials      map[string]int64
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Set maps name to addrs at once.
func (r *Resolver) Set(name string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names == nil {
		r.names = map[string]*answer{}
	}
	a := r.names[name]
	if a == nil {
		a = &answer{dials: map[string]int64{}}
		r.names[name] = a
	}
	a.addrs, a.stale, a.staleUntil = append([]string(nil), addrs...), nil, time.Time{}
}

// Repoint maps name to addrs, but dials keep getting the old answer for
// stale (the client's cached DNS answer).
func (r *Resolver) Repoint(name string, stale time.Duration, addrs ...string) {
	r.mu.Lock()
	a := r.names[name]
	var old []string
	if a != nil {
		old = a.current(r.now())
	}
	r.mu.Unlock()
	r.Set(name, addrs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if old != nil && stale > 0 {
		a := r.names[name]
		a.stale, a.staleUntil = old, r.now().Add(stale)
	}
}

func (a *answer) current(now time.Time) []string {
	if a.stale != nil && now.Before(a.staleUntil) {
		return a.stale
	}
	return a.addrs
}

// Lookup returns the address a dial of name would use now (for a
// load-balanced name, one of its addresses at random).
func (r *Resolver) Lookup(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.names[name]
	if a == nil {
		return name
	}
	addrs := a.current(r.now())
	if len(addrs) == 0 {
		return name
	}
	addr := addrs[rand.IntN(len(addrs))]
	a.dials[addr]++
	return addr
}

// Dials returns how many dials of name went to addr.
func (r *Resolver) Dials(name, addr string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.names[name]; a != nil {
		return a.dials[addr]
	}
	return 0
}

// DialContext is the driver's dial hook (go-sql-driver/mysql Config.DialFunc).
func (r *Resolver) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	target := r.Lookup(addr)
	c, err := r.dialer.DialContext(ctx, network, target)
	if err != nil {
		return nil, fmt.Errorf("dial %s (%s): %w", addr, target, err)
	}
	return c, nil
}
