package gateway

import (
	"strings"
	"sync"
	"time"
)

// Topic names (see the package doc).
const (
	clusterTopic  = "cluster"
	channelPrefix = "c:"
	userPrefix    = "u:"
)

func channelTopic(channel string) string { return channelPrefix + channel }
func userTopic(user string) string       { return userPrefix + user }

// router maps topics to the local sessions that receive them, and writes
// what arrives on a topic to each of them. It knows nothing of the broker:
// it tells edges (a topic gained its first session or lost its last) to
// changed, which keeps the node's subscriptions in step (subscriptions.go).
type router struct {
	metrics *metrics           // immutable
	changed func(topic string) // immutable; called outside mu

	mu     sync.RWMutex
	topics map[string]*topic     // guarded by mu
	of     map[*Session][]string // guarded by mu: the topics of each entered session
}

// topic is one topic's local sessions: list for the fan-out to walk, index
// to find a session's place in it. Guarded by router.mu.
type topic struct {
	list  []*Session
	index map[*Session]int
}

func newRouter(m *metrics, changed func(string)) *router {
	return &router{
		metrics: m,
		changed: changed,
		topics:  make(map[string]*topic),
		of:      make(map[*Session][]string),
	}
}

// enter makes s known to the router: from now until leave, add may put it
// on topics.
func (r *router) enter(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.of[s]; !ok {
		r.of[s] = nil
	}
}

// leave takes s off every topic for good: add ignores it from now on, so
// that a notice handled late cannot put a closed session back.
func (r *router) leave(s *Session) {
	r.mu.Lock()
	names := r.of[s]
	delete(r.of, s)
	var edges []string
	for _, name := range names {
		if r.removeLocked(name, s) {
			edges = append(edges, name)
		}
	}
	r.mu.Unlock()
	r.tell(edges)
}

// add puts sessions on topic name; sessions that have not entered, or have
// left, are skipped.
func (r *router) add(name string, sessions ...*Session) {
	r.mu.Lock()
	t := r.topics[name]
	first := t == nil
	if first {
		t = &topic{index: make(map[*Session]int, 1)}
		r.topics[name] = t
	}
	for _, s := range sessions {
		names, entered := r.of[s]
		if _, on := t.index[s]; on || !entered {
			continue
		}
		t.index[s] = len(t.list)
		t.list = append(t.list, s)
		r.of[s] = append(names, name)
	}
	if len(t.list) == 0 {
		delete(r.topics, name)
		first = false
	}
	r.mu.Unlock()
	if first {
		r.tell([]string{name})
	}
}

// remove takes sessions off topic name.
func (r *router) remove(name string, sessions ...*Session) {
	r.mu.Lock()
	emptied := false
	for _, s := range sessions {
		if r.removeLocked(name, s) {
			emptied = true
		}
		r.of[s] = without(r.of[s], name)
	}
	r.mu.Unlock()
	if emptied {
		r.tell([]string{name})
	}
}

// drop takes every session off topic name.
func (r *router) drop(name string) {
	r.mu.Lock()
	t := r.topics[name]
	if t != nil {
		for _, s := range t.list {
			r.of[s] = without(r.of[s], name)
		}
		delete(r.topics, name)
	}
	r.mu.Unlock()
	if t != nil {
		r.tell([]string{name})
	}
}

// removeLocked takes s off topic name, and reports whether that left the
// topic without sessions (it is then forgotten).
func (r *router) removeLocked(name string, s *Session) bool {
	t := r.topics[name]
	if t == nil {
		return false
	}
	i, ok := t.index[s]
	if !ok {
		return false
	}
	last := len(t.list) - 1
	t.list[i] = t.list[last]
	t.index[t.list[i]] = i
	t.list[last] = nil
	t.list = t.list[:last]
	delete(t.index, s)
	if len(t.list) > 0 {
		return false
	}
	delete(r.topics, name)
	return true
}

func (r *router) tell(edges []string) {
	for _, name := range edges {
		r.changed(name)
	}
}

func without(names []string, name string) []string {
	for i, n := range names {
		if n == name {
			last := len(names) - 1
			names[i] = names[last]
			return names[:last]
		}
	}
	return names
}

// has reports whether topic name has local sessions.
func (r *router) has(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.topics[name] != nil
}

// sessionsOf returns the local sessions on topic name.
func (r *router) sessionsOf(name string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t := r.topics[name]; t != nil {
		return append([]*Session(nil), t.list...)
	}
	return nil
}

// topicsOf returns the topics s receives whose names start with prefix.
func (r *router) topicsOf(s *Session, prefix string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, name := range r.of[s] {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}

// forward writes one encoded frame to every local session on topic name
// but except (nil: none): the same bytes to each, without blocking on any.
func (r *router) forward(name string, frame []byte, except *Session) {
	r.fanOut(name, frame, func(s *Session) bool { return s != except })
}

// forwardOthers is forward to the sessions of every user but user.
func (r *router) forwardOthers(name string, frame []byte, user string) {
	r.fanOut(name, frame, func(s *Session) bool { return s.login.UserID != user })
}

func (r *router) fanOut(name string, frame []byte, to func(*Session) bool) {
	start := time.Now()
	r.mu.RLock()
	n := 0
	if t := r.topics[name]; t != nil {
		for _, s := range t.list {
			if to(s) {
				s.send(frame)
				n++
			}
		}
	}
	r.mu.RUnlock()
	if n > 0 {
		r.metrics.delivered(frame, n, time.Since(start))
	}
}
