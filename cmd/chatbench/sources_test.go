package main

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestParseSources(t *testing.T) {
	got, err := parseSources("127.0.0.2-127.0.0.4, 127.0.1.1")
	want := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
		netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.1.1")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("parseSources = %v, %v; want %v", got, want, err)
	}
	for _, bad := range []string{"", "x", "127.0.0.4-127.0.0.2", "127.0.0.1-y"} {
		if _, err := parseSources(bad); err == nil {
			t.Errorf("parseSources(%q) took it", bad)
		}
	}
}

// TestDialFromSource: a connection dialled with a source address comes
// from it.
func TestDialFromSource(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	from := make(chan net.Addr, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			from <- c.RemoteAddr()
			c.Close()
		}
	}()
	b := newBench(Config{Sources: []netip.Addr{netip.MustParseAddr("127.0.0.9")}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dialWSFrom(ctx, "http://"+l.Addr().String(), "t", b.source(0)) // the handshake fails: only the source matters
	select {
	case a := <-from:
		if ip := a.(*net.TCPAddr).IP.String(); ip != "127.0.0.9" {
			t.Fatalf("came from %s, want 127.0.0.9", ip)
		}
	case <-ctx.Done():
		t.Fatal("no connection")
	}
}
