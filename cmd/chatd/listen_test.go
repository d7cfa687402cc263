package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestShutdownClosesUnusedConnections: a connection that has sent no
// request (a browser opens such spares ahead of need) does not hold the
// shutdown: net/http alone waits until it is 5 s old, which made chatd exit
// seconds after its drain. Requests in progress still finish, and idle
// keep-alive connections are closed.
func TestShutdownClosesUnusedConnections(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	s, err := listen("TEST_ADDR", "127.0.0.1:0", mux)
	if err != nil {
		t.Fatal(err)
	}
	defer s.srv.Close()

	// An idle keep-alive connection, and one that never sends anything.
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Get("http://" + s.addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	unused, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer unused.Close()
	// The server has accepted it once it shows in the set.
	waitFor(t, "the unused connection to be accepted", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.unused) == 1
	})

	// A request in progress.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + s.addr() + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-started

	// The deadline only keeps a broken shutdown from hanging the test; the
	// unused connection is younger than net/http's 5 s when it passes.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- s.shutdown(ctx) }()

	// The unused connection is closed by the server, not left to age.
	unused.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := unused.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the unused connection is still open: read %d, %v", n, err)
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v, want a clean stop before the deadline", err)
	}
	if got := <-slow; got != "done" {
		t.Errorf("the request in progress: %q, want it to finish", got)
	}
	if _, err := net.Dial("tcp", s.addr()); err == nil {
		t.Errorf("the listener still accepts after shutdown")
	}
}
