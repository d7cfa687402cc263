package auth

import (
	"context"
	"slices"
	"sync"
	"time"

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
	byUser     map[string][]string // user id -> token hashes of the user's sessions, oldest first; may hold some gone since
	sweepAt    int                 // sweep expired sessions when the map grows to this size
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
		byUser:     make(map[string][]string),
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
func (m *Memory) UserForName(ctx context.Context, username, newID string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byName[username]; ok {
		return m.users[id], nil
	}
	return m.createLocked(newID, username), nil
}

// UserForIdentity implements Store, as the Redis store's script does.
func (m *Memory) UserForIdentity(ctx context.Context, provider, subject, login, newID string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := provider + "\x00" + subject
	id, linked := m.identities[key]
	if !linked {
		id = newID
	}
	if u, ok := m.users[id]; ok {
		if holder, taken := m.byName[u.Username]; !taken || holder == id {
			m.byName[u.Username] = id
			m.identities[key] = id
			return u, nil
		}
	}
	base := protocol.SanitizeUsername(login)
	name := base
	for n := 2; ; n++ {
		if _, taken := m.byName[name]; !taken {
			break
		}
		name = protocol.WithSuffix(base, n)
	}
	m.identities[key] = id
	return m.createLocked(id, name), nil
}

func (m *Memory) createLocked(id, username string) User {
	u := User{ID: id, Username: username}
	m.users[id] = u
	m.byName[username] = id
	return u
}

// CreateSession implements Store.
func (m *Memory) CreateSession(ctx context.Context, tokenHash string, s Session, keep int) ([]Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if len(m.sessions) >= m.sweepAt { // keep the maps from growing without bound
		for h, old := range m.sessions {
			if !old.Expires.After(now) {
				delete(m.sessions, h)
			}
		}
		for id := range m.byUser {
			m.liveLocked(id, now)
		}
		m.sweepAt = max(1024, 2*len(m.sessions))
	}
	m.sessions[tokenHash] = s
	hashes := slices.DeleteFunc(m.liveLocked(s.UserID, now), func(h string) bool { return h == tokenHash })
	hashes = append(hashes, tokenHash)
	var revoked []Session
	for i := 0; keep > 0 && len(hashes) > keep && i < len(hashes); {
		h := hashes[i]
		if h == tokenHash {
			i++
			continue
		}
		revoked = append(revoked, m.sessions[h])
		delete(m.sessions, h)
		hashes = slices.Delete(hashes, i, i+1)
	}
	m.byUser[s.UserID] = hashes
	return revoked, nil
}

// liveLocked drops from the user's list the sessions that are gone
// (revoked or expired) and returns what is left.
func (m *Memory) liveLocked(userID string, now time.Time) []string {
	hashes := slices.DeleteFunc(m.byUser[userID], func(h string) bool {
		s, ok := m.sessions[h]
		return !ok || s.UserID != userID || !s.Expires.After(now)
	})
	if len(hashes) == 0 {
		delete(m.byUser, userID)
		return nil
	}
	m.byUser[userID] = hashes
	return hashes
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

// LiveSessions implements Store.
func (m *Memory) LiveSessions(ctx context.Context, tokenHashes []string) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	live := make([]bool, len(tokenHashes))
	for i, h := range tokenHashes {
		s, ok := m.sessions[h]
		live[i] = ok && s.Expires.After(now)
	}
	return live, nil
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
	m.liveLocked(s.UserID, m.now())
	return s, nil
}
