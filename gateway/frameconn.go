package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// frameConn is the socket under a session's websocket. The websocket
// library (coder/websocket) does the handshake, reads every frame, and
// writes the pong and close control frames through Write; pings are ours
// (ping). Data frames do not go through the library either: the session's writer hands writeFrames a
// whole batch, which frames them and sends them with one system call. The
// library flushes after every frame it writes, which costs one system call
// per frame and dominated the fan-out; a batch costs one in total.
//
// The two never interleave: both write under mu, and a control frame
// reaches Write whole (its header and at most 125 bytes of payload fit the
// library's write buffer, flushed once per frame). Once a close frame has
// gone out, whoever wrote it, writeFrames refuses: no data frame follows
// the close frame. Compression is off
// (the library's default, and the gateway does not enable it), so data
// frames carry no RSV bits.
//
// Every socket write has a deadline at most the write timeout away, so a
// stuck peer cannot hold a writer for longer, without a context per frame.
type frameConn struct {
	net.Conn
	timeout time.Duration // immutable

	mu        sync.Mutex // serialises socket writes
	deadline  time.Time  // guarded by mu: the write deadline last set
	closeSent bool       // guarded by mu: a close frame has been written
	err       error      // guarded by mu: the first write error, sticky

	pingAt atomic.Int64 // monoNow when the last ping went out; 0: none yet
	pongAt atomic.Int64 // monoNow when the last pong came in
}

// maxBatchBytes is how many bytes of frames go in one system call at most.
const maxBatchBytes = 64 << 10

// frameBufs holds batch buffers between writes, so that an idle connection
// holds none.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// opClose is the first byte of a close frame: FIN and opcode 8.
const opClose = 0x88

// Write is the library's path to the socket: each call is one whole
// control frame. The library may write a close frame from its reader (a
// frame over the read limit, the echo of the client's close) and then again
// from Close; only the first is sent, and no data frame follows it.
func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) > 0 && p[0] == opClose {
		if c.closeSent {
			return len(p), nil
		}
		c.closeSent = true
	}
	return c.writeLocked(p)
}

// writeFrames writes each payload as one unmasked, final text frame (RFC
// 6455 section 5.2), as few system calls as maxBatchBytes allows. The
// frames are built outside the lock and each chunk of whole frames is
// written under it, so a control frame (a pong, a ping) waits for one chunk
// at most, not for the whole batch.
func (c *frameConn) writeFrames(payloads [][]byte) error {
	bp := frameBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxBatchBytes {
			*bp = buf[:0]
			frameBufs.Put(bp)
		}
	}()
	for i, p := range payloads {
		buf = appendTextFrame(buf, p)
		if len(buf) < maxBatchBytes && i < len(payloads)-1 {
			continue
		}
		if err := c.writeChunk(buf); err != nil {
			return err
		}
		buf = buf[:0]
	}
	return nil
}

// ping writes a ping frame with no payload, unless a close frame has gone
// out. The session pings through here rather than through the library's
// Ping, which allocated about 2 KB a ping (two deadline contexts, a
// context callback, a pong channel): garbage that grew with the number of
// idle connections (BENCHMARKS.md, sitting 8).
func (c *frameConn) ping() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	c.pingAt.Store(monoNow())
	_, err := c.writeLocked(pingFrame[:])
	return err
}

// pingFrame is a server's ping: FIN and opcode 9, no payload.
var pingFrame = [2]byte{0x89, 0}

// heardPong records a pong from the peer: it is the library's
// OnPongReceived, called from the session's reader.
func (c *frameConn) heardPong(context.Context, []byte) { c.pongAt.Store(monoNow()) }

// answered reports whether the peer answered the last ping (or none was
// sent yet). Any pong counts: a peer that sends them is alive.
func (c *frameConn) answered() bool {
	at := c.pingAt.Load()
	return at == 0 || c.pongAt.Load() >= at
}

// writeChunk writes whole data frames, unless a close frame has gone out.
func (c *frameConn) writeChunk(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	_, err := c.writeLocked(b)
	return err
}

// writeLocked writes p under a deadline between half the write timeout and
// the whole of it from now: moving the deadline costs a runtime timer
// update, so it moves only when half of it has been used.
//
// After a failed write the stream may end inside a frame, so every later
// write fails with the same error.
func (c *frameConn) writeLocked(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if now := time.Now(); c.deadline.Sub(now) < c.timeout/2 {
		c.deadline = now.Add(c.timeout)
		c.Conn.SetWriteDeadline(c.deadline)
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// appendTextFrame appends a server-to-client text frame: FIN and opcode 1,
// no mask, the payload length in the shortest form.
func appendTextFrame(b, payload []byte) []byte {
	n := len(payload)
	switch {
	case n <= 125:
		b = append(b, 0x81, byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x81, 127,
			byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, payload...)
}

// hijackWriter is an http.ResponseWriter whose Hijack hands the websocket
// library a frameConn. Other methods are the wrapped writer's.
type hijackWriter struct {
	http.ResponseWriter
	timeout time.Duration
	conn    *frameConn // made by the caller, its socket set by Hijack
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn.Conn, w.conn.timeout = nc, w.timeout
	// net/http has flushed the 101 response, so its fresh writer is empty
	// and can be replaced by a small one that writes through frameConn: it
	// only ever holds one control frame.
	bw := bufio.NewWriterSize(w.conn, connWriteBuf)
	// The read buffer only needs to hold frame headers and small frames;
	// net/http's 4 KiB one would stay with every idle connection. Bytes the
	// client sent early (rare: it has not seen the 101 yet) are moved into
	// the smaller buffer.
	br := brw.Reader
	switch n := br.Buffered(); {
	case n == 0:
		br = bufio.NewReaderSize(nc, connReadBuf)
	case n <= connReadBuf:
		early, _ := br.Peek(n)
		small := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc), connReadBuf)
		if _, err := small.Peek(n); err == nil {
			br = small
		}
	}
	return nc, bufio.NewReadWriter(br, bw), nil
}

// Per-connection buffer sizes of the websocket library, which every idle
// connection holds (BENCHMARKS.md, sitting 14).
//
// The write buffer must hold a whole control frame, at most 2 + 125 bytes
// from a server: frameConn.Write relies on getting each in one call.
//
// The read buffer holds frame headers and the start of a payload. A
// client's requests are a few hundred bytes; a longer payload is read past
// the buffer, straight into the session's pooled one (bufio.Reader.Read
// does that for reads at least as long as its buffer), so a small buffer
// costs a long frame one more system call at most, not a copy.
const (
	connReadBuf  = 512
	connWriteBuf = 128
)
