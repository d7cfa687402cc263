package chatclient

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
// A conversation that the client starts following during a connection
// (a channel it joins, a first private message) has no position until
// its first live message. If the connection breaks before that, the
// welcome's Latest is too late a start: the messages of the absence would
// be lost. So such a conversation gets a tentative position, a floor: the
// seq before the user's own message, from the message's ack; or, after the
// user's own join event, the channel's newest seq, read from history (a
// probe). A reconnect resumes after the floor. The first live message is
// taken whatever its seq (nothing was handed on yet), and a gap after the
// floor is repaired as any gap is.
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
	todo    []string         // guarded by mu: conversations whose repair or probe is to start
}

// conv is one conversation followed.
type conv struct {
	last uint64 // the last seq handed on; while tentative, the floor
	// tentative: nothing was handed on yet, and last is a floor (see
	// tracker).
	tentative bool
	probe     bool       // tentative, and the floor is still to be read from history
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
			case cv == nil || cv.probe: // no floor: follow from Latest
				t.convs[k] = &conv{last: seq}
				con.Unseen = append(con.Unseen, k)
			case seq > cv.last || cv.repairing:
				cv.tentative, cv.repairing = false, true
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
			case cv.probe:
				delete(t.convs, k) // still no message
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

// live takes a live message, and reports whether the repairer has work.
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
	case cv.tentative && (m.Seq <= cv.last+1 || cv.probe):
		// The first message handed on: from here on, whatever the floor.
		*cv = conv{last: m.Seq}
		t.out.push(Update{Message: m})
	case m.Seq <= cv.last: // handed on already
	case cv.repairing:
		t.holdLocked(k, cv, m)
	case m.Seq == cv.last+1:
		cv.last = m.Seq
		t.out.push(Update{Message: m})
	default: // a gap (after a floor too)
		cv.tentative = false
		cv.repairing = true
		cv.held = append(cv.held[:0], m)
		t.todo = append(t.todo, k)
		return true
	}
	return false
}

// sent takes the ack of the user's own message to target: if the
// conversation has no position yet, the seq before is its floor.
func (t *tracker) sent(target string, seq uint64) {
	k, ok := conversationOf(target)
	if !ok || seq == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch cv := t.convs[k]; {
	case cv == nil:
		t.convs[k] = &conv{last: seq - 1, tentative: true}
	case cv.tentative && (cv.probe || seq-1 < cv.last):
		cv.last, cv.probe = seq-1, false
	}
}

// conversationOf names the conversation of a request's target as the
// server does: lower case.
func conversationOf(target string) (string, bool) {
	if ch, ok := protocol.NormalizeChannel(target); ok {
		return ch, true
	}
	if name, ok := strings.CutPrefix(target, "@"); ok {
		if name, ok := protocol.NormalizeUsername(name); ok {
			return "@" + name, true
		}
	}
	return "", false
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

// event hands on an event, and reports whether the repairer has work.
// One that ends the user's membership of a channel (its own left, the
// channel's destroy) ends the following of the channel, after the messages
// held for it. The user's own join of a channel not followed asks for a
// probe of its floor.
func (t *tracker) event(ev *Event) (probe bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone string
	switch {
	case ev.Emitter == protocol.EmitterChannel && ev.Kind == protocol.EventDestroy:
		gone = ev.Identifier
	case ev.Kind == protocol.EventLeft && ev.Identifier == t.me:
		gone = ev.Target
	case ev.Kind == protocol.EventJoin && ev.Identifier == t.me && t.convs[ev.Target] == nil:
		t.convs[ev.Target] = &conv{tentative: true, probe: true}
		t.todo = append(t.todo, ev.Target)
		probe = true
	}
	if cv := t.convs[gone]; cv != nil {
		t.dropLocked(gone, cv)
	}
	t.out.push(Update{Event: ev})
	return probe
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

// job is what the repairer is to do for a conversation.
type job int

const (
	noJob  job = iota
	repair     // fill a gap
	probe      // read the floor
)

// nextJob returns a conversation with work for the repairer of connection
// gen, if there is one.
func (t *tracker) nextJob(gen uint64) (string, job) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.gen == gen && len(t.todo) > 0 {
		k := t.todo[0]
		t.todo = t.todo[1:]
		switch cv := t.convs[k]; {
		case cv == nil:
		case cv.probe:
			return k, probe
		case cv.repairing:
			return k, repair
		}
	}
	return "", noJob
}

// floor takes the answer of a probe of k on connection gen: the newest
// seq stored when the user had joined.
func (t *tracker) floor(k string, gen uint64, h *History) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cv := t.convs[k]
	if t.gen != gen || cv == nil || !cv.probe {
		return // a live message or the user's own came first
	}
	cv.last, cv.probe = h.First-1, false
	if n := len(h.Messages); n > 0 {
		cv.last = h.Messages[n-1].Seq
	}
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

// repairLoop does, one at a time, the repairs and probes that the welcome,
// the live path and the events of cn asked for, until cn ends.
func (c *Client) repairLoop(cn *conn) {
	for {
		switch k, j := c.track.nextJob(cn.gen); j {
		case repair:
			c.repair(cn, k)
		case probe:
			c.probe(cn, k)
		default:
			select {
			case <-cn.repairerWake:
			case <-cn.ctx.Done():
				return
			}
		}
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
		h, err := c.readHistory(cn, k, HistoryQuery{After: &after, Limit: repairPage})
		if err != nil {
			var refused *Error
			if errors.As(err, &refused) {
				c.log.Warn("history refused; giving up on a gap", "conversation", k, "after", after, "err", err)
				c.track.giveUp(k, cn.gen)
			}
			return // else the connection ended; the next welcome asks again
		}
		if !c.track.page(k, cn.gen, after, h) {
			return
		}
	}
}

// probe reads the newest seq of a channel that the user just joined.
func (c *Client) probe(cn *conn, k string) {
	h, err := c.readHistory(cn, k, HistoryQuery{Limit: 1})
	if err != nil {
		c.log.Debug("probe failed", "conversation", k, "err", err)
		return // the next live message or welcome sets the position
	}
	c.track.floor(k, cn.gen, h)
}

// readHistory is a history request of the repairer: bound to cn, tried
// again while the server is busy.
func (c *Client) readHistory(cn *conn, k string, q HistoryQuery) (*History, error) {
	in, err := c.roundTrip(cn.ctx, historyRequest(k, q), connBound, cn.gen)
	if err != nil {
		return nil, err
	}
	if in.History == nil {
		return nil, &Error{Code: protocol.CodeInternal, Message: "history answered with a " + in.Type + " frame"}
	}
	return in.History, nil
}
