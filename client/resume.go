package client

import (
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/wirechat/chat/protocol"
)

// maxHeld is how many live messages of one conversation the client holds
// behind a gap that it cannot fill; past it, it gives up on the gap and
// hands them on, as the server itself does (docs/protocol.md, reading 17).
const maxHeld = 4096

// repairPage is how many messages each history read of a repair asks for:
// the protocol's most.
const repairPage = protocol.MaxHistoryLimit

// tracker hands the caller each conversation's messages once and in seq
// order, across reconnects. For each conversation it follows, it knows
// the last seq handed on. A live message that is already known is
// dropped; the next one is handed on; one further on means a gap, and is
// held while the repairer of the current connection reads the missing ones
// from history (after last, page by page), then hands them on, then the
// held ones. After a reconnect, the welcome's Latest says which
// conversations moved while the client was away: each is repaired the same
// way. A new epoch means the store lost its data: every position is
// forgotten.
//
// The reader (live, event) and the repairer (page, giveUp) of the current
// connection share it; gen says which connection that is, so that a
// repairer of a connection that ended never hands anything on.
type tracker struct {
	out *updates // immutable

	mu      sync.Mutex
	started bool             // guarded by mu: a welcome came
	me      string           // guarded by mu: the user's identifier
	epoch   string           // guarded by mu
	gen     uint64           // guarded by mu: the current connection
	convs   map[string]*conv // guarded by mu: the conversations followed
	todo    []string         // guarded by mu: conversations whose repair is to start
}

// conv is one conversation followed.
type conv struct {
	last      uint64     // the last seq handed on
	repairing bool       // a gap after last is being filled from history
	held      []*Message // live messages after the gap, in seq order
}

func newTracker(out *updates) *tracker {
	return &tracker{out: out, convs: make(map[string]*conv)}
}

// welcome takes the welcome of connection gen: it sets every position
// (the first welcome, or a new epoch) or schedules the repair of every
// conversation that moved, and tells the caller (Connected) before any
// message that the repairs hand on. It reports whether repairs wait.
func (t *tracker) welcome(w *Welcome, gen uint64, url string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	con := &Connected{URL: url, Welcome: *w, Reconnect: t.started}
	t.gen, t.me, t.todo = gen, w.Identifier, t.todo[:0]
	if !t.started || w.Epoch != t.epoch {
		con.NewEpoch = t.started
		t.convs = make(map[string]*conv, len(w.Latest))
		for k, seq := range w.Latest {
			t.convs[k] = &conv{last: seq}
		}
		t.emptyChannelsLocked(w)
	} else {
		for k, seq := range w.Latest {
			cv := t.convs[k]
			switch {
			case cv == nil:
				t.convs[k] = &conv{last: seq}
				con.Unseen = append(con.Unseen, k)
			case seq > cv.last || cv.repairing:
				cv.repairing = true
				t.todo = append(t.todo, k)
			}
		}
		for k, cv := range t.convs {
			if _, ok := w.Latest[k]; ok {
				continue
			}
			switch {
			case isChannel(k) && !slices.Contains(w.Joined, k):
				t.dropLocked(k, cv) // left or destroyed while the client was away
			case cv.repairing:
				t.todo = append(t.todo, k)
			}
		}
		t.emptyChannelsLocked(w)
		slices.Sort(con.Unseen)
		slices.Sort(t.todo)
	}
	t.started, t.epoch = true, w.Epoch
	t.out.push(Update{Connected: con})
	return len(t.todo) > 0
}

// emptyChannelsLocked follows the joined channels that Latest leaves out
// because they have no message yet: from 0, so that their first message
// is 1. (A conversation left out may have messages: it is followed from
// its first live message.)
func (t *tracker) emptyChannelsLocked(w *Welcome) {
	for _, ch := range w.Joined {
		if _, ok := w.Latest[ch]; !ok && t.convs[ch] == nil {
			t.convs[ch] = &conv{}
		}
	}
}

func isChannel(target string) bool { return strings.HasPrefix(target, "#") }

// live takes a live message, and reports whether a repair must start.
func (t *tracker) live(m *Message) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := conversation(m, t.me)
	m.Conversation = k
	cv := t.convs[k]
	switch {
	case m.Seq == 0: // a server without history: nothing to order by
		t.out.push(Update{Message: m})
	case cv == nil: // followed from its first live message on
		t.convs[k] = &conv{last: m.Seq}
		t.out.push(Update{Message: m})
	case m.Seq <= cv.last: // handed on already
	case cv.repairing:
		t.holdLocked(k, cv, m)
	case m.Seq == cv.last+1:
		cv.last = m.Seq
		t.out.push(Update{Message: m})
	default: // a gap
		cv.repairing = true
		cv.held = append(cv.held[:0], m)
		t.todo = append(t.todo, k)
		return true
	}
	return false
}

// holdLocked keeps m behind the gap, in seq order and once; past maxHeld it
// gives up on the gap.
func (t *tracker) holdLocked(k string, cv *conv, m *Message) {
	i, found := slices.BinarySearchFunc(cv.held, m.Seq, func(h *Message, seq uint64) int { return cmpUint(h.Seq, seq) })
	if found {
		return
	}
	cv.held = slices.Insert(cv.held, i, m)
	if len(cv.held) > maxHeld {
		t.flushLocked(k, cv)
	}
}

