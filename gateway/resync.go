package gateway

import (
	"context"
	"slices"
	"strings"
	"time"
)

// watchHealth resyncs the node's channel subscriptions each time its
// pub/sub path comes back after being down, until ctx ends.
func (s *Server) watchHealth(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.broker.Healthy()
		if now && !healthy {
			s.log.Info("pub/sub path back: resyncing memberships")
			s.resync(ctx)
		}
		healthy = now
	}
}

// resync brings the channel topics of this node's sessions back in line
// with the registry. Membership notices published while the node's pub/sub
// path was down (a join or leave made on another node) never arrived: the
// broker restores the node's subscriptions, this restores which sessions
// they serve.
func (s *Server) resync(ctx context.Context) {
	byUser := s.sessionsBy(func(sess *Session) string { return sess.login.UserID })
	for uid, sessions := range byUser {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		joined, _, err := s.registry.Memberships(rctx, uid)
		cancel()
		if err != nil {
			s.log.Warn("resync memberships", "user", uid, "err", err)
			return // the backend is failing again; the next recovery retries
		}
		want := make(map[string]bool, len(joined))
		for _, c := range joined {
			want[channelTopic(c)] = true
		}
		for _, sess := range sessions {
			have := s.router.channelTopicsOf(sess)
			for _, t := range have {
				if !want[t] {
					s.router.remove(t, sess)
				}
			}
			for t := range want {
				if !slices.Contains(have, t) {
					s.router.addLocal(t, []*Session{sess})
					s.router.markDirty(t)
				}
			}
		}
	}
}

// channelTopicsOf returns the channel topics sess receives.
func (r *router) channelTopicsOf(sess *Session) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for t := range sess.topics {
		if strings.HasPrefix(t, channelPrefix) {
			out = append(out, t)
		}
	}
	return out
}
