package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// wsConn is chatbench's own websocket client (RFC 6455), cut to what a load
// generator needs: it reads the server's text messages and writes masked
// text frames, answers pings, and closes with the close handshake. There
// are no extensions (no compression) and no subprotocols.
//
// chatbench shares the machine with the servers it measures, so what it
// spends per received frame is taken from them. A general library pays, per
// message, for a channel-based lock, a message reader with a limit reader,
// and a frame header read byte by byte; here the header is parsed from the
// read buffer in place and a message that fits in the buffer is returned
// without a copy.
//
// One goroutine reads (Read); any goroutine may write (WriteText), and the
// reader writes pongs and the close frame, so writes are serialised by wmu.
type wsConn struct {
	nc    net.Conn
	br    *bufio.Reader // also holds what the server sent right after the 101
	limit int64         // largest message accepted, in bytes

	// Owned by the reading goroutine.
	consumed int    // bytes of the message last returned, still in br
	msg      []byte // a message that spans frames or does not fit in br
	rerr     error  // sticky: the error that ended reading

	readDone chan struct{} // closed when reading has ended

	wmu       sync.Mutex
	wbuf      []byte    // guarded by wmu: the frame being written
	wdeadline time.Time // guarded by wmu: the write deadline last set
	closeSent bool      // guarded by wmu: a close frame has gone out
	werr      error     // guarded by wmu: sticky, the stream may end inside a frame
}

// Frame opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes chatbench sends or needs to tell apart (section 7.4.1).
const (
	closeNormal      = 1000
	closeProtocol    = 1002
	closeUnsupported = 1003
	closeNoStatus    = 1005 // not on the wire: the peer's close frame had no code
	closeInvalidData = 1007
	closeTooBig      = 1009
)

const (
	// readBufSize is the read buffer of a connection, kept for its whole
	// life: a whole frame in it is returned without a copy, and one read
	// system call fills it with many ~200-byte frames. Idle runs hold
	// thousands of connections, so it is not larger.
	readBufSize = 8 << 10
	// readLimit is the largest message accepted (what chatbench allowed
	// coder/websocket to read).
	readLimit = 1 << 20
	// closeWait bounds how long Close waits for the peer's close frame, and
	// controlWriteTimeout each control frame written; the same 5 s as
	// coder/websocket.
	closeWait           = 5 * time.Second
	controlWriteTimeout = 5 * time.Second
	// maxControlPayload is the largest payload of a control frame.
	maxControlPayload = 125
)

// acceptGUID is the key suffix of the handshake (section 1.3).
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// errCloseSent reports a write after the close frame: nothing may follow it.
var errCloseSent = errors.New("websocket: close frame already sent")

// closeError is the end of a connection by the peer's close frame; Code is
// its close code (closeNoStatus if it had none).
type closeError struct {
	Code   int
	Reason string
}

func (e *closeError) Error() string {
	return fmt.Sprintf("websocket closed by peer: %d %q", e.Code, e.Reason)
}

