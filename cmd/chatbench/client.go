package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/protocol"
)

// login signs username in with dev login on the node at base (an http(s)
// URL) and returns the session token and the user's identifier. It is the
// Go client's login: chatbench measures the websocket, not the login.
func login(ctx context.Context, hc *http.Client, base, username string) (token, identifier string, err error) {
	l, err := chatclient.DevLogin(ctx, hc, base, username)
	var refused *chatclient.StatusError
	if errors.As(err, &refused) {
		return "", "", fmt.Errorf("%w (is CHAT_DEV_LOGIN=true set on the server?)", err)
	}
	return l.Token, l.Identifier, err
}

// serverFrame is every field of a server frame that the slow path reads.
type serverFrame struct {
	Type     string            `json:"type"`
	ID       string            `json:"id"`
	Code     protocol.Code     `json:"code"`
	Message  string            `json:"message"`
	Username string            `json:"username"`
	Latest   map[string]uint64 `json:"latest"` // welcome (v2): each target's newest seq
}

// reply is the answer to a request that carried an id: nil for an ack.
type reply = *protocol.Error

// streamKey names a stream as a receiver sees it: a message's target and the
// source number in its text.
type streamKey struct {
	target string
	source uint32
}

// outStream is one stream a publisher sends during a phase.
type outStream struct {
	target  string
	source  uint32
	sender  *client
	sent    atomic.Uint64 // written by the publishing goroutine
	refused atomic.Uint64 // by the sender's read loop
}

// client is one virtual user with one websocket.
//
// The read loop (readLoop) owns the connection's reading side; requests are
// written by one goroutine at a time per client (setup, then the publisher).
type client struct {
	b     *bench
	idx   int
	name  string // username, immutable after login
	ident string // identifier, immutable after login
	token string
	node  string // base URL of the node it talks to

	conn    *wsConn
	done    chan struct{} // closed when the read loop ends
	welcome chan time.Time

	reqSeq   atomic.Uint64
	quitting atomic.Bool // set before the scenario closes the connection itself

	mu         sync.Mutex
	waiters    map[string]chan reply // guarded by mu
	streams    map[streamKey]*stream // guarded by mu
	lastTarget string                // guarded by mu; saves converting the target for every message

	out atomic.Pointer[[]*outStream] // streams this client publishes in the current phase

	latest map[string]uint64          // guarded by mu: the last welcome's latest (resume)
	pages  map[string]chan []byte     // guarded by mu: history requests waiting for their page
	seqs   atomic.Pointer[seqTracker] // resume: set while the client's seqs are checked

	delivered atomic.Uint64 // messages received (every kind of delivery)
	fresh     atomic.Uint64 // benchmark messages received for the first time
	lastFresh atomic.Int64  // when the last of them arrived, Unix nanoseconds
	events    atomic.Uint64 // events received
	acked     atomic.Uint64 // message requests acknowledged
	foreign   atomic.Uint64 // messages whose text is not a benchmark text

	wbuf []byte // owned by the goroutine that writes requests
}

