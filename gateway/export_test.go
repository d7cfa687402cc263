package gateway

// sessionsOf returns this node's sessions of the user with that username.
func (s *Server) sessionsOf(username string) []*Session {
	var out []*Session
	for _, sess := range s.sessions.list() {
		if sess.login.Username == username {
			out = append(out, sess)
		}
	}
	return out
}

// QueueFrames queues frames back to back for every session on this node of
// the user with that username, as a fan-out does, and returns how many
// sessions got them.
func (s *Server) QueueFrames(username string, frames ...[]byte) int {
	to := s.sessionsOf(username)
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
	for _, sess := range s.sessionsOf(username) {
		_, p := sess.out.stats()
		n += int(p)
	}
	return n
}

// Shared reports whether this node counts the user with that username as
// holding sessions on other nodes too (ratelimit.go).
func (s *Server) Shared(username string) bool {
	for _, sess := range s.sessionsOf(username) {
		return s.limits.shared(sess.login.UserID)
	}
	return false
}

// Connections returns the number of open websockets on this node.
func (s *Server) Connections() int { return int(s.conns.Load()) }
