package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestFrameConnNothingAfterClose: once a close frame has gone out (the
// library may write one from its reader), no data frame and no second
// close frame follow it on the socket.
func TestFrameConnNothingAfterClose(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	fc := &frameConn{Conn: server, timeout: time.Second}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()

	if err := fc.writeFrames([][]byte{[]byte("hi")}); err != nil {
		t.Fatal(err)
	}
	closeFrame := []byte{opClose, 2, 0x03, 0xf1} // 1009
	if _, err := fc.Write(closeFrame); err != nil {
		t.Fatal(err)
	}
	if err := fc.writeFrames([][]byte{[]byte("late")}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("data frame after the close frame: err %v", err)
	}
	if n, err := fc.Write([]byte{opClose, 2, 0x03, 0xe8}); err != nil || n != 4 {
		t.Fatalf("second close frame: %d, %v", n, err)
	}
	server.Close()
	want := append([]byte{0x81, 2, 'h', 'i'}, closeFrame...)
	if b := <-got; string(b) != string(want) {
		t.Fatalf("on the wire: % x, want % x", b, want)
	}
}

// TestFrameConnStickyError: after a failed write the stream may end inside
// a frame, so nothing more is written.
func TestFrameConnStickyError(t *testing.T) {
	server, client := net.Pipe()
	client.Close()
	fc := &frameConn{Conn: server, timeout: time.Second}
	first := fc.writeFrames([][]byte{[]byte("x")})
	if first == nil {
		t.Fatal("write to a closed pipe succeeded")
	}
	if _, err := fc.Write([]byte{0x89, 0}); !errors.Is(err, first) {
		t.Fatalf("later write: %v, want %v", err, first)
	}
}

func TestAppendTextFrame(t *testing.T) {
	for _, tc := range []struct {
		n      int
		header []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		b := appendTextFrame(nil, make([]byte, tc.n))
		if string(b[:len(tc.header)]) != string(tc.header) || len(b) != len(tc.header)+tc.n {
			t.Errorf("payload %d: header % x, length %d", tc.n, b[:len(tc.header)], len(b))
		}
	}
}

// writeSizes is a socket that records the length of each write.
type writeSizes struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

// TestControlFrameOneWrite: the websocket library writes a control frame
// through the small buffer hijackWriter gives it, and frameConn relies on
// getting each whole, in one Write (to keep data frames out of it and to
// spot a close frame). The longest a server may send is 127 bytes: a close
// frame with a 123-byte reason.
func TestControlFrameOneWrite(t *testing.T) {
	reason := strings.Repeat("r", 123)
	rec := make(chan []int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc := new(frameConn)
		conn, err := websocket.Accept(&hijackWriter{ResponseWriter: w, timeout: time.Second, conn: fc}, r, nil)
		if err != nil {
			rec <- nil
			return
		}
		ws := &writeSizes{Conn: fc.Conn}
		fc.Conn = ws
		conn.Close(websocket.StatusGoingAway, reason)
		ws.mu.Lock()
		rec <- ws.sizes
		ws.mu.Unlock()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	_, _, err = conn.Read(ctx) // answers the close
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("read: %v, want a close with 1001", err)
	}
	if sizes := <-rec; len(sizes) != 1 || sizes[0] != 2+2+len(reason) {
		t.Fatalf("writes of the close frame: %v, want one of %d bytes", sizes, 2+2+len(reason))
	}
}
