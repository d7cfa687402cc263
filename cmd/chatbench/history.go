package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wirechat/chat/protocol"
)

// The history scenario: fill one channel with Messages messages, then
// Clients readers page through it with history requests (before, Limit per
// page) for Duration, each from the newest message down to the oldest and
// again from the top, checking every page.

// HistoryResult is the history scenario's outcome.
type HistoryResult struct {
	Filled      uint64        `json:"filled"`       // messages the fillers got acked
	Fillers     int           `json:"fillers"`      // users that filled the channel
	FillTime    time.Duration `json:"fill_ns"`      // time to fill it
	Newest      uint64        `json:"newest"`       // the channel's newest seq after the fill
	First       uint64        `json:"first"`        // its oldest stored seq
	Readers     int           `json:"readers"`      // clients paging
	Limit       int           `json:"limit"`        // messages asked per page
	Duration    time.Duration `json:"duration_ns"`  // paging time
	Requests    uint64        `json:"requests"`     // history requests answered with a page
	Read        uint64        `json:"read"`         // messages in those pages
	Passes      uint64        `json:"passes"`       // readers that paged all the way down to the oldest message
	RateLimited uint64        `json:"rate_limited"` // requests refused with rate_limited (retried)
	Faults      uint64        `json:"faults"`       // pages that were not gapless, in order and where they belong
	FirstFault  string        `json:"first_fault,omitempty"`
	ReqRate     float64       `json:"requests_per_s"`
	MsgRate     float64       `json:"messages_per_s"`
	Latency     Latency       `json:"latency"` // of one history request, from write to page
}

// requestTimeout bounds the wait for the answer to one request: a server
// that never answers fails the run instead of stalling it until -timeout.
const requestTimeout = 10 * time.Second

// maxFillers bounds the users that fill the channel: each of them is a
// member and receives every message of the fill.
const maxFillers = 50

// fillersFor is how many users fill n messages: the configured number of
// publishers, or enough to do it in about ten seconds under the rate
// limit. Every filler is a member and receives the whole fill, and more
// of them were slower when the rate limit allows one: with more traffic
// each filler's connection has its writes batched (CHAT_WRITE_DELAY),
// acks included.
func fillersFor(cfg Config, n int) int {
	if cfg.Publishers > 0 {
		return cfg.Publishers
	}
	per := cfg.RateLimit * rateHeadroom * 10
	return max(1, min(maxFillers, int(math.Ceil(float64(n)/per))))
}

