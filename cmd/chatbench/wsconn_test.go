package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/protocol"
)

// Tests of wsConn against three kinds of peer: the real server (chatd),
// coder/websocket's server side (a complete, independent implementation),
// and a raw peer that writes frames byte by byte, for what neither of the
// others would send (masked, reserved bits, fragments around pings).

// frame is a server frame: unmasked, FIN as given.
func frame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func textFrame(s string) []byte { return frame(true, opText, []byte(s)) }

// clientFrame is a frame read by the raw peer.
type clientFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readClientFrame reads one frame from the client; client frames must be
// masked.
func readClientFrame(br *bufio.Reader) (clientFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return clientFrame{}, err
	}
	f := clientFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0F}
	if h[1]&0x80 == 0 {
		return f, errors.New("unmasked client frame")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	var key [4]byte
	if _, err := io.ReadFull(br, key[:]); err != nil {
		return f, err
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(br, f.payload); err != nil {
		return f, err
	}
	for i := range f.payload {
		f.payload[i] ^= key[i%4]
	}
	return f, nil
}

// rawPeer starts a server that accepts the upgrade by hand, writes the 101
// and first in one write, and hands the socket to serve, which closes it.
// It returns the server's base URL.
func rawPeer(t *testing.T, first []byte, serve func(nc net.Conn, br *bufio.Reader)) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
		nc.SetDeadline(time.Now().Add(5 * time.Second)) // a test that fails must not hang
		if _, err := nc.Write(append([]byte(resp), first...)); err != nil {
			t.Errorf("write 101: %v", err)
		}
		serve(nc, brw.Reader)
	}))
	t.Cleanup(func() {
		// Hijacked connections outlive srv.Close; each serve ends by the
		// socket's deadline at the latest.
		srv.Close()
		wg.Wait()
	})
	return srv.URL
}

// dialTest dials base within a few seconds.
func dialTest(t *testing.T, base, token string) *wsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialWS(ctx, base, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	// Reads have no deadline in chatbench; a test that fails must not hang.
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c
}

// recv waits a few seconds at most for a value from ch.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("nothing came in 5s")
		panic("unreachable")
	}
}

func TestWSConnSendsTheUpgradeRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := dialWS(ctx, srv.URL+"/prefix/", "tok-1")
	if err == nil || !strings.Contains(err.Error(), "418 I'm a teapot: no") {
		t.Errorf("dial error %v, want the status and the body", err)
	}
	r := recv(t, got)
	want := map[string]string{
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Version": "13",
		"Authorization":         "Bearer tok-1",
	}
	for k, v := range want {
		if r.Header.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, r.Header.Get(k), v)
		}
	}
	if r.URL.Path != "/prefix/ws" || r.Method != http.MethodGet || r.Host != strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("request %s %s host %s", r.Method, r.URL.Path, r.Host)
	}
	if key, _ := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key")); len(key) != 16 {
		t.Errorf("Sec-WebSocket-Key %q is not 16 bytes in base64", r.Header.Get("Sec-WebSocket-Key"))
	}
}

func TestWSConnChecksTheAnswer(t *testing.T) {
	for name, resp := range map[string]string{
		"accept":     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoaXM=\r\n\r\n",
		"upgrade":    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		"connection": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		"extension":  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				nc, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				defer nc.Close()
				if strings.Contains(resp, "%s") {
					fmt.Fprintf(nc, resp, acceptKey(r.Header.Get("Sec-WebSocket-Key")))
				} else {
					io.WriteString(nc, resp)
				}
			}))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if c, err := dialWS(ctx, srv.URL, "t"); err == nil {
				c.CloseNow()
				t.Fatal("handshake accepted")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestWSConnSpeaksTLSToHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the upgrade request got through a certificate nobody trusts")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The test server's certificate is for 127.0.0.1 but signed by no
	// authority the system knows: refusing it shows that TLS is spoken
	// and the certificate checked.
	_, err := dialWS(ctx, srv.URL, "t")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("dial error %v, want the certificate refused", err)
	}
}

func TestWSConnDialHonoursTheContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		// Accept and say nothing.
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = dialWS(ctx, "http://"+l.Addr().String(), "t")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial error %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dial took %v with a 200ms context", d)
	}
}

func TestWSConnReadsTheFrameThatCameWithThe101(t *testing.T) {
	base := rawPeer(t, textFrame(`{"type":"welcome"}`), func(nc net.Conn, br *bufio.Reader) {
		defer nc.Close()
		io.Copy(io.Discard, br)
	})
	c := dialTest(t, base, "t")
	p, err := c.Read()
	if err != nil || string(p) != `{"type":"welcome"}` {
		t.Fatalf("Read = %q, %v", p, err)
	}
}

func TestWSConnReassemblesFragmentsAroundControlFrames(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 7000) // over the read buffer, 64-bit length
	pong := make(chan clientFrame, 1)
	base := rawPeer(t, nil, func(nc net.Conn, br *bufio.Reader) {
		defer nc.Close()
		for _, f := range [][]byte{
			frame(false, opText, []byte("frag-1 ")),
			frame(true, opPing, []byte("p1")),
			frame(false, opContinuation, []byte("frag-2 ")),
			frame(true, opPong, []byte("unasked")),
			frame(false, opContinuation, nil),
			frame(true, opContinuation, []byte("frag-3")),
			frame(true, opText, big),
			textFrame("small"),
		} {
			if _, err := nc.Write(f); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
		f, err := readClientFrame(br)
		if err != nil {
			t.Errorf("reading the pong: %v", err)
		}
		pong <- f
		io.Copy(io.Discard, br)
	})
	c := dialTest(t, base, "t")
	for _, want := range [][]byte{[]byte("frag-1 frag-2 frag-3"), big, []byte("small")} {
		p, err := c.Read()
		if err != nil || !bytes.Equal(p, want) {
			t.Fatalf("Read = %.40q (%d bytes), %v; want %.40q (%d bytes)", p, len(p), err, want, len(want))
		}
	}
	if f := recv(t, pong); f.op != opPong || !f.fin || string(f.payload) != "p1" {
		t.Errorf("answer to the ping: %+v, want a pong with p1", f)
	}
}

func TestWSConnRefusesWhatAServerMustNotSend(t *testing.T) {
	masked := []byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}
	for _, tc := range []struct {
		name  string
		bytes []byte
		code  int
	}{
		{"masked", masked, closeProtocol},
		{"binary", frame(true, opBinary, []byte("b")), closeUnsupported},
		{"reserved bits", append([]byte{0xC1}, frame(true, opText, []byte("x"))[1:]...), closeProtocol},
		{"reserved opcode", frame(true, 0x3, nil), closeProtocol},
		{"stray continuation", frame(true, opContinuation, []byte("x")), closeProtocol},
		{"text inside a message", append(frame(false, opText, []byte("a")), textFrame("b")...), closeProtocol},
		{"fragmented ping", frame(false, opPing, nil), closeProtocol},
		{"long ping", frame(true, opPing, make([]byte, 126)), closeProtocol},
		{"1-byte close", frame(true, opClose, []byte{3}), closeProtocol},
		{"close code 1006", frame(true, opClose, []byte{0x03, 0xEE}), closeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan clientFrame, 1)
			base := rawPeer(t, tc.bytes, func(nc net.Conn, br *bufio.Reader) {
				defer nc.Close()
				f, err := readClientFrame(br)
				if err != nil {
					t.Errorf("reading the close frame: %v", err)
				}
				got <- f
			})
			c := dialTest(t, base, "t")
			p, err := c.Read()
			var se *streamError
			if !errors.As(err, &se) || se.code != tc.code {
				t.Fatalf("Read = %q, %v; want a stream error with code %d", p, err, tc.code)
			}
			if _, again := c.Read(); again != err {
				t.Errorf("second Read: %v, want the same error", again)
			}
			f := recv(t, got)
			if f.op != opClose || len(f.payload) < 2 || int(binary.BigEndian.Uint16(f.payload)) != tc.code {
				t.Errorf("client sent %+v, want a close frame with %d", f, tc.code)
			}
			if closeStatus(err) != -1 {
				t.Errorf("closeStatus = %d, want -1: the server did not close", closeStatus(err))
			}
		})
	}
}

