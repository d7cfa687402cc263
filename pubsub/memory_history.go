package pubsub

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// memLog is one log of the in-memory history.
type memLog struct {
	seq     uint64     // the last seq given; survives a destroy
	entries []memEntry // stored messages, oldest first, seqs consecutive
}

type memEntry struct {
	seq   uint64
	frame []byte
	at    time.Time
}

// memConv is a user's conversation with a peer: at orders them by
// recency.
type memConv struct {
	peer Peer
	at   uint64
}

type idemKey struct{ from, log, id string }

type idemMark struct {
	key   idemKey
	until time.Time
}

// PublishMessage implements Registry. The check, the storing and the
// deliveries happen while deliveries are held, so nothing comes between.
func (m *Memory) PublishMessage(ctx context.Context, channel string, msg Message) (Stored, error) {
	return m.publishStored(channel, msg, func() error {
		if err := m.checkMemberLocked(channel, msg.From); err != nil {
			return fmt.Errorf("publish to %s: %w", channel, err)
		}
		return nil
	})
}

// PublishDirect implements Registry.
func (m *Memory) PublishDirect(ctx context.Context, from, to Peer, msg Message) (Stored, error) {
	return m.publishStored(Conversation(from.ID, to.ID), msg, func() error {
		m.activity++
		m.userLocked(from.ID).convs[to.ID] = memConv{peer: to, at: m.activity}
		m.userLocked(to.ID).convs[from.ID] = memConv{peer: from, at: m.activity}
		return nil
	})
}

// publishStored stores msg in log unless check fails or its id was seen,
// then delivers it. check runs under mu, after the id's check.
func (m *Memory) publishStored(log string, msg Message, check func() error) (Stored, error) {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Stored{}, ErrClosed
	}
	now := m.now()
	m.forgetIDsLocked(now)
	key := idemKey{msg.From, log, msg.ID}
	if seq, ok := m.idem[key]; ok && msg.ID != "" {
		m.mu.Unlock()
		return Stored{Seq: seq, Duplicate: true}, nil
	}
	if err := check(); err != nil {
		m.mu.Unlock()
		return Stored{}, err
	}
	l := m.logLocked(log)
	l.seq++
	frame := msg.frame(l.seq)
	l.entries = append(l.entries, memEntry{seq: l.seq, frame: frame, at: now})
	if over := len(l.entries) - m.history.Limit; over > 0 {
		l.drop(over)
	}
	if msg.ID != "" {
		m.idem[key] = l.seq
		m.idemQ = append(m.idemQ, idemMark{key, now.Add(IdempotencyWindow)})
	}
	seq := l.seq
	var to []string
	for _, t := range msg.Topics {
		if _, ok := m.subs[t]; ok {
			to = append(to, t)
		}
	}
	m.mu.Unlock()
	if len(to) > 0 {
		payload := msg.payload(seq, frame)
		for _, t := range to {
			m.handler(t, payload)
		}
	}
	return Stored{Seq: seq}, nil
}

func (m *Memory) forgetIDsLocked(now time.Time) {
	n := 0
	for n < len(m.idemQ) && !m.idemQ[n].until.After(now) {
		delete(m.idem, m.idemQ[n].key)
		n++
	}
	m.idemQ = m.idemQ[n:]
}

func (m *Memory) logLocked(log string) *memLog {
	l := m.logs[log]
	if l == nil {
		l = &memLog{}
		m.logs[log] = l
	}
	return l
}

// liveLocked returns the entries of log that the TTL has not expired.
func (m *Memory) liveLocked(log string) (l *memLog, live []memEntry) {
	l = m.logs[log]
	if l == nil {
		return nil, nil
	}
	if ttl := m.history.TTL; ttl > 0 {
		oldest := m.now().Add(-ttl)
		i, _ := slices.BinarySearchFunc(l.entries, oldest, func(e memEntry, t time.Time) int { return e.at.Compare(t) })
		for i < len(l.entries) && !l.entries[i].at.After(oldest) {
			i++
		}
		l.drop(i)
	}
	return l, l.entries
}

// drop forgets the n oldest entries. The array behind them is reused
// until an append moves the rest: trimming costs nothing per message.
func (l *memLog) drop(n int) {
	clear(l.entries[:n]) // let their frames go
	l.entries = l.entries[n:]
}

// Range implements History.
func (m *Memory) Range(ctx context.Context, log string, q Query) (Page, error) {
	if err := q.check(); err != nil {
		return Page{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Page{}, ErrClosed
	}
	l, live := m.liveLocked(log)
	p := Page{First: 1, Messages: []Entry{}}
	if l == nil {
		return p, nil
	}
	p.First = l.seq + 1
	if len(live) == 0 {
		return p, nil
	}
	p.First = live[0].seq
	// Seqs are consecutive: the entry of seq s is at s - First.
	index := func(s uint64) int { return int(min(max(s, p.First)-p.First, uint64(len(live)))) }
	var from, to int
	switch {
	case q.FromAfter:
		from = index(q.After + 1)
		to = min(from+q.Limit, len(live))
		p.More = to < len(live)
	case q.Before > 0:
		to = index(q.Before)
		from = max(to-q.Limit, 0)
		p.More = from > 0
	default:
		to = len(live)
		from = max(to-q.Limit, 0)
		p.More = from > 0
	}
	for _, e := range live[from:to] {
		p.Messages = append(p.Messages, Entry{Seq: e.seq, Frame: e.frame})
	}
	return p, nil
}

// Latest implements History.
func (m *Memory) Latest(ctx context.Context, logs ...string) ([]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.latestLocked(logs), nil
}

func (m *Memory) latestLocked(logs []string) []uint64 {
	out := make([]uint64, len(logs))
	for i, log := range logs {
		if _, live := m.liveLocked(log); len(live) > 0 {
			out[i] = live[len(live)-1].seq
		}
	}
	return out
}

// Last implements History.
func (m *Memory) Last(ctx context.Context, logs ...string) ([]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]uint64, len(logs))
	for i, log := range logs {
		if l := m.logs[log]; l != nil {
			out[i] = l.seq
		}
	}
	return out, nil
}

// Epoch implements History: one per Memory.
func (m *Memory) Epoch(ctx context.Context) (string, error) {
	return m.epoch, nil
}

// View implements Registry.
func (m *Memory) View(ctx context.Context, user string) (View, error) {
	joined, owned, err := m.Memberships(ctx, user)
	if err != nil {
		return View{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return View{}, ErrClosed
	}
	v := View{Joined: joined, Owned: owned, Peers: []Peer{}, Latest: make(map[string]uint64), Last: make(map[string]uint64), Read: make(map[string]uint64), Epoch: m.epoch}
	if u := m.users[user]; u != nil {
		convs := make([]memConv, 0, len(u.convs))
		for _, c := range u.convs {
			convs = append(convs, c)
		}
		slices.SortFunc(convs, func(a, b memConv) int { return cmp.Compare(b.at, a.at) })
		for _, c := range convs[:min(len(convs), RecentConversations)] {
			v.Peers = append(v.Peers, c.peer)
		}
	}
	logs := slices.Clone(joined)
	for _, p := range v.Peers {
		logs = append(logs, Conversation(user, p.ID))
	}
	for i, seq := range m.latestLocked(logs) {
		if seq > 0 {
			v.Latest[logs[i]] = seq
		}
		if l := m.logs[logs[i]]; l != nil {
			v.Last[logs[i]] = l.seq
		}
		if u := m.users[user]; u != nil && u.read[logs[i]] > 0 {
			v.Read[logs[i]] = u.read[logs[i]]
		}
	}
	return v, nil
}
