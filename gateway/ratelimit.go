package gateway

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// The rate limit (spec 3.3) is per user, across the cluster. While every
// session of a user is on one node, which is the common case, that node's
// token bucket is the user's bucket and costs nothing. While the user has
// sessions on more than one node, the user is shared: each request then is
// charged to the user's bucket in the registry, which every node shares,
// at the price of a round trip to Redis.
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
// so a node that cleared a user while it could not see this node hears of
// the user again within a tick.
//
// The slack: the registry's bucket knows only the requests charged to it,
// and a node's bucket only its own. So each time a user becomes shared,
// and each time it becomes local again, the user can get up to one burst
// more than the limit.
//
// Why not charge the shared bucket inside the script that each request
// runs anyway: requests refused before any script (bad_request,
// invalid_target) must still be refused as rate_limited first (spec 3.4),
// and on Redis Cluster the user's bucket and the channel a message goes to
// live in different hash slots, which one script cannot touch together.

// localUser is a user with sessions on this node, as its sessions see it.
type localUser struct {
	limiter *rate.Limiter // immutable; shared by the user's sessions on this node
	// shared is whether the user has sessions on other nodes too.
	shared atomic.Bool
}

// limits is the node's rate limiting: its local users and, for the shared
// ones, the registry's buckets.
type limits struct {
	rate    float64        // immutable
	burst   int            // immutable
	backend pubsub.Backend // immutable
	self    string         // immutable: the node's reply topic, named by !here
	log     *slog.Logger

	mu    sync.Mutex
	users map[string]userState // guarded by mu: by user id
}

// userState is what limits keeps of a local user.
type userState struct {
	u       *localUser
	refs    int    // the user's sessions on this node
	counted bool   // a count of the user's nodes succeeded
	hereGen uint64 // !here notices received, so that a count taken before one cannot clear shared
}

// errRateLimited answers a request over the user's rate limit.
var errRateLimited = &protoError{protocol.CodeRateLimited, "too many requests, slow down"}

func newLimits(perSecond float64, backend pubsub.Backend, self string, log *slog.Logger) *limits {
	return &limits{
		rate:    perSecond,
		burst:   max(int(2*perSecond), 1),
		backend: backend,
		self:    self,
		log:     log,
		users:   make(map[string]userState),
	}
}

// enter counts a new session of user uid and returns the user.
func (l *limits) enter(uid string) *localUser {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.users[uid]
	if !ok {
		st.u = &localUser{limiter: rate.NewLimiter(rate.Limit(l.rate), l.burst)}
	}
	st.refs++
	l.users[uid] = st
	return st.u
}

// leave counts a session of user uid gone.
func (l *limits) leave(uid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.users[uid]
	if !ok {
		return
	}
	if st.refs--; st.refs == 0 {
		delete(l.users, uid)
		return
	}
	l.users[uid] = st
}

// allow charges one request of user uid (u, from enter) to its rate limit,
// and returns errRateLimited when the user is over it; a refused request
// takes no token.
//
// While the user is shared, the registry's bucket decides. The node's own
// bucket only spares the round trip when it is empty, since the node's
// requests alone then used up the burst; it is charged for each request
// allowed, so that it is right when the user is local again. While the
// broker is unhealthy, or if the registry cannot be asked, the node's
// bucket decides alone: the request itself then meets the failing backend
// and gets its own error, in the order of spec 3.4.
func (l *limits) allow(ctx context.Context, uid string, u *localUser) error {
	if u.shared.Load() && l.backend.Healthy() { // while Redis fails, do not wait for it twice
		if u.limiter.Tokens() < 1 {
			return errRateLimited
		}
		ok, err := l.backend.Allow(ctx, uid, l.rate, l.burst)
		if err == nil {
			if !ok {
				return errRateLimited
			}
			u.limiter.Allow() // keep the node's bucket in step; the registry decided
			return nil
		}
		l.log.Debug("shared rate limit not read", "user", uid, "err", err)
	}
	if !u.limiter.Allow() {
		return errRateLimited
	}
	return nil
}

// count counts the nodes of user uid if no count has succeeded since the
// user's first session here entered: attach calls it once subscribed to
// the user's topic.
func (l *limits) count(ctx context.Context, uid string) error {
	l.mu.Lock()
	st, ok := l.users[uid]
	l.mu.Unlock()
	if !ok || st.counted {
		return nil
	}
	if err := l.check(ctx, []string{uid}); err != nil {
		return err
	}
	l.mu.Lock()
	if st, ok := l.users[uid]; ok {
		st.counted = true
		l.users[uid] = st
	}
	l.mu.Unlock()
	return nil
}

// check counts, in one round trip, the nodes that hold sessions of each of
// the users uids (distinct) and records whether each is shared, telling
// the other nodes of the shared ones.
func (l *limits) check(ctx context.Context, uids []string) error {
	users := make([]*localUser, len(uids))
	gens := make([]uint64, len(uids))
	topics := make([]string, len(uids))
	l.mu.Lock()
	for i, uid := range uids {
		if st, ok := l.users[uid]; ok {
			users[i], gens[i] = st.u, st.hereGen
		}
		topics[i] = userTopic(uid)
	}
	l.mu.Unlock()
	counts, err := l.backend.Subscribers(ctx, topics...)
	if err != nil {
		return err
	}
	var tell []string
	l.mu.Lock()
	for i, u := range users {
		st, ok := l.users[uids[i]]
		switch {
		case u == nil || !ok || st.u != u: // gone meanwhile
		case counts[i] > 1:
			u.shared.Store(true)
			tell = append(tell, topics[i])
		case st.hereGen == gens[i]: // no node announced itself meanwhile
			u.shared.Store(false)
		}
	}
	l.mu.Unlock()
	if len(tell) == 0 {
		return nil
	}
	// The notice is the same on every topic: one publish for them all.
	return l.backend.PublishAll(ctx, tell, notice{op: opHere, name: l.self}.encode())
}

// heard handles an !here notice from another node on a user topic.
func (l *limits) heard(topic string) {
	uid, ok := strings.CutPrefix(topic, userPrefix)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st, ok := l.users[uid]; ok {
		st.hereGen++
		st.u.shared.Store(true)
		l.users[uid] = st
	}
}

// recheck counts the nodes again for the local users that are shared or,
// after an outage (all is set), for all of them. It counts countBatch
// users per round trip, and stops at the first failure: the backend is
// failing.
func (l *limits) recheck(ctx context.Context, all bool) error {
	var uids []string
	l.mu.Lock()
	for uid, st := range l.users {
		if all || st.u.shared.Load() {
			uids = append(uids, uid)
		}
	}
	l.mu.Unlock()
	for batch := range slices.Chunk(uids, countBatch) {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := l.check(cctx, batch)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// shared reports whether user uid counts as shared here (for tests).
func (l *limits) shared(uid string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.users[uid]
	return ok && st.u.shared.Load()
}
