package gateway

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/wirechat/chat/protocol"
)

// The rate limit (spec 3.3) is per user, across the cluster. While every
// session of a user is on one node, which is the common case, that node's
// token bucket is the user's bucket and costs nothing. While the user has
// sessions on more than one node, the user is shared: each request then
// is charged to the user's bucket in the registry, which every node
// shares, at the price of a round trip to Redis.
//
// A node learns that a user is shared by counting the nodes subscribed to
// the user's topic (the nodes that hold sessions of the user). It counts
// when it attaches a user until one count has succeeded (a node that
// attaches the user later sees this one in its own count), after each
// outage of its pub/sub path for all its users, and on every
// place-refresh tick for the users it holds shared, so that a user whose
// other sessions have gone is local again within a tick or two. Whenever a
// count finds more than one node, the node tells the others with an !here
// notice on the user's topic (one publish for all the users of a count):
// so a node that cleared a user while it could not see this node (this
// node was cut off, or its subscription to the user's topic was being
// renewed) hears of the user again within a tick.
//
// The slack: the registry's bucket knows only the requests charged to it,
// and a node's bucket only its own. So each time a user becomes shared,
// and each time it becomes local again, the user can get up to one burst
// more than the limit.

// localUser is a user with sessions on this node.
type localUser struct {
	limiter *rate.Limiter // shared by the user's sessions on this node
	refs    int           // guarded by Server.mu: the user's sessions here
	counted bool          // guarded by Server.mu: a count of nodes succeeded
	// shared is whether the user has sessions on other nodes too; set by
	// checkShared and heardHere.
	shared atomic.Bool
	// hereGen counts the !here notices received for the user, so that a
	// count of nodes taken before one of them cannot clear shared.
	hereGen uint64 // guarded by Server.mu
}

// errRateLimited answers a request over the user's rate limit.
var errRateLimited = &protoError{protocol.CodeRateLimited, "too many requests, slow down"}

// allow charges one request of sess to its user's rate limit, and returns
// errRateLimited when the user is over it; a refused request takes no
// token.
//
// While the user is shared, the registry's bucket decides. The node's own
// bucket only spares the round trip when it is empty, since the node's
// requests alone then used up the burst; it is charged for each request
// allowed, so that it is right when the user is local again. While the
// broker is unhealthy, or if the registry cannot be asked, the node's
// bucket decides alone: the request itself then meets the failing backend
// and gets its own error, in the order of spec 3.4.
func (s *Server) allow(ctx context.Context, sess *Session) error {
	u := sess.user
	if u.shared.Load() && s.broker.Healthy() { // while Redis fails, do not wait for it twice
		if u.limiter.Tokens() < 1 {
			return errRateLimited
		}
		ok, err := s.registry.Allow(ctx, sess.login.UserID, s.cfg.RateLimit, u.limiter.Burst())
		if err == nil {
			if !ok {
				return errRateLimited
			}
			u.limiter.Allow() // keep the node's bucket in step; the registry decided
			return nil
		}
		sess.log(slog.LevelDebug, "shared rate limit not read", "err", err)
	}
	if !u.limiter.Allow() {
		return errRateLimited
	}
	return nil
}

// countNodes counts the nodes of user uid if no count has succeeded since
// the user's first session here registered: attach calls it.
func (s *Server) countNodes(ctx context.Context, uid string) error {
	s.mu.Lock()
	u := s.locals[uid]
	done := u == nil || u.counted
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := s.checkShared(ctx, []string{uid}); err != nil {
		return err
	}
	s.mu.Lock()
	u.counted = true
	s.mu.Unlock()
	return nil
}

// checkShared counts, in one round trip, the nodes that hold sessions of
// each of the users uids (distinct) and records whether each is shared,
// telling the other nodes of the shared ones.
func (s *Server) checkShared(ctx context.Context, uids []string) error {
	users := make([]*localUser, len(uids))
	gens := make([]uint64, len(uids))
	topics := make([]string, len(uids))
	s.mu.Lock()
	for i, uid := range uids {
		if u := s.locals[uid]; u != nil {
			users[i], gens[i] = u, u.hereGen
		}
		topics[i] = userTopic(uid)
	}
	s.mu.Unlock()
	counts, err := s.broker.Subscribers(ctx, topics...)
	if err != nil {
		return err
	}
	var tell []string
	s.mu.Lock()
	for i, u := range users {
		switch {
		case u == nil: // gone meanwhile
		case counts[i] > 1:
			u.shared.Store(true)
			tell = append(tell, topics[i])
		case u.hereGen == gens[i]: // no node announced itself meanwhile
			u.shared.Store(false)
		}
	}
	s.mu.Unlock()
	if len(tell) == 0 {
		return nil
	}
	// The notice is the same on every topic: one publish for them all.
	return s.broker.PublishAll(ctx, tell, control(opHere, s.router.reply, nil))
}

// heardHere handles an !here notice on a user topic: another node holds a
// session of the user.
func (s *Server) heardHere(topic string) {
	uid, ok := strings.CutPrefix(topic, userTopic(""))
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.locals[uid]; u != nil {
		u.hereGen++
		u.shared.Store(true)
	}
}

// recheckShared counts the nodes again for the local users that are shared
// or, after an outage (all is set), for all of them. It counts countBatch
// users per round trip, and stops at the first failure: the backend is
// failing.
func (s *Server) recheckShared(ctx context.Context, all bool) error {
	var uids []string
	s.mu.Lock()
	for uid, u := range s.locals {
		if all || u.shared.Load() {
			uids = append(uids, uid)
		}
	}
	s.mu.Unlock()
	for batch := range slices.Chunk(uids, countBatch) {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := s.checkShared(cctx, batch)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}
