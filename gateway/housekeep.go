package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/pubsub"
)

// housekeeper does the node's periodic chores, every PlaceTTL/3: it keeps
// the places of its websockets alive in the registry (so that only the
// places of a dead node lapse), closes the websockets of login sessions
// that are no longer valid (their logout notice may have been missed while
// the pub/sub connection was down), and counts the nodes of its shared
// users again (ratelimit.go).
type housekeeper struct {
	backend  pubsub.Backend
	auth     Authenticator
	sessions *sessionSet
	limits   *limits
	placeTTL time.Duration
	log      *slog.Logger
}

// run does the chores until ctx ends.
func (h *housekeeper) run(ctx context.Context) {
	t := time.NewTicker(h.placeTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !h.refreshPlaces(ctx) {
			continue // no session here
		}
		h.checkLogins(ctx)
		if err := h.limits.recheck(ctx, false); err != nil {
			h.log.Warn("count the nodes of shared users", "err", err)
		}
	}
}

// refreshPlaces extends the places of the node's sessions, and reports
// whether it has any.
func (h *housekeeper) refreshPlaces(ctx context.Context) bool {
	places := make(map[string][]string)
	for uid, sessions := range h.sessions.groupBy(func(s *Session) string { return s.login.UserID }) {
		for _, s := range sessions {
			places[uid] = append(places[uid], s.id)
		}
	}
	if len(places) == 0 {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.backend.RefreshPlaces(rctx, places, h.placeTTL); err != nil {
		h.log.Warn("refresh session places", "err", err)
	}
	return true
}

// checkLogins closes the websockets of login sessions that are no longer
// valid: 1008 if expired, 1000 if revoked. All the node's logins are
// checked at once: one store round trip each would be 100,000 of them
// every tick on a node that holds as many websockets.
func (h *housekeeper) checkLogins(ctx context.Context) {
	byLogin := h.sessions.groupBy(func(s *Session) string { return s.login.ID })
	groups := make([][]*Session, 0, len(byLogin))
	logins := make([]auth.Session, 0, len(byLogin))
	for _, sessions := range byLogin {
		groups = append(groups, sessions)
		logins = append(logins, sessions[0].login)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	revoked, err := h.auth.Revoked(cctx, logins)
	cancel()
	if err != nil {
		h.log.Warn("check login sessions", "err", err) // the next tick tries again
		return
	}
	for i, sessions := range groups {
		if !revoked[i] {
			continue
		}
		code, reason := statusNormal, "logged out"
		if !time.Now().Before(logins[i].Expires) {
			code, reason = statusPolicy, "session expired"
		}
		for _, s := range sessions {
			s.close(code, reason)
		}
	}
}