func TestWSConnCloseWithoutCode(t *testing.T) {
	got := make(chan clientFrame, 1)
	base := rawPeer(t, frame(true, opClose, nil), func(nc net.Conn, br *bufio.Reader) {
		defer nc.Close()
		f, _ := readClientFrame(br)
		got <- f
	})
	c := dialTest(t, base, "t")
	_, err := c.Read()
	if closeStatus(err) != closeNoStatus {
		t.Fatalf("Read error %v, want a close without code (1005)", err)
	}
	if f := recv(t, got); f.op != opClose || len(f.payload) != 0 {
		t.Errorf("answer %+v, want an empty close frame", f)
	}
}

func TestWSConnEndOfStreamInsideAFrame(t *testing.T) {
	base := rawPeer(t, textFrame("whole")[:4], func(nc net.Conn, br *bufio.Reader) {
		nc.Close()
	})
	c := dialTest(t, base, "t")
	if _, err := c.Read(); !errors.Is(err, io.ErrUnexpectedEOF) || closeStatus(err) != -1 {
		t.Errorf("Read error %v, want an unexpected EOF", err)
	}
}

// coderPeer starts a server that accepts the upgrade with coder/websocket
// and runs serve on the connection.
func coderPeer(t *testing.T, serve func(ctx context.Context, conn *websocket.Conn)) string {
	t.Helper()
	base, cancelAll := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer conn.CloseNow()
		ctx, cancel := context.WithTimeout(base, 10*time.Second)
		defer cancel()
		serve(ctx, conn)
	}))
	t.Cleanup(func() {
		// Hijacked connections outlive srv.Close: end and wait for them,
		// so that none reports to a finished test.
		srv.Close()
		cancelAll()
		wg.Wait()
	})
	return srv.URL
}

func TestWSConnAnswersPings(t *testing.T) {
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		ctx = conn.CloseRead(ctx) // reads the pongs
		for i := range 3 {
			if err := conn.Ping(ctx); err != nil {
				t.Errorf("ping %d: %v", i, err)
				return
			}
		}
		conn.Write(ctx, websocket.MessageText, []byte("pinged"))
		<-ctx.Done()
	})
	c := dialTest(t, base, "t")
	if p, err := c.Read(); err != nil || string(p) != "pinged" {
		t.Fatalf("Read = %q, %v", p, err)
	}
}

func TestWSConnReadsFragmentedMessages(t *testing.T) {
	parts := []string{"first ", strings.Repeat("middle ", 2000), "", "last"}
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		w, err := conn.Writer(ctx, websocket.MessageText)
		if err != nil {
			t.Errorf("writer: %v", err)
			return
		}
		for _, p := range parts {
			w.Write([]byte(p)) // one frame each
		}
		if err := w.Close(); err != nil {
			t.Errorf("writer close: %v", err)
		}
		conn.Write(ctx, websocket.MessageText, []byte("next"))
		conn.Read(ctx) // until the client goes
	})
	c := dialTest(t, base, "t")
	if p, err := c.Read(); err != nil || string(p) != strings.Join(parts, "") {
		t.Fatalf("Read = %.40q (%d bytes), %v", p, len(p), err)
	}
	if p, err := c.Read(); err != nil || string(p) != "next" {
		t.Fatalf("Read = %q, %v", p, err)
	}
}

func TestWSConnPeerCloses(t *testing.T) {
	closed := make(chan error, 1)
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		conn.Write(ctx, websocket.MessageText, []byte("bye soon"))
		// Close returns nil only once the client's close frame is in.
		closed <- conn.Close(websocket.StatusNormalClosure, "bye")
	})
	c := dialTest(t, base, "t")
	if p, err := c.Read(); err != nil || string(p) != "bye soon" {
		t.Fatalf("Read = %q, %v", p, err)
	}
	_, err := c.Read()
	var ce *closeError
	if !errors.As(err, &ce) || ce.Code != closeNormal || ce.Reason != "bye" {
		t.Fatalf("Read error %v, want the peer's close 1000 bye", err)
	}
	if err := recv(t, closed); err != nil {
		t.Errorf("peer's close handshake: %v", err)
	}
	if err := c.WriteText(context.Background(), []byte("late")); !errors.Is(err, errCloseSent) {
		t.Errorf("write after the close: %v, want errCloseSent", err)
	}
}

