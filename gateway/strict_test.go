package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/wirechat/chat/gateway"
)

// The gateway frames data itself (frameConn), many frames to a system
// call, instead of letting coder/websocket write them. These tests read
// what it writes with an independent, strict implementation of RFC 6455,
// gorilla/websocket, which fails on any malformed frame: reserved bits,
// masked server frames, bad lengths, control frames that are too long or
// fragmented, data after a close frame.

func dialStrict(t *testing.T, n *node, l login) *gorilla.Conn {
	t.Helper()
	d := gorilla.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	conn, resp, err := d.Dial(n.wsURL(), http.Header{"Authorization": {"Bearer " + l.Token}})
	if err != nil {
		t.Fatalf("gorilla dial: %v", err)
	}
	resp.Body.Close()
	conn.SetReadLimit(8 << 20)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func readStrict(t *testing.T, c *gorilla.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("strict read: %v", err)
	}
	if typ != gorilla.TextMessage {
		t.Fatalf("strict read: message type %d, want text", typ)
	}
	return b
}

// TestStrictReaderBatches: batches of frames of every length encoding, up
// to frames larger than a batch's write buffer, with pings of the server's
// interleaved, read as exactly the frames that were queued, in order.
func TestStrictReaderBatches(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 65537, 200 << 10, 1 << 20}
	var frames [][]byte
	for round := range 20 {
		for _, size := range sizes {
			frames = append(frames, []byte(fmt.Sprintf("%d:%d:%s", round, size, strings.Repeat("x", size))))
		}
	}
	n := startNode(t, memoryBackend(), gateway.Config{PingInterval: 100 * time.Millisecond, SendQueue: 4096})
	l := n.login("strict")
	c := dialStrict(t, n, l)
	var pings atomic.Int64
	c.SetPingHandler(func(data string) error {
		pings.Add(1)
		return c.WriteControl(gorilla.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	if w := readStrict(t, c); !bytes.HasPrefix(w, []byte(`{"type":"welcome"`)) {
		t.Fatalf("first frame %.40s, want the welcome", w)
	}

	// Each round's frames are queued back to back, so the writer takes
	// them in batches; the reads answer the pings meanwhile. The rounds go
	// on (from the first again) until a few pings have come between them.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < len(frames) || pings.Load() < 3; i += len(sizes) {
		if i == len(frames) {
			if time.Now().After(deadline) {
				t.Fatalf("%d pings came between the batches in 30 s, want 3", pings.Load())
			}
			i = 0
		}
		if got := n.gw.QueueFrames("strict", frames[i:i+len(sizes)]...); got != 1 {
			t.Fatalf("queued for %d sessions", got)
		}
		for _, want := range frames[i : i+len(sizes)] {
			if got := readStrict(t, c); !bytes.Equal(got, want) {
				t.Fatalf("frame %.20q (%d bytes), want %.20q (%d bytes)", got, len(got), want, len(want))
			}
		}
	}
}

// TestStrictReaderClose: the close frame of a drain comes whole, after the
// frames queued before it, and nothing follows it.
func TestStrictReaderClose(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	l := n.login("strict")
	c := dialStrict(t, n, l)
	readStrict(t, c) // welcome
	queued := [][]byte{[]byte(`{"n":1}`), []byte(`{"n":2}`), bytes.Repeat([]byte("y"), 70000)}
	n.gw.QueueFrames("strict", queued...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go n.gw.Shutdown(ctx)
	for _, want := range queued {
		if got := readStrict(t, c); !bytes.Equal(got, want) {
			t.Fatalf("before the close: %.20q, want %.20q", got, want)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	if !gorilla.IsCloseError(err, gorilla.CloseGoingAway) {
		t.Fatalf("after the frames: %v, want close 1001", err)
	}
}