// dial opens the client's websocket and starts its read loop; it returns
// once the welcome has arrived, with the time from dialling to the welcome.
func (c *client) dial(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	conn, err := dialWSFrom(ctx, c.node, c.token, c.b.source(c.idx))
	if err != nil {
		return 0, fmt.Errorf("dial %s as %s: %w", c.node, c.name, err)
	}
	c.conn = conn
	c.done = make(chan struct{})
	c.welcome = make(chan time.Time, 1)
	c.b.open.Add(1)
	go c.readLoop()
	select {
	case at := <-c.welcome:
		return at.Sub(start), nil
	case <-c.done:
		return 0, fmt.Errorf("%s: connection closed before the welcome", c.name)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// readLoop reads frames until the connection ends; bench.close ends it.
// Reads take no deadline: bench.close ends every read loop by closing its
// socket, and a deadline per read would cost a timer update per frame.
func (c *client) readLoop() {
	defer close(c.done)
	defer c.b.open.Add(-1)
	for {
		frame, err := c.conn.Read()
		if err != nil {
			if !c.b.closing.Load() && !c.quitting.Load() {
				c.b.noteDisconnect(err)
			}
			c.failWaiters()
			return
		}
		c.handle(frame)
	}
}

// handle processes one server frame.
func (c *client) handle(frame []byte) {
	if bytes.HasPrefix(frame, prefixHistory) {
		c.onHistory(frame) // before scanMessage: a page holds message frames
		return
	}
	kind, target, text := scanMessage(frame)
	switch kind {
	case kindEvent:
		c.events.Add(1)
		if h := c.b.onEvent; h != nil {
			h(c, frame)
		}
		return
	case kindMessage:
		if t := c.seqs.Load(); t != nil {
			c.onTrackedMessage(t, frame, target, text)
			return
		}
		c.onMessage(target, text, true)
		return
	}
	if h := c.b.onFrame; h != nil && h(c, frame) {
		return
	}
	var f serverFrame
	if err := json.Unmarshal(frame, &f); err != nil {
		c.b.noteError("bad_frame")
		return
	}
	switch f.Type {
	case protocol.TypeWelcome:
		c.mu.Lock()
		c.latest = f.Latest
		c.mu.Unlock()
		select {
		case c.welcome <- time.Now():
		default:
		}
	case protocol.TypeAck:
		if strings.HasPrefix(f.ID, "m") {
			c.acked.Add(1)
			return
		}
		c.answer(f.ID, nil)
	case protocol.TypeError:
		e := &protocol.Error{Type: f.Type, Code: f.Code, Message: f.Message, ID: f.ID}
		if strings.HasPrefix(f.ID, "m") {
			c.b.noteError(string(f.Code))
			c.refuse(f.ID)
			return
		}
		if f.ID == "" || !c.answer(f.ID, e) {
			c.b.noteError(string(f.Code))
		}
	default:
		c.b.noteError("unknown_frame")
	}
}

// onMessage counts one delivered message; the latency of a live one is
// recorded (one read back from history is late by design).
func (c *client) onMessage(target, text []byte, live bool) {
	now := time.Now().UnixNano()
	c.delivered.Add(1)
	source, seq, sentAt, ok := parseText(text)
	if !ok {
		c.foreign.Add(1)
		return
	}
	c.mu.Lock()
	if c.lastTarget != string(target) {
		c.lastTarget = string(target)
	}
	k := streamKey{c.lastTarget, source}
	s := c.streams[k]
	if s == nil {
		s = new(stream)
		c.streams[k] = s
	}
	d := s.add(seq)
	c.mu.Unlock()
	if d != duplicate {
		c.fresh.Add(1)
		c.lastFresh.Store(now)
		if !live {
			return
		}
		lat := time.Duration(now - sentAt)
		c.b.hist.Load().Record(lat)
		c.b.win.Load().Record(lat)
	}
}

// refuse counts a message request that the server answered with an error;
// its id is "m<stream index>.<seq>".
func (c *client) refuse(id string) {
	i, _, ok := strings.Cut(id[1:], ".")
	if !ok {
		return
	}
	n, err := strconv.Atoi(i)
	out := c.out.Load()
	if err != nil || out == nil || n < 0 || n >= len(*out) {
		return
	}
	(*out)[n].refused.Add(1)
}

// resetStreams forgets what the client received, at the start of a phase.
func (c *client) resetStreams() {
	c.mu.Lock()
	c.streams = make(map[streamKey]*stream)
	c.mu.Unlock()
}

// answer hands a reply to the request waiting for it.
func (c *client) answer(id string, r reply) bool {
	c.mu.Lock()
	ch, ok := c.waiters[id]
	delete(c.waiters, id)
	c.mu.Unlock()
	if ok {
		ch <- r
	}
	return ok
}

// failWaiters wakes every waiting request when the connection ends.
func (c *client) failWaiters() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, ch := range c.waiters {
		ch <- &protocol.Error{Code: "closed", Message: "connection closed"}
		delete(c.waiters, id)
	}
}

// await registers a waiter for the answer (ack, error or reply frame) to
// the request id; answer hands it over, or forgets it.
func (c *client) await(id string) chan reply {
	ch := make(chan reply, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiters == nil {
		c.waiters = make(map[string]chan reply)
	}
	c.waiters[id] = ch
	return ch
}

// errClosed reports a request on a connection that has ended.
var errClosed = errors.New("chatbench: connection closed")

// do sends a command and waits for its ack or error. A rate_limited answer
// is retried after a pause: set-up must not fail because it is quick.
func (c *client) do(ctx context.Context, action, target string) (*protocol.Error, error) {
	for attempt := 0; ; attempt++ {
		id := "s" + strconv.FormatUint(c.reqSeq.Add(1), 10)
		ch := c.await(id)
		req, _ := json.Marshal(protocol.Request{Type: protocol.TypeCommand, ID: id, Action: action, Target: target})
		if err := c.conn.WriteText(ctx, req); err != nil {
			c.answer(id, nil)
			return nil, fmt.Errorf("%s %s as %s: %w", action, target, c.name, err)
		}
		var r reply
		select {
		case r = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r != nil && r.Code == "closed" {
			return nil, fmt.Errorf("%s %s as %s: %w", action, target, c.name, errClosed)
		}
		if r != nil && r.Code == protocol.CodeRateLimited && attempt < 50 {
			select {
			case <-time.After(time.Duration(100+attempt*50) * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return r, nil
	}
}

// send writes one benchmark message of stream out[i] with sequence number
// seq, without waiting for its ack.
func (c *client) send(ctx context.Context, i int, s *outStream, seq uint64, size int) error {
	c.wbuf = appendMessageRequest(c.wbuf[:0], !c.b.cfg.NoIDs, i, s.target, s.source, seq, time.Now().UnixNano(), size)
	return c.conn.WriteText(ctx, c.wbuf)
}