func TestWSConnMessageOverTheReadLimit(t *testing.T) {
	got := make(chan error, 1)
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		conn.Write(ctx, websocket.MessageText, make([]byte, readLimit)) // at the limit: fine
		conn.Write(ctx, websocket.MessageText, make([]byte, readLimit+1))
		_, _, err := conn.Read(ctx)
		got <- err
	})
	c := dialTest(t, base, "t")
	if p, err := c.Read(); err != nil || len(p) != readLimit {
		t.Fatalf("Read = %d bytes, %v; want %d", len(p), err, readLimit)
	}
	_, err := c.Read()
	var se *streamError
	if !errors.As(err, &se) || se.code != closeTooBig {
		t.Fatalf("Read error %v, want a stream error 1009", err)
	}
	if err := recv(t, got); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("peer read %v, want the client's close 1009", err)
	}
}

func TestWSConnRefusesInvalidUTF8(t *testing.T) {
	bad := frame(true, opText, []byte("caf\xc3"))
	// A fragment may end inside a character; the message must not.
	split := append(frame(false, opText, []byte("caf\xc3")), frame(true, opContinuation, []byte("\xa9"))...)
	got := make(chan clientFrame, 1)
	base := rawPeer(t, append(split, bad...), func(nc net.Conn, br *bufio.Reader) {
		defer nc.Close()
		f, _ := readClientFrame(br)
		got <- f
	})
	c := dialTest(t, base, "t")
	if p, err := c.Read(); err != nil || string(p) != "café" {
		t.Fatalf("Read = %q, %v; want café", p, err)
	}
	_, err := c.Read()
	var se *streamError
	if !errors.As(err, &se) || se.code != closeInvalidData {
		t.Fatalf("Read error %v, want a stream error 1007", err)
	}
	if f := recv(t, got); f.op != opClose || len(f.payload) < 2 || binary.BigEndian.Uint16(f.payload) != closeInvalidData {
		t.Errorf("peer got op %#x payload %q, want a close frame with 1007", f.op, f.payload)
	}
}

func TestWSConnDropsALargeMessageBuffer(t *testing.T) {
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		conn.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("x"), keptMessageBuffer+1))
		conn.Write(ctx, websocket.MessageText, []byte("small"))
		conn.Read(ctx)
	})
	c := dialTest(t, base, "t")
	if p, err := c.Read(); err != nil || len(p) != keptMessageBuffer+1 {
		t.Fatalf("Read = %d bytes, %v; want %d", len(p), err, keptMessageBuffer+1)
	}
	if p, err := c.Read(); err != nil || string(p) != "small" {
		t.Fatalf("Read = %q, %v; want small", p, err)
	}
	if cap(c.msg) > keptMessageBuffer {
		t.Errorf("the connection kept a %d-byte message buffer", cap(c.msg))
	}
}

func TestWSConnWritesMaskedFrames(t *testing.T) {
	sizes := []int{0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 200000}
	got := make(chan []byte, len(sizes))
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		conn.SetReadLimit(1 << 20)
		for range sizes {
			// coder/websocket refuses unmasked client frames.
			typ, p, err := conn.Read(ctx)
			if err != nil || typ != websocket.MessageText {
				t.Errorf("peer read %v, %v", typ, err)
				return
			}
			got <- p
		}
	})
	c := dialTest(t, base, "t")
	for _, n := range sizes {
		p := bytes.Repeat([]byte("abcdefghijk"), n/11+1)[:n]
		if err := c.WriteText(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		if q := recv(t, got); !bytes.Equal(p, q) {
			t.Fatalf("%d bytes written, peer read %d different ones", n, len(q))
		}
	}
}

