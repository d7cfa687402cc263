package pubsub

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is the Broker and Registry of a single node: everything lives in
// process memory. It is the embedded default and the reference that the
// Redis implementation is tested against.
type Memory struct {
	handler Handler        // immutable after NewMemory
	history HistoryOptions // immutable after NewMemory
	epoch   string         // immutable after NewMemory
	now     func() time.Time

	// pubMu serialises deliveries, so that the handler sees every topic's
	// payloads in one order and is never called concurrently.
	pubMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	closed    bool
	subs      map[string]struct{}
	channels  map[string]*memChannel
	users     map[string]*memUser
	due       dueQueue // when to look at whose presence (SweepPresence)
	logs      map[string]*memLog
	throttles map[string]time.Time // key -> passes again at
	idem      map[idemKey]uint64   // remembered message ids: the seq they got
	idemQ     []idemMark           // the same, oldest first, to forget them in time
	activity  uint64               // counts private messages: the recency of conversations
}

type memChannel struct {
	owner   string
	members map[string]string // id -> username
	roster  []Peer            // the members by username (then id), for paging members
}

// rosterAt returns where the member with that username and id is, or
// would be, in c.roster, and whether it is there.
func (c *memChannel) rosterAt(username, id string) (int, bool) {
	return slices.BinarySearchFunc(c.roster, Peer{ID: id, Username: username}, func(a, b Peer) int {
		return cmp.Or(cmp.Compare(a.Username, b.Username), cmp.Compare(a.ID, b.ID))
	})
}

func (c *memChannel) add(p Peer) {
	c.members[p.ID] = p.Username
	if i, found := c.rosterAt(p.Username, p.ID); !found {
		c.roster = slices.Insert(c.roster, i, p)
	}
}

func (c *memChannel) remove(id string) {
	name, ok := c.members[id]
	if !ok {
		return
	}
	delete(c.members, id)
	if i, found := c.rosterAt(name, id); found {
		c.roster = slices.Delete(c.roster, i, i+1)
	}
}

type memUser struct {
	joined map[string]struct{}
	places map[string]time.Time // conn -> lapses at
	tat    time.Time            // the rate bucket: when it is full again
	convs  map[string]memConv   // by the peer's id
	read   map[string]uint64    // read markers, by log

	presence     presence
	name         string    // the username, for presence
	leavingUntil time.Time // while leaving: when the grace ends
	lookAt       time.Time // when the sweep is to look at the user (the earliest in due); zero: not due
}

// dueQueue says when to look at whose presence, earliest first
// (container/heap): the sweep looks only at users whose time has come,
// not at every user online. It may say too early, never too late: a
// refresh moves a place's lapse later without moving the entry, and the
// sweep that finds a user early puts it back for the new time.
type dueQueue []dueEntry

type dueEntry struct {
	at time.Time
	id string
}

