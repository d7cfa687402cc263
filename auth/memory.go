package auth

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wirechat/chat/protocol"
)

// Memory is a Store in process memory, for a single node.
type Memory struct {
	now func() time.Time

	mu         sync.Mutex
	users      map[string]User   // id -> user
	byName     map[string]string // username -> id
	identities map[string]string // provider + "\x00" + subject -> id
	sessions   map[string]Session
	sweepAt    int // sweep expired sessions when the map grows to this size
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{
		now:        time.Now,
		users:      make(map[string]User),
		byName:     make(map[string]string),
		identities: make(map[string]string),
		sessions:   make(map[string]Session),
	}
}

// UserByName implements Store.
func (m *Memory) UserByName(ctx context.Context, username string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byName[username]
	if !ok {
		return User{}, ErrNoUser
	}
	return m.users[id], nil
}

// UserByID implements Store.
func (m *Memory) UserByID(ctx context.Context, id string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return User{}, ErrNoUser
	}
	return u, nil
}

// UserForName implements Store.
func (m *Memory) UserForName(ctx context.Context, username string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byName[username]; ok {
		return m.users[id], nil
	}
	return m.createLocked(username), nil
}

// UserForIdentity implements Store.
func (m *Memory) UserForIdentity(ctx context.Context, provider, subject, login string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := provider + "\x00" + subject
	if id, ok := m.identities[key]; ok {
		return m.users[id], nil
	}
	base := protocol.SanitizeUsername(login)
	name := base
	for n := 2; ; n++ {
		if _, taken := m.byName[name]; !taken {
			break
		}
		name = protocol.WithSuffix(base, n)
	}
	u := m.createLocked(name)
	m.identities[key] = u.ID
	return u, nil
}

func (m *Memory) createLocked(username string) User {
	u := User{ID: uuid.NewString(), Username: username}
	m.users[u.ID] = u
	m.byName[username] = u.ID
	return u
}

// CreateSession implements Store.
func (m *Memory) CreateSession(ctx context.Context, tokenHash string, s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sessions) >= m.sweepAt { // keep the map from growing without bound
		now := m.now()
		for h, old := range m.sessions {
			if !old.Expires.After(now) {
				delete(m.sessions, h)
			}
		}
		m.sweepAt = max(1024, 2*len(m.sessions))
	}
	m.sessions[tokenHash] = s
	return nil
}

// Session implements Store.
func (m *Memory) Session(ctx context.Context, tokenHash string) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[tokenHash]
	if !ok || !s.Expires.After(m.now()) {
		return Session{}, ErrNoSession
	}
	return s, nil
}

// DeleteSession implements Store.
func (m *Memory) DeleteSession(ctx context.Context, tokenHash string) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[tokenHash]
	if !ok {
		return Session{}, ErrNoSession
	}
	delete(m.sessions, tokenHash)
	return s, nil
}
