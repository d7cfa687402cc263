package pubsub

import (
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

	mu       sync.Mutex // guards the fields below
	closed   bool
	subs     map[string]struct{}
	channels map[string]*memChannel
	users    map[string]*memUser
	logs     map[string]*memLog
	idem     map[idemKey]uint64 // remembered message ids: the seq they got
	idemQ    []idemMark         // the same, oldest first, to forget them in time
	activity uint64             // counts private messages: the recency of conversations
}

type memChannel struct {
	owner   string
	members map[string]struct{}
}

type memUser struct {
	joined map[string]struct{}
	places map[string]time.Time // conn -> lapses at
	tat    time.Time            // the rate bucket: when it is full again
	convs  map[string]memConv   // by the peer's id
}

var _ Backend = (*Memory)(nil)

// NewMemory returns an empty in-memory backend that delivers to handler and
// keeps messages as history says. Each has an epoch of its own.
func NewMemory(handler Handler, history HistoryOptions) *Memory {
	if history.Limit <= 0 {
		history.Limit = DefaultHistoryLimit
	}
	return &Memory{
		handler:  handler,
		now:      time.Now,
		history:  history,
		epoch:    randomHex(8),
		subs:     make(map[string]struct{}),
		channels: make(map[string]*memChannel),
		users:    make(map[string]*memUser),
		logs:     make(map[string]*memLog),
		idem:     make(map[idemKey]uint64),
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
	m.channels[channel] = &memChannel{owner: owner, members: make(map[string]struct{})}
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
	}
	delete(m.channels, channel)
	if l := m.logs[channel]; l != nil {
		l.entries = nil // the numbering goes on
	}
	slices.Sort(members)
	return members, nil
}

// Join implements Registry.
func (m *Memory) Join(ctx context.Context, channel, user string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	c, ok := m.channels[channel]
	if !ok {
		return false, fmt.Errorf("join %s: %w", channel, ErrNotFound)
	}
	if _, ok := c.members[user]; ok {
		return false, nil
	}
	c.members[user] = struct{}{}
	m.userLocked(user).joined[channel] = struct{}{}
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
	delete(m.channels[channel].members, user)
	delete(m.users[user].joined, channel)
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
func (m *Memory) AcquirePlace(ctx context.Context, user, conn string, limit int, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	u := m.userLocked(user)
	now := m.now()
	for c, until := range u.places {
		if !until.After(now) {
			delete(u.places, c)
		}
	}
	if _, ok := u.places[conn]; !ok && len(u.places) >= limit {
		return ErrTooManySessions
	}
	u.places[conn] = now.Add(ttl)
	return nil
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
func (m *Memory) ReleasePlace(ctx context.Context, user, conn string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if u, ok := m.users[user]; ok {
		delete(u.places, conn)
	}
	return nil
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
		u = &memUser{joined: make(map[string]struct{}), places: make(map[string]time.Time), convs: make(map[string]memConv)}
		m.users[user] = u
	}
	return u
}