// closeStatus returns the peer's close code if err ended a connection with
// a close frame, -1 otherwise.
func closeStatus(err error) int {
	var ce *closeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// streamError is a fault in what the peer sent; reading ends with a close
// frame of code.
type streamError struct {
	code int
	msg  string
}

func (e *streamError) Error() string { return "websocket: " + e.msg }

// dialWS opens a websocket to the /ws endpoint of the node at base (an
// http:// or https:// URL, the same as ws:// and wss://), authenticated by
// token. ctx bounds the dial and the handshake.
func dialWS(ctx context.Context, base, token string) (*wsConn, error) {
	return dialWSFrom(ctx, base, token, nil)
}

// dialWSFrom is dialWS from the local address local (nil: any). One source
// address has at most about 28,000 ephemeral ports towards one node:
// more connections than that need more source addresses.
func dialWSFrom(ctx context.Context, base, token string, local *net.TCPAddr) (*wsConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("node URL: %w", err)
	}
	secure := false
	port := "80"
	switch u.Scheme {
	case "http", "ws":
	case "https", "wss":
		secure, port = true, "443"
	default:
		return nil, fmt.Errorf("node URL %q: scheme is not http or https", base)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("node URL %q: no host", base)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	d := net.Dialer{}
	if local != nil {
		d.LocalAddr = local
	}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, err
	}
	if secure {
		nc = tls.Client(nc, &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
	}
	c, err := handshake(ctx, nc, u, token)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// handshake upgrades nc to a websocket (section 4.1) within ctx: the
// deadline of ctx is the socket's until the 101 is read, and ending ctx
// ends the handshake.
func handshake(ctx context.Context, nc net.Conn, u *url.URL, token string) (*wsConn, error) {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	c, err := upgrade(nc, u, token)
	stop()
	if cerr := contextEnded(ctx); cerr != nil {
		// The socket's deadline cut the handshake short, or will cut
		// the first read: say why.
		return nil, fmt.Errorf("websocket handshake: %w", cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	return c, nil
}

// contextEnded returns why ctx has ended, or nil. Its deadline counts as
// soon as it has passed: a socket with the same deadline can fail a moment
// before ctx itself notices.
func contextEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// upgrade writes the upgrade request and checks the server's answer.
func upgrade(nc net.Conn, u *url.URL, token string) (*wsConn, error) {
	if !validHeaderValue(token) {
		return nil, errors.New("token is not a valid header value")
	}
	var raw [16]byte
	crand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	path := strings.TrimRight(u.EscapedPath(), "/") + "/ws"
	req := "GET " + path + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Authorization: Bearer " + token + "\r\n" +
		"\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, readBufSize)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, URL: u})
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if err := checkUpgrade(resp, key); err != nil {
		return nil, err
	}
	// A 101 has no body: br now holds whatever the server sent after it
	// (the welcome, usually), and keeps reading frames from nc.
	return &wsConn{nc: nc, br: br, limit: readLimit, readDone: make(chan struct{})}, nil
}

// checkUpgrade checks that resp accepts the upgrade requested with key.
// Any other answer is an error that names its status and, since the server
// says there why it refused (node full, too many sessions), the start of
// its body.
func checkUpgrade(resp *http.Response, key string) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		if msg := strings.TrimSpace(string(body)); msg != "" {
			return fmt.Errorf("%s: %s", resp.Status, msg)
		}
		return errors.New(resp.Status)
	}
	switch {
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		return fmt.Errorf("101 with Upgrade %q, want websocket", resp.Header.Get("Upgrade"))
	case !headerHasToken(resp.Header, "Connection", "upgrade"):
		return fmt.Errorf("101 with Connection %q, want Upgrade", resp.Header.Get("Connection"))
	case resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key):
		return fmt.Errorf("101 with Sec-WebSocket-Accept %q, want %q", resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key))
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		// None was offered, so frames could not be read as the server
		// would write them.
		return fmt.Errorf("101 with extensions %q, none was asked for", resp.Header.Get("Sec-WebSocket-Extensions"))
	case resp.Header.Get("Sec-WebSocket-Protocol") != "":
		return fmt.Errorf("101 with subprotocol %q, none was asked for", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	return nil
}

// acceptKey is the Sec-WebSocket-Accept that answers key.
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// headerHasToken says whether a comma-separated header of h lists token
// (case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// validHeaderValue refuses control characters, which would end the header
// (or the request) early.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// frameHeader is what Read needs of a frame's header.
type frameHeader struct {
	fin    bool
	op     byte
	size   int   // header bytes
	length int64 // payload bytes
}

// Read returns the payload of the next text message, reassembled if it
// came in fragments. The slice is valid until the next call: it is often
// the read buffer itself. Control frames are handled on the way: a ping is
// answered with a pong, a pong ignored, the peer's close frame answered
// with a close frame and returned as a *closeError. Once Read has returned
// an error, the socket is closed and every later call returns that error.
func (c *wsConn) Read() ([]byte, error) {
	if c.rerr != nil {
		return nil, c.rerr
	}
	if c.consumed > 0 {
		c.br.Discard(c.consumed) // buffered, so it cannot fail
		c.consumed = 0
	}
	p, err := c.readMessage()
	if err == nil && !utf8.Valid(p) {
		// Section 8.1: a text message that is not UTF-8 fails the
		// connection. chatd must never send one; if it does, the run
		// reports the disconnect rather than counting garbage.
		err = &streamError{closeInvalidData, "text message is not valid UTF-8"}
	}
	if err != nil {
		c.endRead(err)
		return nil, err
	}
	return p, nil
}

// endRead ends the connection after the read error err: a fault of the
// peer's gets a close frame first, as the RFC asks (section 7.1.7).
func (c *wsConn) endRead(err error) {
	var se *streamError
	if errors.As(err, &se) {
		c.writeClose(se.code, se.msg)
	}
	c.rerr = err
	close(c.readDone)
	c.nc.Close()
}

// readMessage reads frames until a data message is complete.
func (c *wsConn) readMessage() ([]byte, error) {
	if cap(c.msg) > keptMessageBuffer {
		c.msg = nil // one large message does not cost the connection for good
	}
	c.msg = c.msg[:0]
	fragmented := false
	for {
		h, err := c.readHeader()
		if err != nil {
			return nil, err
		}
		if h.op >= opClose {
			if err := c.control(h); err != nil {
				return nil, err
			}
			continue
		}
		if err := checkDataFrame(h, fragmented); err != nil {
			return nil, err
		}
		if h.length > c.limit-int64(len(c.msg)) {
			return nil, &streamError{closeTooBig, fmt.Sprintf("message over the read limit of %d bytes", c.limit)}
		}
		if h.fin && !fragmented {
			return c.readPayload(h)
		}
		c.br.Discard(h.size) // peeked by readHeader
		if c.msg, err = appendPayload(c.msg, c.br, int(h.length)); err != nil {
			return nil, err
		}
		if h.fin {
			return c.msg, nil
		}
		fragmented = true
	}
}

// checkDataFrame checks a data frame's opcode against the state of the
// message: a text frame starts one, continuation frames carry the rest.
func checkDataFrame(h frameHeader, fragmented bool) error {
	switch {
	case h.op == opBinary:
		// The server only sends text.
		return &streamError{closeUnsupported, "unexpected binary message"}
	case h.op == opText && fragmented:
		return &streamError{closeProtocol, "text frame inside a fragmented message"}
	case h.op == opContinuation && !fragmented:
		return &streamError{closeProtocol, "continuation frame outside a message"}
	case h.op != opText && h.op != opContinuation:
		return &streamError{closeProtocol, fmt.Sprintf("reserved opcode %#x", h.op)}
	}
	return nil
}

// keptMessageBuffer is the largest message buffer a connection keeps
// between messages.
const keptMessageBuffer = 64 << 10

// readHeader parses the next frame's header from the read buffer, without
// consuming it (section 5.2).
func (c *wsConn) readHeader() (frameHeader, error) {
	b, err := c.br.Peek(2)
	if err != nil {
		return frameHeader{}, readErr(err, len(b))
	}
	h := frameHeader{fin: b[0]&0x80 != 0, op: b[0] & 0x0F, size: 2}
	if b[0]&0x70 != 0 {
		return h, &streamError{closeProtocol, "reserved bits set, no extension was negotiated"}
	}
	if b[1]&0x80 != 0 {
		return h, &streamError{closeProtocol, "masked frame from the server"}
	}
	switch n := b[1] & 0x7F; n {
	case 126:
		h.size = 4
	case 127:
		h.size = 10
	default:
		h.length = int64(n)
		return h, nil
	}
	if b, err = c.br.Peek(h.size); err != nil {
		return h, readErr(err, len(b))
	}
	if h.size == 4 {
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	} else if n := binary.BigEndian.Uint64(b[2:]); n < 1<<63 {
		h.length = int64(n)
	} else {
		return h, &streamError{closeProtocol, "payload length with the top bit set"}
	}
	return h, nil
}

// readPayload returns a whole message's payload: from the read buffer in
// place when the frame fits in it (consumed at the next Read), else
// copied out.
func (c *wsConn) readPayload(h frameHeader) ([]byte, error) {
	n := h.size + int(h.length) // the length is within the read limit
	if n > c.br.Size() {
		c.br.Discard(h.size)
		var err error
		c.msg, err = appendPayload(c.msg, c.br, int(h.length))
		return c.msg, err
	}
	b, err := c.br.Peek(n)
	if err != nil {
		return nil, readErr(err, len(b))
	}
	c.consumed = n
	return b[h.size:], nil
}

// appendPayload appends the next n bytes of br to dst.
func appendPayload(dst []byte, br *bufio.Reader, n int) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	if _, err := io.ReadFull(br, dst[start:]); err != nil {
		return dst[:start], readErr(err, 1)
	}
	return dst, nil
}

// readErr wraps a read error; an end of stream after got bytes of a frame
// is an unexpected one.
func readErr(err error, got int) error {
	if err == io.EOF && got > 0 {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("websocket read: %w", err)
}

// control handles a control frame (section 5.5) and consumes it.
func (c *wsConn) control(h frameHeader) error {
	if !h.fin || h.length > maxControlPayload {
		return &streamError{closeProtocol, "fragmented or oversized control frame"}
	}
	n := h.size + int(h.length)
	b, err := c.br.Peek(n)
	if err != nil {
		return readErr(err, len(b))
	}
	payload := b[h.size:]
	switch h.op {
	case opPing:
		// The server drops a peer that does not answer its pings.
		err = c.writeControl(opPong, payload)
	case opPong:
	case opClose:
		err = c.peerClose(payload)
	default:
		err = &streamError{closeProtocol, fmt.Sprintf("reserved opcode %#x", h.op)}
	}
	c.br.Discard(n)
	return err
}

// peerClose answers the peer's close frame with one of the same code (if
// ours has not gone out yet) and returns the *closeError that ends reading.
func (c *wsConn) peerClose(payload []byte) error {
	ce := &closeError{Code: closeNoStatus}
	switch {
	case len(payload) == 1:
		return &streamError{closeProtocol, "close frame with a 1-byte payload"}
	case len(payload) >= 2:
		ce.Code = int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(ce.Code) {
			return &streamError{closeProtocol, fmt.Sprintf("close code %d is not allowed on the wire", ce.Code)}
		}
		if !utf8.Valid(payload[2:]) {
			return &streamError{closeProtocol, "close reason is not UTF-8"}
		}
		ce.Reason = string(payload[2:])
	}
	if err := c.writeClose(ce.Code, ""); err != nil {
		return fmt.Errorf("answering %w: %w", ce, err)
	}
	return ce
}

// validCloseCode says whether a peer may send code in a close frame
// (section 7.4): the registered codes that are not reserved for reports,
// and those for libraries and applications.
func validCloseCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code < 1000 || code > 1014:
		return false
	}
	return code != 1004 && code != closeNoStatus && code != 1006
}