func (b *bench) history(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	channel := "#" + cfg.Prefix + "-h"
	fillers := b.newClients("f", fillersFor(cfg, cfg.Messages))
	readers := b.newClients("h", cfg.Clients)
	all := append(fillers[:len(fillers):len(fillers)], readers...)
	if err := b.loginAll(ctx, all); err != nil {
		return nil, err
	}
	if err := b.connectAll(ctx, all, nil); err != nil {
		return nil, err
	}
	if err := b.createChannels(ctx, []string{channel}, all); err != nil {
		return nil, err
	}
	in := func(*client) []string { return []string{channel} }
	if err := b.joinAll(ctx, fillers, in); err != nil {
		return nil, err
	}
	hr := &HistoryResult{Fillers: len(fillers), Readers: len(readers), Limit: cfg.Limit}
	res := &Result{History: hr}

	b.setStage("fill")
	start := time.Now()
	filled, err := b.fill(ctx, fillers, channel, cfg.Messages)
	hr.Filled, hr.FillTime = filled, time.Since(start)
	if err != nil {
		return res, err
	}
	// The readers join after the fill: they page, they get no live traffic.
	if err := b.joinAll(ctx, readers, in); err != nil {
		return res, err
	}
	b.settle(ctx, all, 500*time.Millisecond, 10*time.Second)
	top, err := readers[0].historyPage(ctx, channel, 0, 0, 1)
	if err != nil {
		return res, err
	}
	hr.Newest, hr.First = top.newest(), top.First
	if hr.Newest < filled {
		return res, fmt.Errorf("history: the channel's newest seq is %d after %d messages were acked", hr.Newest, filled)
	}

	b.setStage("page")
	hist := new(Histogram)
	b.hist.Store(hist)
	var faults faultLog
	var requests, read, passes, limited atomic.Uint64
	start = time.Now()
	end := start.Add(cfg.Duration)
	err = parallel(ctx, len(readers), len(readers), func(ctx context.Context, i int) error {
		c := readers[i]
		interval := time.Duration(float64(time.Second) / (cfg.RateLimit * rateHeadroom))
		// Spread the readers' first requests over one interval.
		next := start.Add(interval * time.Duration(i) / time.Duration(len(readers)))
		var before uint64 // 0: the newest page
		for {
			if d := time.Until(next); d > 0 {
				if err := sleep(ctx, d); err != nil {
					return err
				}
			}
			now := time.Now()
			if !now.Before(end) {
				return nil
			}
			next = now.Add(interval)
			p, err := c.historyPage(ctx, channel, before, 0, cfg.Limit)
			lat := time.Since(now)
			if refused := refusedCode(err); refused == protocol.CodeRateLimited {
				limited.Add(1)
				b.noteError(string(refused))
				next = time.Now().Add(100 * time.Millisecond)
				continue
			}
			if err != nil {
				return err
			}
			hist.Record(lat)
			b.win.Load().Record(lat)
			requests.Add(1)
			read.Add(uint64(len(p.Msgs)))
			c.delivered.Add(uint64(len(p.Msgs))) // for the progress line
			if f := pageFault(p, channel, before, cfg.Limit, hr.Newest); f != "" {
				faults.add(fmt.Sprintf("%s, page before %d: %s", c.name, before, f))
			}
			if !p.More || len(p.Msgs) == 0 {
				before = 0
				passes.Add(1)
			} else {
				before = p.Msgs[0].Seq
			}
		}
	})
	hr.Duration = time.Since(start)
	hr.Requests, hr.Read, hr.Passes, hr.RateLimited = requests.Load(), read.Load(), passes.Load(), limited.Load()
	hr.Faults, hr.FirstFault = faults.get()
	hr.ReqRate = round1(float64(hr.Requests) / hr.Duration.Seconds())
	hr.MsgRate = round1(float64(hr.Read) / hr.Duration.Seconds())
	hr.Latency = hist.Summary()
	if err == nil && hr.Faults > 0 {
		err = fmt.Errorf("%d history pages were not gapless and in order, the first: %s", hr.Faults, hr.FirstFault)
	}
	return res, err
}

// faultLog counts faults and keeps the first one's description.
type faultLog struct {
	mu    sync.Mutex
	n     uint64
	first string
}

func (f *faultLog) add(s string) {
	f.mu.Lock()
	if f.n == 0 {
		f.first = s
	}
	f.n++
	f.mu.Unlock()
}

func (f *faultLog) get() (uint64, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, f.first
}

// fillWindow is how many messages each filler has in flight. One: the
// server batches the writes of a connection that has more queued
// (CHAT_WRITE_DELAY, 20 ms), acks included, so that 16 in flight filled
// 10,000 messages in 13 s where one at a time took 1.4 s.
const fillWindow = 1

// fill sends n messages to channel, spread over the fillers, each paced
// under the rate limit with at most fillWindow messages waiting for their
// ack; it returns how many were acked.
func (b *bench) fill(ctx context.Context, fillers []*client, channel string, n int) (uint64, error) {
	var acked atomic.Uint64
	interval := time.Duration(float64(time.Second) / (b.cfg.RateLimit * rateHeadroom))
	start := time.Now()
	taken := make([]atomic.Uint64, len(fillers)) // message numbers taken, per filler
	workers := len(fillers) * fillWindow
	err := parallel(ctx, workers, workers, func(ctx context.Context, w int) error {
		i := w % len(fillers)
		c := fillers[i]
		share := uint64(n / len(fillers))
		if i < n%len(fillers) {
			share++
		}
		source := uint32(i + 1)
		var buf []byte
		for {
			k := taken[i].Add(1) // the k-th message of filler i, due at start+(k-1)*interval
			if k > share {
				return nil
			}
			due := start.Add(interval * time.Duration(k-1))
			for attempt := 0; ; attempt++ {
				if err := sleep(ctx, time.Until(due)); err != nil {
					return err
				}
				id := "f" + strconv.FormatUint(c.reqSeq.Add(1), 10)
				buf = appendFillRequest(buf[:0], id, channel, source, k, b.cfg.Size)
				r, err := c.call(ctx, id, buf)
				if err != nil {
					return fmt.Errorf("fill as %s: %w", c.name, err)
				}
				if r != nil && r.Code == protocol.CodeRateLimited && attempt < 50 {
					b.noteError(string(r.Code))
					due = time.Now().Add(100 * time.Millisecond) // no effect: send it again
					continue
				}
				if r != nil {
					return fmt.Errorf("fill as %s: %s: %s", c.name, r.Code, r.Message)
				}
				break
			}
			acked.Add(1)
			b.sent.Add(1)
		}
	})
	return acked.Load(), err
}

