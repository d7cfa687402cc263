package chattest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy in front of one node, which a test uses to lose what
// the node sends on the connections open at a moment (Blackhole) and then
// to break them (Cut), while new connections pass as usual. It is how a
// test loses an ack: the request reaches the node, its answer never comes
// back. It can also hold new connections (Hold) until the test lets them
// through (Release): how a test keeps a client away for as long as it
// needs.
type Proxy struct {
	// URL is the proxy's base URL, to give a client in place of the node's.
	URL string

	upstream string // host:port of the node; immutable
	ln       net.Listener
	wg       sync.WaitGroup // the accept loop and every link's copiers

	mu     sync.Mutex
	links  map[*link]struct{} // guarded by mu
	closed bool               // guarded by mu
	held   chan struct{}      // guarded by mu: closed by Release; nil when not held
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	mute           atomic.Bool // drop what the server sends
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.client.Close()
		l.server.Close()
	})
}

// NewProxy starts a proxy on a free port of 127.0.0.1 in front of the node
// at base (http://host:port) and stops it when t ends.
func NewProxy(t testing.TB, base string) *Proxy {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), upstream: u.Host, ln: ln, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.Release()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if held != nil {
				<-held
			}
			p.link(c)
		}()
	}
}

// link connects c to the node and copies both ways until either side ends.
func (p *Proxy) link(c net.Conn) {
	s, err := net.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	l := &link{client: c, server: s}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		io.Copy(s, c)
		p.drop(l)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && !l.mute.Load() {
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.drop(l)
}

func (p *Proxy) drop(l *link) {
	l.close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// Blackhole drops, from now on, everything the node sends on the
// connections open now; what clients send still reaches the node.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.mute.Store(true)
	}
}

// Hold makes new connections wait, accepted but not passed to the node,
// until Release.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// Release lets the held connections through, and the new ones again.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// Cut closes the connections open now, on both sides.
func (p *Proxy) Cut() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		p.drop(l)
	}
}
