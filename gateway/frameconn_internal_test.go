package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
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

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

// TestFrameConnTryWriteKeepsOrder: a write that does not wait, to a socket
// whose buffer is full, keeps what the socket did not take; it goes out
// before anything written later (data frames, a control frame, the close
// frame), so the peer reads every frame whole and in order.
func TestFrameConnTryWriteKeepsOrder(t *testing.T) {
	server, client := tcpPair(t)
	server.SetWriteBuffer(4 << 10)
	fc := newFrameConn(server, 5*time.Second)
	if fc.raw == nil {
		t.Skip("no raw socket writes on this platform")
	}

	// Fill the socket until a write is kept, nobody reading.
	payload := make([]byte, 1000)
	var want []byte
	frames := 0
	for {
		for i := range payload {
			payload[i] = byte('a' + frames%26)
		}
		done, err := fc.tryWriteFrames([][]byte{payload})
		if err != nil {
			t.Fatal(err)
		}
		want = appendTextFrame(want, payload)
		frames++
		if !done {
			break
		}
		if frames > 100000 {
			t.Fatal("the socket never filled")
		}
	}
	// Behind the kept bytes: another try (queued behind them), a batch,
	// a ping and the close frame.
	if done, err := fc.tryWriteFrames([][]byte{[]byte("queued")}); done || err != nil {
		t.Fatalf("try behind kept bytes: done %v, err %v", done, err)
	}
	want = appendTextFrame(want, []byte("queued"))
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	if err := fc.flush(); err != nil {
		t.Fatal(err)
	}
	if err := fc.writeFrames([][]byte{[]byte("later")}); err != nil {
		t.Fatal(err)
	}
	want = appendTextFrame(want, []byte("later"))
	ping := []byte{0x89, 0}
	closeFrame := []byte{opClose, 2, 0x03, 0xe8}
	for _, f := range [][]byte{ping, closeFrame} {
		if _, err := fc.Write(f); err != nil {
			t.Fatal(err)
		}
		want = append(want, f...)
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("%d frames: the peer read %d bytes, want %d (equal prefix %d)", frames, len(b), len(want), commonPrefix(b, want))
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestFrameConnTryWriteKeepsDeadline: writes that do not wait are checked
// against the socket's write deadline by the runtime, so they must keep
// it ahead too; a session written to only that way was closed once the
// deadline set by its first blocking write passed.
func TestFrameConnTryWriteKeepsDeadline(t *testing.T) {
	server, client := tcpPair(t)
	go io.Copy(io.Discard, client)
	const timeout = 100 * time.Millisecond
	fc := newFrameConn(server, timeout)
	if fc.raw == nil {
		t.Skip("no raw socket writes on this platform")
	}
	if err := fc.writeFrames([][]byte{[]byte("first")}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(3 * timeout); time.Now().Before(end); time.Sleep(timeout / 10) {
		if done, err := fc.tryWriteFrames([][]byte{[]byte("x")}); err != nil || !done {
			t.Fatalf("write that does not wait: done %v, err %v", done, err)
		}
	}
}