// appendFillRequest appends a message request with id that carries a
// benchmark text.
func appendFillRequest(b []byte, id, target string, source uint32, seq uint64, size int) []byte {
	b = append(b, `{"type":"message","id":"`...)
	b = append(b, id...)
	b = append(b, `","target":"`...)
	b = append(b, target...)
	b = append(b, `","message":"`...)
	b = appendText(b, source, seq, time.Now().UnixNano(), size)
	return append(b, `"}`...)
}

// call writes req, whose id is id (not starting with "m"), and waits for
// its ack (nil) or error, at most requestTimeout.
func (c *client) call(ctx context.Context, id string, req []byte) (reply, error) {
	ch := c.await(id)
	defer c.answer(id, nil) // forget the waiter if no answer came
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := c.conn.WriteText(ctx, req); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if r != nil && r.Code == "closed" {
			return nil, errClosed
		}
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("request %s: no answer: %w", id, ctx.Err())
	}
}

// historyPage asks for one page of target's history, at most limit
// messages: with before > 0 the newest ones below it, else with after > 0
// the oldest ones above it, else the newest. A refusal comes back as a
// *refusal.
func (c *client) historyPage(ctx context.Context, target string, before, after uint64, limit int) (*histPage, error) {
	return c.historyRequest(ctx, target, before, after, after > 0, limit)
}

