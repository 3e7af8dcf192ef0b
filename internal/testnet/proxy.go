package testnet

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP connections to a target. Down takes it away (every
// connection closed, new ones refused, as a process that died); Freeze
// stops it forwarding a byte without closing anything (as a host that
// vanished, or a partition: no FIN, no RST, so the peers only learn of it by
// their own deadlines); Up and Thaw undo them.
type Proxy struct {
	tb     testing.TB
	addr   string
	target string

	// lastSent is when the client side last sent bytes on (unix nanos).
	lastSent atomic.Int64

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	frozen bool
	thawed *sync.Cond
}

// NewProxy listens on a loopback port and forwards to target, a host:port
// or a URL with one. It is taken down when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		target = u.Host
	}
	p := &Proxy{tb: tb, target: target, conns: map[net.Conn]struct{}{}}
	p.thawed = sync.NewCond(&p.mu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testnet: proxy: %v", err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	tb.Cleanup(func() { p.Thaw(); p.Down() })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// URL is the proxy's base URL for HTTP.
func (p *Proxy) URL() string { return "http://" + p.addr }

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *Proxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.copy(up, c, true); done <- struct{}{} }()
	go func() { p.copy(c, up, false); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// LastSent is when a client last sent bytes through the proxy (a request
// started), zero if none ever did.
func (p *Proxy) LastSent() time.Time {
	if n := p.lastSent.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// copy forwards src to dst, holding every chunk while the proxy is frozen,
// and src's end too: a peer that closes its side while frozen is not heard
// of on the other side (no FIN) until the proxy thaws.
func (p *Proxy) copy(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.waitThawed()
		if n > 0 {
			if fromClient {
				p.lastSent.Store(time.Now().UnixNano())
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitThawed returns once the proxy is not frozen.
func (p *Proxy) waitThawed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.frozen {
		p.thawed.Wait()
	}
}

// Down closes the listener and every connection: calls fail with
// "connection refused" (or reset) until Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
}

// Up listens again on the same address.
func (p *Proxy) Up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.tb.Fatalf("testnet: proxy up: %v", err)
	}
	p.serve(ln)
}

// Freeze stops forwarding: connections stay open, nothing crosses them,
// and new connections are accepted but get no answer.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// Thaw forwards again what Freeze held.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	p.frozen = false
	p.mu.Unlock()
	p.thawed.Broadcast()
}