func (q dueQueue) Len() int           { return len(q) }
func (q dueQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q dueQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *dueQueue) Push(x any)        { *q = append(*q, x.(dueEntry)) }
func (q *dueQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// scheduleLocked has the sweep look at user id (u) by at.
func (m *Memory) scheduleLocked(id string, u *memUser, at time.Time) {
	if u.lookAt.IsZero() || at.Before(u.lookAt) {
		u.lookAt = at
		heap.Push(&m.due, dueEntry{at: at, id: id})
	}
}

// presence is a user's presence as announced: online from the place that
// made it so until the sweep that says it is gone, the grace included.
type presence uint8

const (
	offline presence = iota
	present
	leaving // no place, within the grace
)

var _ Backend = (*Memory)(nil)

// NewMemory returns an empty in-memory backend that delivers to handler and
// keeps messages as history says. Each has an epoch of its own.
func NewMemory(handler Handler, history HistoryOptions) *Memory {
	if history.Limit <= 0 {
		history.Limit = DefaultHistoryLimit
	}
	return &Memory{
		handler:   handler,
		now:       time.Now,
		history:   history,
		epoch:     randomHex(8),
		subs:      make(map[string]struct{}),
		channels:  make(map[string]*memChannel),
		users:     make(map[string]*memUser),
		logs:      make(map[string]*memLog),
		throttles: make(map[string]time.Time),
		idem:      make(map[idemKey]uint64),
	}
}

// Publish delivers payload to the handler before it returns, if topic is
// subscribed.
func (m *Memory) Publish(ctx context.Context, topic string, payload []byte) error {
	return m.PublishAll(ctx, []string{topic}, payload)
}

// PublishAll implements Broker.
func (m *Memory) PublishAll(ctx context.Context, topics []string, payload []byte) error {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	for _, topic := range topics {
		m.mu.Lock()
		_, ok := m.subs[topic]
		m.mu.Unlock()
		if ok {
			m.handler(topic, payload)
		}
	}
	return nil
}

// Subscribe implements Broker.
func (m *Memory) Subscribe(ctx context.Context, topic string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.subs[topic] = struct{}{}
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(ctx context.Context, topic string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	delete(m.subs, topic)
	return nil
}

// Outages implements Broker: the in-memory path never goes down.
func (m *Memory) Outages() uint64 { return 0 }

// Subscribers implements Broker: 1 for a topic this node is subscribed
// to, else 0.
func (m *Memory) Subscribers(ctx context.Context, topics ...string) ([]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	counts := make([]int, len(topics))
	for i, topic := range topics {
		if _, ok := m.subs[topic]; ok {
			counts[i] = 1
		}
	}
	return counts, nil
}

// Healthy is true until Close.
func (m *Memory) Healthy() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.closed
}

// Close implements Broker.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// Ping implements Registry.
func (m *Memory) Ping(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// CreateChannel implements Registry. Deliveries are held from the change
// to the notice, so no other payload comes between them.
func (m *Memory) CreateChannel(ctx context.Context, channel, owner string, n Notice) error {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	if err := m.createChannel(channel, owner); err != nil {
		return err
	}
	m.noticeLocked(n)
	return nil
}

// DestroyChannel implements Registry, holding deliveries as CreateChannel.
func (m *Memory) DestroyChannel(ctx context.Context, channel, by string, n Notice) ([]string, error) {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	members, err := m.destroyChannel(channel, by)
	if err != nil {
		return nil, err
	}
	m.noticeLocked(n)
	return members, nil
}

// Leave implements Registry, holding deliveries as CreateChannel.
func (m *Memory) Leave(ctx context.Context, channel, user string, n Notice) error {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	if err := m.leave(channel, user); err != nil {
		return err
	}
	m.noticeLocked(n)
	return nil
}

// noticeLocked delivers n if its topic is subscribed. The caller holds
// pubMu.
func (m *Memory) noticeLocked(n Notice) {
	if n.Topic == "" {
		return
	}
	m.mu.Lock()
	_, ok := m.subs[n.Topic]
	m.mu.Unlock()
	if ok {
		m.handler(n.Topic, n.Payload)
	}
}

func (m *Memory) createChannel(channel, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.channels[channel]; ok {
		return fmt.Errorf("create %s: %w", channel, ErrExists)
	}
	m.channels[channel] = &memChannel{owner: owner, members: make(map[string]string)}
	return nil
}

func (m *Memory) destroyChannel(channel, by string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	c, ok := m.channels[channel]
	if !ok {
		return nil, fmt.Errorf("destroy %s: %w", channel, ErrNotFound)
	}
	if c.owner != by {
		return nil, fmt.Errorf("destroy %s: %w", channel, ErrForbidden)
	}
	members := make([]string, 0, len(c.members))
	for u := range c.members {
		members = append(members, u)
		delete(m.users[u].joined, channel)
		delete(m.users[u].read, channel)
	}
	delete(m.channels, channel)
	if l := m.logs[channel]; l != nil {
		l.entries = nil // the numbering goes on
	}
	slices.Sort(members)
	return members, nil
}

// Join implements Registry.
func (m *Memory) Join(ctx context.Context, channel string, user Peer) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	c, ok := m.channels[channel]
	if !ok {
		return false, fmt.Errorf("join %s: %w", channel, ErrNotFound)
	}
	if _, ok := c.members[user.ID]; ok {
		return false, nil
	}
	c.add(user)
	m.userLocked(user.ID).joined[channel] = struct{}{}
	return true, nil
}

func (m *Memory) leave(channel, user string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := m.checkMemberLocked(channel, user); err != nil {
		return fmt.Errorf("leave %s: %w", channel, err)
	}
	m.channels[channel].remove(user)
	delete(m.users[user].joined, channel)
	delete(m.users[user].read, channel)
	return nil
}

// CheckMember implements Registry.
func (m *Memory) CheckMember(ctx context.Context, channel, user string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return m.checkMemberLocked(channel, user)
}

func (m *Memory) checkMemberLocked(channel, user string) error {
	c, ok := m.channels[channel]
	if !ok {
		return ErrNotFound
	}
	if _, ok := c.members[user]; !ok {
		return ErrNotMember
	}
	return nil
}

// Channels implements Registry.
func (m *Memory) Channels(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]string, 0, len(m.channels))
	for c := range m.channels {
		out = append(out, c)
	}
	slices.Sort(out)
	return out, nil
}

