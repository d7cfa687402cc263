package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/protocol"
)

// benchMessages returns n message frames' payloads as the server sends
// them to a fanout's subscribers: a stream of 100-byte texts.
func benchMessages(n int) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i], _ = json.Marshal(protocol.Message{
			Type: protocol.TypeMessage, Emitter: protocol.EmitterParticipant, Target: "#bench-0",
			Identifier: "0b7e3c1e-8f6c-4a34-9d5e-0d4f6a1b2c3d", Username: "bench-p0",
			Message: string(appendText(nil, 1, uint64(i+1), time.Now().UnixNano(), 100)),
			TS:      "2026-11-26T08:40:05.123Z",
		})
	}
	return frames
}

// BenchmarkHandleMessage is the load generator's own cost per delivered
// message once the websocket layer has read the frame: sort the frame,
// parse the text, count the stream, record the latency.
func BenchmarkHandleMessage(b *testing.B) {
	bn := newBench(Config{Concurrency: 1, URLs: []string{"http://127.0.0.1:1"}})
	c := bn.newClients("s", 1)[0]
	frames := benchMessages(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.handle(frames[i%len(frames)])
	}
}

func TestHandleMessageDoesNotAllocate(t *testing.T) {
	bn := newBench(Config{Concurrency: 1, URLs: []string{"http://127.0.0.1:1"}})
	c := bn.newClients("s", 1)[0]
	seq := uint64(0)
	frame := func() []byte {
		seq++
		f, _ := json.Marshal(protocol.Message{Type: protocol.TypeMessage, Target: "#bench-0",
			Message: string(appendText(nil, 1, seq, time.Now().UnixNano(), 100))})
		return f
	}
	c.handle(frame()) // the stream's first message creates its counter
	frames := make([][]byte, 200)
	for i := range frames {
		frames[i] = frame()
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		c.handle(frames[i])
		i++
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per delivered message, want 0", allocs)
	}
	if got := c.fresh.Load(); got != 1+101 {
		t.Errorf("%d messages counted, want 102", got)
	}
}

// BenchmarkReadFrame is the websocket layer's cost per received message
// frame, before handle: the frames come from memory, so no system call is
// counted. "wsConn" is chatbench's reader; "coder" is the read loop it
// replaced (coder/websocket's Conn.Reader, read to the end into a reused
// buffer), for comparison.
func BenchmarkReadFrame(b *testing.B) {
	var stream []byte
	for _, m := range benchMessages(1024) {
		stream = append(stream, textFrame(string(m))...)
	}
	perFrame := int64(len(stream) / 1024)

	b.Run("wsConn", func(b *testing.B) {
		c := &wsConn{
			br:       bufio.NewReaderSize(&loopReader{data: stream}, readBufSize),
			limit:    readLimit,
			readDone: make(chan struct{}),
		}
		b.SetBytes(perFrame)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Read(); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("coder", func(b *testing.B) {
		nc := &loopConn{loopReader: loopReader{data: stream}, ready: make(chan struct{})}
		conn, _, err := websocket.Dial(context.Background(), "ws://loop/ws", &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: &http.Transport{
				DialContext: func(context.Context, string, string) (net.Conn, error) { return nc, nil },
			}},
		})
		if err != nil {
			b.Fatal(err)
		}
		defer conn.CloseNow()
		conn.SetReadLimit(readLimit)
		buf := make([]byte, 0, 4096)
		b.SetBytes(perFrame)
		b.ReportAllocs()
		for b.Loop() {
			_, r, err := conn.Reader(context.Background())
			if err == nil {
				buf, err = readToEnd(r, buf[:0])
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// readToEnd reads r to its end into buf, reusing its memory: the read
// loop's helper before wsConn.
func readToEnd(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// loopReader returns data over and over; data is whole frames, so the
// stream never ends inside one.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// loopConn is a net.Conn for coder/websocket's Dial: it accepts the
// upgrade request written to it, then reads as its loopReader. Writes
// after the request are dropped.
type loopConn struct {
	loopReader
	ready chan struct{} // closed once the 101 is ready to be read
	req   []byte        // the request so far, until ready
	resp  []byte        // what is left of the 101
}

func (c *loopConn) Write(p []byte) (int, error) {
	select {
	case <-c.ready:
		return len(p), nil
	default:
	}
	c.req = append(c.req, p...)
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(c.req)))
	if err != nil {
		return len(p), nil // not all of it yet
	}
	c.resp = []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
	close(c.ready)
	return len(p), nil
}

func (c *loopConn) Read(p []byte) (int, error) {
	<-c.ready // net/http starts reading before it writes the request
	if len(c.resp) > 0 {
		n := copy(p, c.resp)
		c.resp = c.resp[n:]
		return n, nil
	}
	return c.loopReader.Read(p)
}

func (c *loopConn) Close() error                     { return nil }
func (c *loopConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *loopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *loopConn) SetDeadline(time.Time) error      { return nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }
