package gateway

import "sync"

// sessionSet is the node's open sessions. Once closed (the node drains),
// it admits none.
type sessionSet struct {
	wg *sync.WaitGroup // immutable: counts every admitted session until done

	mu     sync.Mutex
	all    map[*Session]struct{} // guarded by mu
	closed bool                  // guarded by mu
}

func newSessionSet(wg *sync.WaitGroup) *sessionSet {
	return &sessionSet{wg: wg, all: make(map[*Session]struct{})}
}

// add admits s, unless the set is closed, and counts it in the wait group
// under the same lock as the check: Shutdown's wait cannot miss it.
func (ss *sessionSet) add(s *Session) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	ss.all[s] = struct{}{}
	ss.wg.Add(1)
	return true
}

// done takes s, which add admitted, out of the set for good.
func (ss *sessionSet) done(s *Session) {
	ss.mu.Lock()
	delete(ss.all, s)
	ss.mu.Unlock()
	ss.wg.Done()
}

// close admits no more sessions and returns those in the set.
func (ss *sessionSet) close() []*Session {
	ss.mu.Lock()
	ss.closed = true
	ss.mu.Unlock()
	return ss.list()
}

// list returns the sessions in the set.
func (ss *sessionSet) list() []*Session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]*Session, 0, len(ss.all))
	for s := range ss.all {
		out = append(out, s)
	}
	return out
}

// groupBy returns the sessions grouped by key.
func (ss *sessionSet) groupBy(key func(*Session) string) map[string][]*Session {
	by := make(map[string][]*Session)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for s := range ss.all {
		k := key(s)
		by[k] = append(by[k], s)
	}
	return by
}