// Memberships implements Registry.
func (m *Memory) Memberships(ctx context.Context, user string) (joined, owned []string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, ErrClosed
	}
	joined, owned = []string{}, []string{}
	if u, ok := m.users[user]; ok {
		for c := range u.joined {
			joined = append(joined, c)
		}
	}
	for name, c := range m.channels {
		if c.owner == user {
			owned = append(owned, name)
		}
	}
	slices.Sort(joined)
	slices.Sort(owned)
	return joined, owned, nil
}

// AcquirePlace implements Registry.
func (m *Memory) AcquirePlace(ctx context.Context, user Peer, conn string, limit int, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	u := m.userLocked(user.ID)
	now := m.now()
	u.dropLapsed(now)
	if _, ok := u.places[conn]; !ok && len(u.places) >= limit {
		return false, ErrTooManySessions
	}
	u.places[conn] = now.Add(ttl)
	m.scheduleLocked(user.ID, u, now.Add(ttl))
	online := u.presence == offline
	u.presence, u.name = present, user.Username
	return online, nil
}

// dropLapsed drops the places that lapsed by now.
func (u *memUser) dropLapsed(now time.Time) {
	for c, until := range u.places {
		if !until.After(now) {
			delete(u.places, c)
		}
	}
}

// RefreshPlaces implements Registry.
func (m *Memory) RefreshPlaces(ctx context.Context, places map[string][]string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	until := m.now().Add(ttl)
	for user, conns := range places {
		u, ok := m.users[user]
		if !ok {
			continue
		}
		for _, c := range conns {
			if _, held := u.places[c]; held {
				u.places[c] = until
			}
		}
	}
	return nil
}

// ReleasePlace implements Registry.
func (m *Memory) ReleasePlace(ctx context.Context, user, conn string, grace time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	u, ok := m.users[user]
	if !ok {
		return nil
	}
	delete(u.places, conn)
	now := m.now()
	u.dropLapsed(now)
	if len(u.places) == 0 && u.presence == present {
		u.presence, u.leavingUntil = leaving, now.Add(grace)
		m.scheduleLocked(user, u, u.leavingUntil)
	}
	return nil
}

