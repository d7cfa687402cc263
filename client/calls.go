package chatclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wirechat/chat/protocol"
)

// policy says what becomes of a request whose connection breaks before
// its answer came.
type policy int

const (
	// resend: written again on the next connection, with the same id.
	// For messages, because the server takes a repeated id for a retry and
	// answers it with the first one's ack and seq (spec section 5); for
	// join, history, members, typing and read, because doing them twice
	// is doing them once.
	resend policy = iota
	// once: create, destroy and leave. Their repetition would not be the
	// same answer (already_exists, not_member), so if one was written, the
	// caller learns ErrInterrupted; if not, it goes on the next connection.
	once
	// connBound: the client's own history reads for a resume, which
	// belong to the connection whose welcome asked for them; they fail
	// with it.
	connBound
)

// errConnLost fails a connBound call whose connection ended.
var errConnLost = errors.New("chatclient: connection lost")

// call is one request on its way: queued, written, or waiting for its
// answer.
type call struct {
	n      uint64 // its place in the order of requests; set once, under Client.mu
	id     string // immutable
	frame  []byte // immutable
	policy policy // immutable
	msg    bool   // immutable: a message, which is retried after unavailable
	bound  uint64 // immutable: the connection of a connBound call

	gen    uint64 // guarded by Client.mu: the connection it was written on, 0 if none yet
	resent bool   // guarded by Client.mu: written on a connection that broke

	done chan result // capacity 1: one result per time it is queued
}

// result ends one wait of a call: the answer frame, or why none will come.
type result struct {
	in  inbound
	err error
}

// roundTrip sends req with a fresh id and waits for its answer (an ack, or
// the history or members frame that stands for it). A refusal is an
// *Error. The wait ends with ctx, and then the request is forgotten: an
// answer that comes later is dropped.
func (c *Client) roundTrip(ctx context.Context, req protocol.Request, p policy, bound uint64) (inbound, error) {
	req.ID = c.ids.next()
	frame, err := json.Marshal(req)
	if err != nil {
		return inbound{}, fmt.Errorf("chatclient: encode %s: %w", req.Type, err)
	}
	if len(frame) > c.opts.MaxFrameBytes {
		return inbound{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(frame), c.opts.MaxFrameBytes)
	}
	k := &call{id: req.ID, frame: frame, policy: p, msg: req.Type == protocol.TypeMessage, bound: bound, done: make(chan result, 1)}
	var last *Error // the last refusal that was retried
	for attempt := 0; ; attempt++ {
		if err := c.enqueue(k); err != nil {
			return inbound{}, err
		}
		var r result
		select {
		case r = <-k.done:
		case <-ctx.Done():
			if c.abandon(k) {
				return inbound{}, waitErr(ctx, last)
			}
			r = <-k.done // the answer came meanwhile: it is sent at once
		}
		if r.err != nil {
			return inbound{}, r.err
		}
		e := r.in.Error
		if e == nil {
			return r.in, nil
		}
		if !c.retried(k, e) {
			return inbound{}, e
		}
		last = e
		c.log.Debug("request refused; trying again", "id", k.id, "code", e.Code)
		t := time.NewTimer(backoff(attempt, c.opts.MinBackoff, c.opts.MaxBackoff, jitter))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return inbound{}, waitErr(ctx, last)
		}
	}
}

// waitErr is the error of a wait that ctx ended: ctx's error and, if the
// server had refused the request meanwhile, that refusal, both for
// errors.Is.
func waitErr(ctx context.Context, last *Error) error {
	if last != nil {
		return fmt.Errorf("%w (the server's last answer: %w)", ctx.Err(), last)
	}
	return ctx.Err()
}

// retried reports whether a refusal is tried again with the same id rather
// than returned: a message or a resume's read after unavailable (it had no
// effect, or, for a message that timed out on the server's side, a retry
// gets the first one's answer); after rate_limited, a resume's read, and a
// message that was written on a connection that broke (the burst of
// resends after a reconnect must not turn into errors for messages that
// the caller sent at a reasonable pace).
func (c *Client) retried(k *call, e *Error) bool {
	c.mu.Lock()
	resent := k.resent
	c.mu.Unlock()
	switch {
	case k.policy == connBound:
		return e.Code == protocol.CodeUnavailable || e.Code == protocol.CodeRateLimited
	case k.msg:
		return e.Code == protocol.CodeUnavailable || e.Code == protocol.CodeRateLimited && resent
	}
	return false
}

// enqueue puts k in the queue of requests to write, in its place, and wakes
// the writer of the current connection, if there is one.
func (c *Client) enqueue(k *call) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return c.endedErrLocked()
	}
	if k.policy == connBound && (c.cur == nil || c.cur.gen != k.bound) {
		return errConnLost
	}
	if k.n == 0 {
		c.callN++
		k.n = c.callN
	}
	k.gen = 0
	c.calls[k.id] = k
	i, _ := slices.BinarySearchFunc(c.queue, k.n, func(q *call, n uint64) int { return cmpUint(q.n, n) })
	c.queue = slices.Insert(c.queue, i, k)
	if c.cur != nil {
		c.cur.wakeWriter()
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// abandon forgets k, if no answer came for it yet; it reports whether it
// did.
func (c *Client) abandon(k *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls[k.id] != k {
		return false
	}
	delete(c.calls, k.id)
	c.queue = slices.DeleteFunc(c.queue, func(q *call) bool { return q == k })
	return true
}

// take returns the next request to write on cn, marked as written there,
// or nil when there is none or cn is no longer the current connection.
func (c *Client) take(cn *conn) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != cn || len(c.queue) == 0 {
		return nil
	}
	k := c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	k.gen = cn.gen
	return k
}

// answer hands a frame with an id to the request waiting for it, and
// reports whether one was.
func (c *Client) answer(in inbound) bool {
	c.mu.Lock()
	k := c.calls[in.ID]
	delete(c.calls, in.ID)
	c.mu.Unlock()
	if k == nil {
		return false
	}
	k.done <- result{in: in}
	return true
}

// lost settles the requests of a connection that ended, by their policy:
// the ones to send again go back to the queue, in their first order.
func (c *Client) lost(cn *conn) {
	type failure struct {
		k   *call
		err error
	}
	var failed []failure
	c.mu.Lock()
	if c.cur == cn {
		c.cur = nil
	}
	queue := make([]*call, 0, len(c.calls))
	for id, k := range c.calls {
		switch {
		case k.policy == connBound:
			failed = append(failed, failure{k, errConnLost})
		case k.policy == once && k.gen != 0:
			failed = append(failed, failure{k, ErrInterrupted})
		default:
			if k.gen != 0 {
				k.resent = true
			}
			k.gen = 0
			queue = append(queue, k)
			continue
		}
		delete(c.calls, id)
	}
	slices.SortFunc(queue, func(a, b *call) int { return cmpUint(a.n, b.n) })
	c.queue = queue
	c.mu.Unlock()
	for _, f := range failed {
		f.k.done <- result{err: f.err}
	}
}