// WriteText writes p as one text frame. The deadline of ctx, if it has
// one, bounds the write, and cancelling ctx cuts a write that is stuck (the
// connection is unusable after that, as the stream may end inside a frame).
func (c *wsConn) WriteText(ctx context.Context, p []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.nc.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	deadline, _ := ctx.Deadline()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return errCloseSent
	}
	return c.writeFrame(opText, p, deadline)
}

// writeControl writes a control frame, unless the close frame has gone out.
func (c *wsConn) writeControl(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	return c.writeFrame(op, payload, time.Now().Add(controlWriteTimeout))
}

// writeClose writes a close frame with code (none for closeNoStatus) and
// reason, unless one has gone out already: a connection sends one.
func (c *wsConn) writeClose(code int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	c.closeSent = true
	var buf [maxControlPayload]byte
	p := buf[:0]
	if code != closeNoStatus {
		p = binary.BigEndian.AppendUint16(p, uint16(code))
		p = append(p, truncateUTF8(reason, maxControlPayload-2)...)
	}
	return c.writeFrame(opClose, p, time.Now().Add(controlWriteTimeout))
}

// truncateUTF8 cuts s to at most n bytes without splitting a character: a
// close reason must be valid UTF-8 (RFC 6455 section 5.5.1).
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeFrame writes one frame with wmu held. The socket's write deadline
// moves only when deadline differs from the last one set: a publisher's
// frames share one context, and moving a deadline costs a timer update.
func (c *wsConn) writeFrame(op byte, p []byte, deadline time.Time) error {
	if c.werr != nil {
		return c.werr
	}
	if !deadline.Equal(c.wdeadline) {
		if err := c.nc.SetWriteDeadline(deadline); err != nil {
			return fmt.Errorf("websocket write: %w", err)
		}
		c.wdeadline = deadline
	}
	c.wbuf = appendClientFrame(c.wbuf[:0], op, p, rand.Uint32())
	if _, err := c.nc.Write(c.wbuf); err != nil {
		c.werr = fmt.Errorf("websocket write: %w", err)
		return c.werr
	}
	return nil
}

// appendClientFrame appends a final frame of opcode op carrying p, masked
// with key as every client frame must be (section 5.3).
func appendClientFrame(b []byte, op byte, p []byte, key uint32) []byte {
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = binary.LittleEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, p...)
	maskBytes(b[start:], key)
	return b
}

// maskBytes XORs p with key, whose little-endian bytes are the mask as
// sent, eight bytes at a time.
func maskBytes(p []byte, key uint32) {
	k8 := uint64(key) | uint64(key)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= byte(key >> (8 * (i % 4)))
	}
}

// Close ends the connection with the close handshake: it sends a close
// frame of code and reason (unless one has gone out), waits at most
// closeWait for the reading goroutine to get the peer's close frame or the
// end of the stream, and closes the socket.
func (c *wsConn) Close(code int, reason string) error {
	err := c.writeClose(code, reason)
	if err == nil {
		t := time.NewTimer(closeWait)
		select {
		case <-c.readDone:
		case <-t.C:
		}
		t.Stop()
	}
	if cerr := c.nc.Close(); err == nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

// CloseNow closes the socket without a close handshake.
func (c *wsConn) CloseNow() error {
	return c.nc.Close()
}
