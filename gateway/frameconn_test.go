package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wirechat/chat/gateway"
)

// TestFrameLengths sends messages whose frames need each of the three
// length encodings of RFC 6455 (7 bits, 16 bits, 64 bits) and checks that a
// real websocket client reads them whole.
func TestFrameLengths(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{MaxMessageBytes: 100000, MaxFrameBytes: 120000, RateLimit: 1000})
	alice := n.user("alice")
	alice.do("create", "#big")
	alice.expect("event")
	alice.do("join", "#big")
	alice.expect("event")
	for _, size := range []int{1, 20, 125, 126, 1000, 65535, 65536, 99999} {
		text := strings.Repeat("x", size)
		alice.send(fmt.Sprintf(`{"type":"message","target":"#big","message":"%s"}`, text))
		if m := alice.expect("message"); m["message"] != text {
			t.Fatalf("size %d: got %d bytes back", size, len(m["message"].(string)))
		}
	}
}

// rawSocket is a websocket spoken by hand over TCP, to send what a library
// client would not: frames before the 101, control frames of every size.
type rawSocket struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dialRaw sends the upgrade request and early (bytes a client sends before
// it has seen the 101) in one write, then reads the 101.
func (n *node) dialRaw(l login, early []byte) *rawSocket {
	n.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.http.URL, "http://"))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Authorization: Bearer " + l.Token + "\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), early...)); err != nil {
		n.t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		n.t.Fatalf("upgrade: HTTP %d", resp.StatusCode)
	}
	return &rawSocket{t: n.t, conn: conn, r: r}
}

// clientFrame is one final frame from a client: masked, as RFC 6455
// requires, with a fixed key.
func clientFrame(opcode byte, payload []byte) []byte {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// next reads the server's next frame: its opcode and payload.
func (s *rawSocket) next() (byte, []byte) {
	s.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		s.t.Fatal(err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		s.t.Fatalf("frame header % x: want final and unmasked", h)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(s.r, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(s.r, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(s.r, p); err != nil {
		s.t.Fatal(err)
	}
	return h[0] & 0x0f, p
}

// TestRequestsBeforeThe101 sends requests in the same packet as the
// upgrade, before the client has seen the 101: the gateway moves such
// early bytes out of net/http's read buffer into its own smaller one, or
// keeps net/http's when they do not fit. Either way every request is
// answered, in order.
func TestRequestsBeforeThe101(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{RateLimit: 1000})
	for _, requests := range []int{1, 3, 20} { // about 80, 240 and 1,600 bytes
		var early []byte
		for i := range requests {
			cmd := fmt.Sprintf(`{"type":"command","action":"create","target":"#early%d-%d","id":"c%d"}`, requests, i, i)
			early = append(early, clientFrame(0x1, []byte(cmd))...)
		}
		s := n.dialRaw(n.login(fmt.Sprintf("early%d", requests)), early)
		if _, p := s.next(); !strings.Contains(string(p), `"type":"welcome"`) {
			t.Fatalf("%d early requests: first frame %s, want the welcome", requests, p)
		}
		for want := 0; want < requests; {
			_, p := s.next()
			if strings.Contains(string(p), `"type":"ack"`) {
				if id := fmt.Sprintf(`"id":"c%d"`, want); !strings.Contains(string(p), id) {
					t.Fatalf("%d early requests: ack %s, want %s", requests, p, id)
				}
				want++
			}
		}
	}
}

// TestLongestControlFrames has the gateway answer a ping carrying the most
// a control frame may (125 bytes) and a close with the longest reason,
// through the websocket library's small write buffer. (That each goes out
// in one write is TestControlFrameOneWrite's.)
func TestLongestControlFrames(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	s := n.dialRaw(n.login("alice"), nil)
	s.next() // the welcome
	ping := []byte(strings.Repeat("p", 125))
	s.conn.Write(clientFrame(0x9, ping))
	if op, p := s.next(); op != 0xA || !bytes.Equal(p, ping) {
		t.Fatalf("pong: opcode %x, %d bytes; want 0xA and the ping's 125", op, len(p))
	}
	reason := strings.Repeat("r", 123)
	s.conn.Write(clientFrame(0x8, append([]byte{0x03, 0xE8}, reason...))) // 1000
	op, p := s.next()
	if op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1000 {
		t.Fatalf("close reply: opcode %x, payload %q; want a close with 1000", op, p)
	}
	if _, err := s.r.ReadByte(); err != io.EOF {
		t.Fatalf("after the close: %v, want EOF", err)
	}
}
