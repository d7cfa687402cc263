package gateway

// QueueFrames queues frames back to back for every session on this node of
// the user with that username, as a fan-out does, and returns how many
// sessions got them.
func (s *Server) QueueFrames(username string, frames ...[]byte) int {
	var to []*Session
	s.mu.Lock()
	for sess := range s.sessions {
		if sess.login.Username == username {
			to = append(to, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range to {
		for _, f := range frames {
			sess.send(f)
		}
	}
	return len(to)
}

// Pauses returns how many write-delay pauses the sessions on this node of
// the user with that username have begun.
func (s *Server) Pauses(username string) int {
	n := 0
	s.mu.Lock()
	for sess := range s.sessions {
		if sess.login.Username == username {
			sess.qmu.Lock()
			n += int(sess.pauses)
			sess.qmu.Unlock()
		}
	}
	s.mu.Unlock()
	return n
}

// Shared reports whether this node counts the user with that username as
// holding sessions on other nodes too (ratelimit.go).
func (s *Server) Shared(username string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		if sess.login.Username == username {
			return sess.user.shared.Load()
		}
	}
	return false
}
