package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// httpServer is one HTTP server on a listener of its own: the chat, the
// metrics (CHAT_METRICS_ADDR) or the profiler (CHAT_DEBUG_ADDR).
type httpServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
	err  error         // Serve's error; written before done closes

	mu     sync.Mutex
	unused map[net.Conn]struct{} // guarded by mu: accepted, no byte of a request read yet
}

// listen opens addr, named by setting in errors, and serves h there until
// shutdown.
func listen(setting, addr string, h http.Handler) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	s := &httpServer{ln: ln, done: make(chan struct{}), unused: map[net.Conn]struct{}{}}
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: s.track}
	go func() {
		s.err = s.srv.Serve(ln)
		close(s.done)
	}()
	return s, nil
}

// addr is the address the server listens on.
func (s *httpServer) addr() string { return s.ln.Addr().String() }

// track keeps the set of connections that have not begun a request.
func (s *httpServer) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state == http.StateNew {
		s.unused[c] = struct{}{}
	} else {
		delete(s.unused, c)
	}
}

// shutdown stops accepting, lets the requests in progress finish, and closes
// every connection by the time ctx ends; it returns ctx's error if that cut
// some short.
//
// http.Server.Shutdown closes idle keep-alive connections at once but waits
// for a connection that has not sent its first request until it is 5 s old
// (net/http treats it as idle only then). Browsers open such connections
// ahead of need, so a chat that had drained its websockets in milliseconds
// still took up to 6 s to exit. Those connections hold no request, and
// nothing is lost by closing them: once Serve has returned no connection is
// accepted any more, so the set is complete, and each one is closed.
func (s *httpServer) shutdown(ctx context.Context) error {
	stopped := make(chan error, 1)
	go func() { stopped <- s.srv.Shutdown(ctx) }()
	<-s.done
	s.mu.Lock()
	for c := range s.unused {
		c.Close()
	}
	s.mu.Unlock()
	err := <-stopped
	s.srv.Close()
	return err
}
