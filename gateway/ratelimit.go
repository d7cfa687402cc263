package gateway

import (
	"context"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/wirechat/chat/protocol"
)

// The rate limit (spec 3.3) is per user, across the cluster. While every
// session of a user is on one node, which is the common case, that node's
// token bucket is the user's bucket and costs nothing. While the user has
// sessions on more than one node, the user is shared: each request then
// also takes its token from the user's bucket in the registry, which
// every node shares, at the price of a round trip to Redis.
//
// A node learns that a user is shared in two ways. When it attaches the
// first local session of a user, it counts the nodes subscribed to the
// user's topic (the nodes holding sessions of the user); if there are
// others, it tells them with an !here notice on that topic. A node that
// attaches a user later sees this node in its count. Every place-refresh
// tick, and after each outage of the pub/sub path, the node counts again
// for the users it thinks shared (after an outage: for all), so that a
// user whose other sessions have gone is local again.

// localUser is a user with sessions on this node.
type localUser struct {
	limiter *rate.Limiter // shared by the user's sessions on this node
	refs    int           // guarded by Server.mu: the user's sessions here
	shared  atomic.Bool   // the user has sessions on other nodes too
	// heres counts the !here notices received for the user, so that a
	// count of nodes taken before one of them cannot clear shared.
	heres uint64 // guarded by Server.mu
}

// errRateLimited answers a request over the user's rate limit.
var errRateLimited = &protoError{protocol.CodeRateLimited, "too many requests, slow down"}

// allow charges one request of sess to its user's rate limit. It returns
// errRateLimited when the user is over the limit, or the registry's error
// when the shared bucket cannot be read; a refused request takes no token.
//
// While the user is shared, the registry's bucket decides. The node's own
// bucket only spares the round trip when it is empty, since the node's
// requests alone then used up the burst; it is charged for each request
// allowed, so that it is right again when the user is local again.
func (s *Server) allow(ctx context.Context, sess *Session) error {
	u := sess.user
	if !u.shared.Load() {
		if !u.limiter.Allow() {
			return errRateLimited
		}
		return nil
	}
	if u.limiter.Tokens() < 1 {
		return errRateLimited
	}
	ok, err := s.registry.Allow(ctx, sess.login.UserID, s.cfg.RateLimit, u.limiter.Burst())
	if err != nil {
		return err
	}
	if !ok {
		return errRateLimited
	}
	u.limiter.Allow()
	return nil
}

// checkShared counts the nodes that hold sessions of user uid and records
// whether the user is shared. If it is and announce is set, it tells the
// other nodes (a node attaching the user's first local session does).
func (s *Server) checkShared(ctx context.Context, uid string, announce bool) error {
	s.mu.Lock()
	u := s.locals[uid]
	var heres uint64
	if u != nil {
		heres = u.heres
	}
	s.mu.Unlock()
	if u == nil {
		return nil
	}
	topic := userTopic(uid)
	n, err := s.broker.Subscribers(ctx, topic)
	if err != nil {
		return err
	}
	if n > 1 {
		u.shared.Store(true)
		if announce {
			return s.broker.Publish(ctx, topic, control(opHere, s.router.reply, nil))
		}
		return nil
	}
	s.mu.Lock()
	if u.heres == heres { // no node announced itself meanwhile
		u.shared.Store(false)
	}
	s.mu.Unlock()
	return nil
}

// heardHere handles an !here notice on a user topic: another node now
// holds a session of the user.
func (s *Server) heardHere(topic string) {
	uid, ok := strings.CutPrefix(topic, userTopic(""))
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.locals[uid]; u != nil {
		u.heres++
		u.shared.Store(true)
	}
}

// recheckShared counts the nodes again for the local users that are shared
// (all of them, if all is set), so that a user whose sessions elsewhere
// have gone is local again, and one whose !here notice was lost is found.
func (s *Server) recheckShared(ctx context.Context, all bool) {
	var uids []string
	s.mu.Lock()
	for uid, u := range s.locals {
		if all || u.shared.Load() {
			uids = append(uids, uid)
		}
	}
	s.mu.Unlock()
	for _, uid := range uids {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := s.checkShared(cctx, uid, false)
		cancel()
		if err != nil {
			s.log.Warn("count the nodes of a user", "user", uid, "err", err)
			return // the backend is failing; the next tick tries again
		}
	}
}