// historyRequest is historyPage that sends "after" whenever fromAfter is
// set (and before is 0), also "after":0.
func (c *client) historyRequest(ctx context.Context, target string, before, after uint64, fromAfter bool, limit int) (*histPage, error) {
	id := "h" + strconv.FormatUint(c.reqSeq.Add(1), 10)
	req := protocol.Request{Type: protocol.TypeCommand, ID: id, Action: protocol.ActionHistory, Target: target, Limit: &limit}
	switch {
	case before > 0:
		req.Before = &before
	case fromAfter:
		req.After = &after
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	pc := make(chan []byte, 1)
	ec := make(chan reply, 1)
	c.mu.Lock()
	if c.waiters == nil {
		c.waiters = make(map[string]chan reply)
	}
	if c.pages == nil {
		c.pages = make(map[string]chan []byte)
	}
	c.waiters[id], c.pages[id] = ec, pc
	done := c.done
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, id)
		delete(c.pages, id)
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := c.conn.WriteText(ctx, data); err != nil {
		return nil, fmt.Errorf("history %s as %s: %w", target, c.name, err)
	}
	select {
	case frame := <-pc:
		p, err := parsePage(frame)
		if err != nil {
			c.b.noteError("bad_history")
			return nil, fmt.Errorf("history %s as %s: %w", target, c.name, err)
		}
		return p, nil
	case r := <-ec:
		if r == nil || r.Code == "closed" {
			return nil, fmt.Errorf("history %s as %s: %w", target, c.name, errClosed)
		}
		return nil, &refusal{r}
	case <-done:
		return nil, fmt.Errorf("history %s as %s: %w", target, c.name, errClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("history %s as %s: no page: %w", target, c.name, ctx.Err())
	}
}

// refusal is an error answer to a request.
type refusal struct{ e *protocol.Error }

func (r *refusal) Error() string { return string(r.e.Code) + ": " + r.e.Message }

// refusedCode is the error code of a refusal, "" for any other error.
func refusedCode(err error) protocol.Code {
	var r *refusal
	if errors.As(err, &r) {
		return r.e.Code
	}
	return ""
}

// onHistory hands a history frame, copied (the read buffer is reused), to
// the request waiting for it.
func (c *client) onHistory(frame []byte) {
	id := stringAfter(frame[:max(0, bytes.Index(frame, keyMessages))], keyID)
	c.mu.Lock()
	ch, ok := c.pages[string(id)]
	delete(c.pages, string(id))
	c.mu.Unlock()
	if !ok {
		c.b.noteError("unexpected_history")
		return
	}
	ch <- bytes.Clone(frame)
}

var (
	prefixHistory = []byte(`{"type":"history",`)
	keyMessages   = []byte(`"messages":[`)
	keyID         = []byte(`"id":"`)
	keySeq        = []byte(`"seq":`)
)

// histPage is a history frame, its messages read the way live ones are.
type histPage struct {
	ID     string `json:"id"`
	Target string `json:"target"`
	First  uint64 `json:"first"`
	More   bool   `json:"more"`
	Msgs   []histMsg
}

// histMsg is one message of a page; Target and Text point into the frame.
type histMsg struct {
	Seq          uint64
	Target, Text []byte
}

// newest is the newest seq of a page asked without before or after: its
// last message's, or First-1 when nothing is stored.
func (p *histPage) newest() uint64 {
	if len(p.Msgs) == 0 {
		return max(p.First, 1) - 1
	}
	return p.Msgs[len(p.Msgs)-1].Seq
}

// parsePage reads a history frame. The server writes its fields in the
// order type, id, target, first, messages, more and the messages as they
// were delivered, so the page is split without decoding the messages: the
// header and trailer are decoded on their own, each message is scanned as
// a live one is. Any other shape is decoded the slow way.
func parsePage(frame []byte) (*histPage, error) {
	if p, ok := scanPage(frame); ok {
		return p, nil
	}
	var h protocol.History
	if err := json.Unmarshal(frame, &h); err != nil {
		return nil, fmt.Errorf("bad history frame: %w", err)
	}
	p := &histPage{ID: h.ID, Target: h.Target, First: h.First, More: h.More}
	for _, raw := range h.Messages {
		var m protocol.Message
		if err := json.Unmarshal(raw, &m); err != nil || m.Type != protocol.TypeMessage {
			return nil, fmt.Errorf("bad message in history frame: %.100s", raw)
		}
		p.Msgs = append(p.Msgs, histMsg{Seq: m.Seq, Target: []byte(m.Target), Text: []byte(m.Message)})
	}
	return p, nil
}

// scanPage is parsePage's fast path; ok is false when the frame is not
// shaped as expected.
func scanPage(frame []byte) (*histPage, bool) {
	i := bytes.Index(frame, keyMessages)
	if i < 1 || frame[i-1] != ',' {
		return nil, false
	}
	p := new(histPage)
	head := append(bytes.Clone(frame[:i-1]), '}')
	if json.Unmarshal(head, p) != nil {
		return nil, false
	}
	elems, rest, ok := splitArray(frame[i+len(keyMessages)-1:])
	if !ok || len(rest) < 2 || rest[0] != ',' {
		return nil, false
	}
	var tail struct {
		More *bool `json:"more"`
	}
	if json.Unmarshal(append([]byte{'{'}, rest[1:]...), &tail) != nil || tail.More == nil {
		return nil, false
	}
	p.More = *tail.More
	p.Msgs = make([]histMsg, 0, len(elems))
	for _, e := range elems {
		kind, target, text := scanMessage(e)
		seq := seqOf(e)
		if kind != kindMessage || !bytes.HasPrefix(e, prefixMessage) || seq == 0 ||
			bytes.IndexByte(text, '\\') >= 0 {
			return nil, false // escapes in the text: let encoding/json read it
		}
		p.Msgs = append(p.Msgs, histMsg{Seq: seq, Target: target, Text: text})
	}
	return p, true
}

// splitArray splits a JSON array of objects at its start into its
// elements, minding strings, and returns what follows the array.
func splitArray(b []byte) (elems [][]byte, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '[' {
		return nil, nil, false
	}
	depth, start := 0, -1
	inString, escaped := false, false
	for i := 1; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth == 0 {
				start = i
			}
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				if c != ']' {
					return nil, nil, false
				}
				return elems, b[i+1:], true
			}
			depth--
			if depth == 0 {
				elems = append(elems, b[start:i+1])
			}
		}
	}
	return nil, nil, false
}

// seqOf reads the seq of a message frame: its last member, "seq":N.
func seqOf(frame []byte) uint64 {
	i := bytes.LastIndex(frame, keySeq)
	if i < 0 {
		return 0
	}
	var n uint64
	digits := 0
	for _, c := range frame[i+len(keySeq):] {
		if c < '0' || c > '9' || digits == 20 {
			break
		}
		n = n*10 + uint64(c-'0')
		digits++
	}
	return n
}

