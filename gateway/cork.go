package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// corkConn lets one socket write carry many websocket frames. The websocket
// library flushes after every frame; while the session's writer drains its
// queue it corks the connection, so those flushes only gather bytes, and
// uncorks when the queue is empty, writing them with one system call. A
// write while uncorked (a pong or close frame from the library, which may
// come from the reader goroutine) goes straight to the socket.
//
// Every socket write gets the write timeout as its deadline, so a stuck peer
// cannot hold a writer for longer, without a context per frame.
type corkConn struct {
	net.Conn
	timeout time.Duration // immutable

	mu     sync.Mutex
	corked bool   // guarded by mu
	buf    []byte // guarded by mu: bytes gathered while corked
}

// maxCork is how many bytes a cork gathers before it writes them anyway.
const maxCork = 64 << 10

// corkBufs holds the buffers of corks that are not gathering, so that an
// idle connection holds none.
var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.writeLocked(p)
	}
	if c.buf == nil {
		c.buf = (*corkBufs.Get().(*[]byte))[:0]
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= maxCork {
		if _, err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what the cork gathered and gives its buffer back.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	_, err := c.flushLocked()
	if c.buf != nil {
		if cap(c.buf) <= maxCork {
			b := c.buf[:0]
			corkBufs.Put(&b)
		}
		c.buf = nil
	}
	return err
}

func (c *corkConn) flushLocked() (int, error) {
	if len(c.buf) == 0 {
		return 0, nil
	}
	n, err := c.writeLocked(c.buf)
	c.buf = c.buf[:0]
	return n, err
}

func (c *corkConn) writeLocked(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// corkWriter is an http.ResponseWriter whose Hijack hands the websocket
// library a corkConn. Other methods are the wrapped writer's.
type corkWriter struct {
	http.ResponseWriter
	timeout time.Duration
	conn    *corkConn // set by Hijack
}

func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc, timeout: w.timeout}
	// net/http has flushed the 101 response, so its fresh writer is empty
	// and can be replaced by one that writes through the cork. The cork
	// does the buffering: the writer's own buffer only gathers a frame's
	// header and small payloads.
	bw := bufio.NewWriterSize(w.conn, connWriteBuf)
	// The read buffer only needs to hold frame headers and small frames;
	// net/http's 4 KiB one would stay with every idle connection. Bytes the
	// client sent early are moved into the smaller buffer.
	br := brw.Reader
	if n := br.Buffered(); n <= connReadBuf {
		early, _ := br.Peek(n)
		small := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc), connReadBuf)
		if _, err := small.Peek(n); err == nil {
			br = small
		}
	}
	return nc, bufio.NewReadWriter(br, bw), nil
}

// Per-connection buffer sizes of the websocket library.
const (
	connReadBuf  = 1024
	connWriteBuf = 512
)
