package auth

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// StateMemory is a StateStore in process memory, for a single node.
type StateMemory struct {
	max int              // immutable after NewStateMemory
	now func() time.Time // immutable after NewStateMemory

	mu        sync.Mutex
	states    map[string]memoryState // guarded by mu
	nextSweep int                    // guarded by mu: sweep expired states when len(states) reaches it
}

type memoryState struct {
	st      LoginState
	expires time.Time
}

var _ StateStore = (*StateMemory)(nil)

// NewStateMemory returns an empty store that holds at most max pending
// logins (ErrStateFull beyond that). If max is zero, 100000.
func NewStateMemory(max int) *StateMemory {
	if max <= 0 {
		max = 100000
	}
	return &StateMemory{max: max, now: time.Now, states: make(map[string]memoryState), nextSweep: 1024}
}

// Put implements StateStore.
func (m *StateMemory) Put(ctx context.Context, key string, st LoginState, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if len(m.states) >= m.nextSweep || len(m.states) >= m.max {
		// Sweeping only when the map has doubled since the last sweep
		// keeps Put amortised O(1).
		for k, ms := range m.states {
			if !ms.expires.After(now) {
				delete(m.states, k)
			}
		}
		m.nextSweep = max(2*len(m.states), 1024)
	}
	if len(m.states) >= m.max {
		return ErrStateFull
	}
	if _, taken := m.states[key]; taken {
		return fmt.Errorf("put login state: key already taken")
	}
	m.states[key] = memoryState{st: st, expires: now.Add(ttl)}
	return nil
}

// Take implements StateStore.
func (m *StateMemory) Take(ctx context.Context, key string) (LoginState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms, ok := m.states[key]
	if !ok {
		return LoginState{}, ErrNoState
	}
	delete(m.states, key)
	if !ms.expires.After(m.now()) {
		return LoginState{}, ErrNoState
	}
	return ms.st, nil
}