// pageFault says what is wrong with a page of channel asked with before
// (0: the newest page) and limit, when nothing is being published and the
// channel's newest seq is newest; "" when nothing is. A right page holds
// consecutive seqs, in increasing order, of its channel; it ends right
// below before (or at the newest); it is full when more is set and starts
// at first when not.
func pageFault(p *histPage, channel string, before uint64, limit int, newest uint64) string {
	if p.Target != channel {
		return fmt.Sprintf("target %q, want %q", p.Target, channel)
	}
	for i, m := range p.Msgs {
		if string(m.Target) != channel {
			return fmt.Sprintf("message %d has target %q", m.Seq, m.Target)
		}
		if i > 0 && m.Seq != p.Msgs[i-1].Seq+1 {
			return fmt.Sprintf("seq %d follows %d", m.Seq, p.Msgs[i-1].Seq)
		}
	}
	top := newest
	if before > 0 {
		top = min(before-1, newest)
	}
	n := len(p.Msgs)
	switch {
	case n > limit:
		return fmt.Sprintf("%d messages, asked for %d", n, limit)
	case top < p.First || top == 0:
		if n != 0 || p.More {
			return fmt.Sprintf("%d messages and more=%v below %d, where nothing is stored (first %d)", n, p.More, top+1, p.First)
		}
		return ""
	case n == 0:
		return fmt.Sprintf("empty, want messages up to %d (first %d)", top, p.First)
	case p.Msgs[n-1].Seq != top:
		return fmt.Sprintf("ends at %d, want %d", p.Msgs[n-1].Seq, top)
	case p.More && n != limit:
		return fmt.Sprintf("%d messages with more=true, want %d", n, limit)
	case p.More && p.Msgs[0].Seq <= p.First:
		return fmt.Sprintf("more=true, but it starts at %d and first is %d", p.Msgs[0].Seq, p.First)
	case !p.More && p.Msgs[0].Seq != p.First:
		return fmt.Sprintf("more=false, but it starts at %d and first is %d", p.Msgs[0].Seq, p.First)
	}
	return ""
}

// checkHistory rejects settings the history and resume scenarios cannot
// run with.
func (cfg *Config) checkHistory() error {
	if cfg.Scenario == "history" && cfg.Limit == 0 {
		cfg.Limit = 100 // -limit is shared with members, whose default is 1000
	}
	switch {
	case cfg.Scenario == "history" && cfg.Messages < 1:
		return errors.New("-messages must be at least 1")
	case cfg.Scenario == "history" && (cfg.Limit < 1 || cfg.Limit > protocol.MaxHistoryLimit):
		return fmt.Errorf("-limit must be 1 to %d", protocol.MaxHistoryLimit)
	case cfg.Scenario == "resume" && (cfg.Drop <= 0 || cfg.Drop > 1):
		return errors.New("-drop must be more than 0 and at most 1")
	case cfg.Scenario == "resume" && cfg.Outage <= 0:
		return errors.New("-outage must be positive")
	}
	return nil
}

// historyParams adds the history and resume settings to the report's.
func (cfg Config) historyParams(p map[string]any) {
	p["duration"] = cfg.Duration.String()
	p["rate_limit"] = cfg.RateLimit
	p["size"] = cfg.Size
	p["publishers"] = cfg.Publishers
	if cfg.Publishers == 0 {
		p["publishers"] = "auto"
	}
	if cfg.Scenario == "history" {
		p["messages"] = cfg.Messages
		p["limit"] = cfg.Limit
		return
	}
	p["channels"] = cfg.Channels
	p["rate"] = cfg.Rate
	p["grace"] = cfg.Grace.String()
	p["no_ids"] = cfg.NoIDs
	p["drop"] = cfg.Drop
	p["outage"] = cfg.Outage.String()
}

func historyRows(row func(string, any), h *HistoryResult) {
	row("fill", fmt.Sprintf("%d messages by %d users in %v (newest seq %d, oldest stored %d)",
		h.Filled, h.Fillers, h.FillTime.Round(time.Millisecond), h.Newest, h.First))
	row("readers", fmt.Sprintf("%d, %d messages a page, for %v", h.Readers, h.Limit, h.Duration.Round(time.Millisecond)))
	row("requests", fmt.Sprintf("%d (%.1f/s)", h.Requests, h.ReqRate))
	row("messages read", fmt.Sprintf("%d (%.1f/s)", h.Read, h.MsgRate))
	row("full passes", h.Passes)
	row("rate limited", h.RateLimited)
	row("BAD PAGES", h.Faults)
	if h.FirstFault != "" {
		row("  first", h.FirstFault)
	}
	latencyRows(row, "request latency", h.Latency)
}