// event hands on an event. One that ends the user's membership of a
// channel (its own left, the channel's destroy) ends the following of the
// channel, after the messages held for it.
func (t *tracker) event(ev *Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone string
	switch {
	case ev.Emitter == protocol.EmitterChannel && ev.Kind == protocol.EventDestroy:
		gone = ev.Identifier
	case ev.Kind == protocol.EventLeft && ev.Identifier == t.me:
		gone = ev.Target
	}
	if cv := t.convs[gone]; cv != nil {
		t.dropLocked(gone, cv)
	}
	t.out.push(Update{Event: ev})
}

// name fills in the conversation of messages read from history.
func (t *tracker) name(ms []Message) {
	t.mu.Lock()
	me := t.me
	t.mu.Unlock()
	for i := range ms {
		ms[i].Conversation = conversation(&ms[i], me)
	}
}

// nextRepair returns a conversation whose repair is to start on connection
// gen, if there is one.
func (t *tracker) nextRepair(gen uint64) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.gen == gen && len(t.todo) > 0 {
		k := t.todo[0]
		t.todo = t.todo[1:]
		if cv := t.convs[k]; cv != nil && cv.repairing {
			return k, true
		}
	}
	return "", false
}

// position returns where the repair of k on connection gen reads from, or
// false if that repair is over.
func (t *tracker) position(k string, gen uint64) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cv := t.convs[k]
	if t.gen != gen || cv == nil || !cv.repairing {
		return 0, false
	}
	return cv.last, true
}

// page takes a page of history of k read after seq `after` on connection
// gen, and reports whether the repair must read on.
func (t *tracker) page(k string, gen, after uint64, h *History) (more bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cv := t.convs[k]
	if t.gen != gen || cv == nil || !cv.repairing || cv.last != after {
		return false // a newer connection or an event took over
	}
	if h.First > cv.last+1 {
		t.gapLocked(k, cv.last+1, h.First-1)
		cv.last = h.First - 1
	}
	progress := false
	for i := range h.Messages {
		m := &h.Messages[i]
		if m.Seq <= cv.last {
			continue
		}
		if m.Seq > cv.last+1 {
			t.gapLocked(k, cv.last+1, m.Seq-1)
		}
		m.Conversation = k
		cv.last = m.Seq
		t.out.push(Update{Message: m})
		progress = true
	}
	if !progress {
		// Nothing newer is stored: what is held follows (a gap before it
		// would be messages that the store no longer has).
		t.flushLocked(k, cv)
		return false
	}
	if h.More {
		return true
	}
	i := 0
	for i < len(cv.held) && cv.held[i].Seq <= cv.last {
		i++
	}
	cv.held = cv.held[i:]
	if len(cv.held) > 0 && cv.held[0].Seq > cv.last+1 {
		return true // stored after this read: read on
	}
	t.flushLocked(k, cv)
	return false
}

// giveUp ends the repair of k on connection gen without filling its gap
// (history refused: the channel was left or destroyed meanwhile).
func (t *tracker) giveUp(k string, gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cv := t.convs[k]; t.gen == gen && cv != nil && cv.repairing {
		t.flushLocked(k, cv)
	}
}

// flushLocked ends a repair: it hands on the held messages, telling of
// any gap before each.
func (t *tracker) flushLocked(k string, cv *conv) {
	for _, m := range cv.held {
		if m.Seq <= cv.last {
			continue
		}
		if m.Seq > cv.last+1 {
			t.gapLocked(k, cv.last+1, m.Seq-1)
		}
		cv.last = m.Seq
		t.out.push(Update{Message: m})
	}
	cv.held, cv.repairing = nil, false
}

// dropLocked stops following k, after handing on what is held for it.
func (t *tracker) dropLocked(k string, cv *conv) {
	t.flushLocked(k, cv)
	delete(t.convs, k)
}

func (t *tracker) gapLocked(k string, from, to uint64) {
	t.out.push(Update{Gap: &Gap{Conversation: k, From: from, To: to}})
}

// repairLoop repairs, one at a time, the conversations that the welcome or
// the live path of cn found behind, until cn ends.
func (c *Client) repairLoop(cn *conn) {
	for {
		k, ok := c.track.nextRepair(cn.gen)
		if !ok {
			select {
			case <-cn.repairerWake:
				continue
			case <-cn.ctx.Done():
				return
			}
		}
		c.repair(cn, k)
	}
}

// repair reads k's history after the last seq handed on, page by page,
// until it has caught up with what the connection delivers live.
func (c *Client) repair(cn *conn, k string) {
	for {
		after, ok := c.track.position(k, cn.gen)
		if !ok {
			return
		}
		in, err := c.roundTrip(cn.ctx, historyRequest(k, HistoryQuery{After: &after, Limit: repairPage}), connBound, cn.gen)
		var refused *Error
		switch {
		case errors.As(err, &refused):
			c.log.Warn("history refused; giving up on a gap", "conversation", k, "after", after, "err", err)
			c.track.giveUp(k, cn.gen)
			return
		case err != nil: // the connection ended; the next welcome asks again
			return
		case in.History == nil:
			c.log.Warn("history answered without a page; giving up on a gap", "conversation", k, "type", in.Type)
			c.track.giveUp(k, cn.gen)
			return
		}
		if !c.track.page(k, cn.gen, after, in.History) {
			return
		}
	}
}
