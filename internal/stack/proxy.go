package stack

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// delayProxy is a TCP proxy that delays the bytes flowing from its target to
// its clients by a configurable one-way delay. It stands in for a cross-region
// link (this kernel has no netem): a replica's replication connection runs
// through it, so its lag is real replication lag.
type delayProxy struct {
	ln     net.Listener
	target atomic.Value // string host:port
	delay  atomic.Int64 // nanoseconds, applied target -> client

	// closed is set by Close: an accept error after it is no failure.
	closed atomic.Bool
	// onFail, if not nil, runs (in a goroutine of its own, so that it may
	// Close the proxy) when the proxy stops serving although nobody closed
	// it: its listener was closed behind its back or keeps failing.
	onFail func(*delayProxy, error)

	mu    sync.Mutex // protects conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// maxAcceptErrors is how many accept errors in a row (a full file table,
// say) a proxy retries before it counts as failed.
const maxAcceptErrors = 100

func newDelayProxy(addr, target string, delay time.Duration, onFail func(*delayProxy, error)) (*delayProxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, conns: map[net.Conn]struct{}{}, onFail: onFail}
	p.target.Store(target)
	p.delay.Store(int64(delay))
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Retarget points new connections at target and drops the current ones, so
// the client reconnects to the new target.
func (p *delayProxy) Retarget(target string) {
	p.target.Store(target)
	p.dropAll()
}

func (p *delayProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Addr is the address the proxy listens on.
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

// Delay is the current one-way delay.
func (p *delayProxy) Delay() time.Duration { return time.Duration(p.delay.Load()) }

func (p *delayProxy) Close() {
	p.closed.Store(true)
	p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}

func (p *delayProxy) dropAll() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *delayProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *delayProxy) serve() {
	defer p.wg.Done()
	fails := 0
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if p.closed.Load() {
				return
			}
			if fails++; !errors.Is(err, net.ErrClosed) && fails < maxAcceptErrors {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			// Dead: nobody closed the proxy, yet it accepts no more.
			p.ln.Close()
			p.dropAll()
			if p.onFail != nil {
				go p.onFail(p, err)
			}
			return
		}
		fails = 0
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(client)
		}()
	}
}

func (p *delayProxy) handle(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target.Load().(string), 2*time.Second)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		p.track(client, false)
		p.track(server, false)
		client.Close()
		server.Close()
	}()
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(server, client)
		server.Close()
		done <- struct{}{}
	}()
	go func() {
		p.copyDelayed(client, server)
		client.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
}

type chunk struct {
	at   time.Time
	data []byte
}

// copyDelayed copies src to dst, holding each chunk until the current delay
// has passed since it was read. Order is kept; a lowered delay takes effect
// for chunks already waiting.
func (p *delayProxy) copyDelayed(dst, src net.Conn) {
	chunks := make(chan chunk, 4096)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{at: time.Now(), data: buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		if wait := time.Until(c.at.Add(time.Duration(p.delay.Load()))); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(c.data); err != nil {
			src.Close()
			for range chunks {
			}
			return
		}
	}
}