// SweepPresence implements Registry.
func (m *Memory) SweepPresence(ctx context.Context, limit int) ([]Peer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	now := m.now()
	var gone []Peer
	for len(m.due) > 0 && !m.due[0].at.After(now) && len(gone) < limit {
		e := heap.Pop(&m.due).(dueEntry)
		u := m.users[e.id]
		if u == nil || !e.at.Equal(u.lookAt) {
			continue // an earlier entry of the user's came first
		}
		u.lookAt = time.Time{}
		if u.presence == offline {
			continue
		}
		u.dropLapsed(now)
		switch {
		case len(u.places) > 0:
			u.presence = present // back within the grace
			m.scheduleLocked(e.id, u, u.firstLapse())
		case u.presence == leaving && u.leavingUntil.After(now):
			m.scheduleLocked(e.id, u, u.leavingUntil)
		default: // the grace is over, or the places lapsed
			u.presence = offline
			gone = append(gone, Peer{ID: e.id, Username: u.name})
		}
	}
	return gone, nil
}

// firstLapse returns when the first of u's places lapses.
func (u *memUser) firstLapse() time.Time {
	var first time.Time
	for _, until := range u.places {
		if first.IsZero() || until.Before(first) {
			first = until
		}
	}
	return first
}

// Sizes implements Registry.
func (m *Memory) Sizes(ctx context.Context, channels ...string) ([]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]int, len(channels))
	for i, ch := range channels {
		if c, ok := m.channels[ch]; ok {
			out[i] = len(c.members)
		}
	}
	return out, nil
}

// Members implements Registry.
func (m *Memory) Members(ctx context.Context, channel, after string, limit int) ([]Member, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	c, ok := m.channels[channel]
	if !ok {
		return nil, false, fmt.Errorf("members of %s: %w", channel, ErrNotFound)
	}
	// The first member whose username sorts after after: an id of
	// "\xff" sorts after every id of that username.
	from, _ := c.rosterAt(after, "\xff")
	if after == "" {
		from = 0
	}
	page := c.roster[from:]
	more := len(page) > limit
	if more {
		page = page[:limit]
	}
	out := make([]Member, len(page))
	for i, p := range page {
		u := m.users[p.ID]
		out[i] = Member{ID: p.ID, Username: p.Username, Online: u != nil && u.presence != offline}
	}
	return out, more, nil
}

// MarkRead implements Registry.
func (m *Memory) MarkRead(ctx context.Context, user, log string, seq uint64, n Notice) (bool, error) {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false, ErrClosed
	}
	u := m.userLocked(user)
	moved := seq > u.read[log]
	if moved {
		u.read[log] = seq
	}
	m.mu.Unlock()
	if moved {
		m.noticeLocked(n)
	}
	return moved, nil
}

// Throttle implements Registry.
func (m *Memory) Throttle(ctx context.Context, key string, every time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	now := m.now()
	if until, ok := m.throttles[key]; ok && until.After(now) {
		return false, nil
	}
	if len(m.throttles) > 1024 { // drop the lapsed now and then
		for k, until := range m.throttles {
			if !until.After(now) {
				delete(m.throttles, k)
			}
		}
	}
	m.throttles[key] = now.Add(every)
	return true, nil
}

// Allow implements Registry with the same cell rate algorithm as Redis.
func (m *Memory) Allow(ctx context.Context, user string, rate float64, burst int) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	u := m.userLocked(user)
	now := m.now()
	interval := max(time.Duration(float64(time.Second)/rate), time.Microsecond) // as Redis
	tat := u.tat
	if tat.Before(now) {
		tat = now
	}
	tat = tat.Add(interval)
	if tat.Sub(now) > interval*time.Duration(burst) {
		return false, nil
	}
	u.tat = tat
	return true, nil
}

// Joined implements Registry.
func (m *Memory) Joined(ctx context.Context, users ...string) ([][]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([][]string, len(users))
	for i, user := range users {
		out[i] = []string{}
		if u, ok := m.users[user]; ok {
			for c := range u.joined {
				out[i] = append(out[i], c)
			}
		}
		slices.Sort(out[i])
	}
	return out, nil
}

func (m *Memory) userLocked(user string) *memUser {
	u, ok := m.users[user]
	if !ok {
		u = &memUser{joined: make(map[string]struct{}), places: make(map[string]time.Time), convs: make(map[string]memConv), read: make(map[string]uint64)}
		m.users[user] = u
	}
	return u
}