func TestWSConnWriteHonoursTheContext(t *testing.T) {
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		<-ctx.Done() // reads nothing: the client's writes back up
	})
	c := dialTest(t, base, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	p := make([]byte, 1<<20)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = c.WriteText(ctx, p)
	}
	if err == nil {
		t.Fatal("1 GiB written to a peer that reads nothing")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("write error %v, want a timeout", err)
	}
	ended, end := context.WithCancel(context.Background())
	end()
	if err := c.WriteText(ended, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("write with an ended context: %v", err)
	}
}

// TestWSConnCancelCutsAStuckWrite: a context without a deadline that is
// cancelled while a write is stuck ends the write (on SIGINT, say).
func TestWSConnCancelCutsAStuckWrite(t *testing.T) {
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		<-ctx.Done() // reads nothing: the client's writes back up
	})
	c := dialTest(t, base, "t")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		p := make([]byte, 1<<20)
		var err error
		for i := 0; i < 1000 && err == nil; i++ {
			err = c.WriteText(ctx, p)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the writes back up
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("1 GiB written to a peer that reads nothing")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stuck write outlived its cancelled context")
	}
}

func TestWSConnCloseHandshake(t *testing.T) {
	peer := make(chan error, 1)
	base := coderPeer(t, func(ctx context.Context, conn *websocket.Conn) {
		_, _, err := conn.Read(ctx) // the library answers the close frame
		peer <- err
	})
	c := dialTest(t, base, "t")
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read()
		readErr <- err
	}()
	start := time.Now()
	if err := c.Close(closeNormal, "benchmark done"); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > closeWait/2 {
		t.Errorf("Close took %v with a peer that answers", d)
	}
	if err := recv(t, peer); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("peer read %v, want close 1000", err)
	}
	if err := recv(t, readErr); closeStatus(err) != closeNormal {
		t.Errorf("reader ended with %v, want the peer's answer 1000", err)
	}
}

func TestWSConnAgainstChatd(t *testing.T) {
	// Pings every 100 ms: a client that does not answer is dropped after
	// one interval, so a second of quiet is ten pongs.
	s := startChatd(t, "CHAT_PING_INTERVAL=100ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token, _, err := login(ctx, http.DefaultClient, s.url, "wsconn")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialWS(ctx, s.url, token+"x"); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("dial with a bad token: %v, want the 401", err)
	}
	c := dialTest(t, s.url, token)
	frames := make(chan string, 16)
	readErr := make(chan error, 1)
	go func() {
		for {
			p, err := c.Read()
			if err != nil {
				readErr <- err
				close(frames)
				return
			}
			frames <- string(p)
		}
	}()
	next := func() string {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("connection ended: %v", recv(t, readErr))
			}
			return f
		case <-time.After(5 * time.Second):
			t.Fatal("no frame in 5s")
		}
		return ""
	}
	if f := next(); !strings.Contains(f, `"type":"welcome"`) {
		t.Fatalf("first frame %s, want the welcome", f)
	}
	select {
	case err := <-readErr:
		t.Fatalf("connection ended while idle: %v", err)
	case <-time.After(time.Second):
	}
	req, _ := json.Marshal(protocol.Request{Type: protocol.TypeCommand, ID: "c1", Action: protocol.ActionCreate, Target: "#wsconn"})
	if err := c.WriteText(ctx, req); err != nil {
		t.Fatal(err)
	}
	for {
		f := next()
		if strings.Contains(f, `"id":"c1"`) {
			if !strings.Contains(f, `"type":"ack"`) {
				t.Fatalf("answer %s, want an ack", f)
			}
			break
		}
	}
	start := time.Now()
	if err := c.Close(closeNormal, "test done"); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > closeWait/2 {
		t.Errorf("Close took %v", d)
	}
	for range frames {
	}
	if err := recv(t, readErr); closeStatus(err) != closeNormal {
		t.Errorf("read loop ended with %v, want the server's close 1000", err)
	}
}

func TestTruncateUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"done", 10, "done"},
		{"done", 2, "do"},
		{"héllo", 2, "h"}, // é is two bytes: not split
		{"héllo", 3, "hé"},
		{"€", 2, ""},
	} {
		if got := truncateUTF8(tc.in, tc.n); got != tc.want {
			t.Errorf("truncateUTF8(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
