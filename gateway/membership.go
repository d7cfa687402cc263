package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// joinSpreadTimeout bounds how long a join waits for the other nodes that
// hold sessions of the joiner to subscribe to the channel.
const joinSpreadTimeout = 2 * time.Second

// membership carries out the requests that change which channels exist
// and who is in them: create, destroy, join and leave. Each is one atomic
// step in the registry, with the notice that announces it; what makes the
// requests span nodes is when they are acknowledged:
//
//   - a join is acknowledged once this node, and every other node that
//     holds a session of the joiner, is subscribed to the channel, so that
//     all of the user's sessions get the join event and everything after
//     the ack (spread);
//   - a leave or destroy is acknowledged once this node has received its
//     own notice back and applied it (applied): the leaver's sessions are
//     off the channel before the client can send its next request, which
//     a late notice would otherwise undo. A leave is applied once the
//     node has delivered the channel's messages stored before it
//     (departure.go).
type membership struct {
	backend pubsub.Backend
	router  *router
	subs    *subscriptions
	seq     *sequencer
	book    *channelBook
	waits   *waits
	log     *slog.Logger
}

// create, destroy and leave hand the registry the notice that announces
// the change: it is published in the same atomic step, so it goes out if
// and only if the change was made.
func (m *membership) create(ctx context.Context, s *Session, channel string) error {
	n := notice{op: opCreate, name: channel, frame: channelEvent(channel, protocol.EventCreate)}
	return m.backend.CreateChannel(ctx, channel, s.login.UserID, pubsub.Notice{Topic: clusterTopic, Payload: n.encode()})
}

func (m *membership) destroy(ctx context.Context, s *Session, channel string) error {
	ev := channelEvent(channel, protocol.EventDestroy)
	return m.applied(ctx, func(wait string) error {
		n := notice{op: opDestroy, name: channel, wait: wait, frame: ev}
		_, err := m.backend.DestroyChannel(ctx, channel, s.login.UserID, pubsub.Notice{Topic: clusterTopic, Payload: n.encode()})
		return err
	}, func() {
		m.book.tell(channel, false, func() { m.router.forward(clusterTopic, ev, nil) })
		m.router.drop(channelTopic(channel))
		m.seq.abandon(channelTopic(channel))
	})
}

// join makes the user a member. A user that is a member already (added is
// false) may be one because an earlier attempt of this very join ran in
// Redis and its answer was lost, or its rollback failed: its sessions on
// other nodes may never have heard of it, so they are told again (the
// notice is idempotent). Only the join that added the user announces it
// to the members: joining a channel one is in sends nothing (spec 3.3).
func (m *membership) join(ctx context.Context, s *Session, channel string) error {
	uid := s.login.UserID
	added, err := m.backend.Join(ctx, channel, pubsub.Peer{ID: uid, Username: s.login.Username})
	if err != nil {
		return err
	}
	// The ack waits for this node's subscription, so that a message
	// published anywhere after the ack reaches the joiner here.
	topic := channelTopic(channel)
	local := m.router.sessionsOf(userTopic(uid))
	m.seq.stay(topic, uid) // a leave still waiting here is over: a member again
	if err := m.subs.add(ctx, m.router, topic, local...); err != nil {
		if added {
			m.router.remove(topic, local...)
			m.rollback(uid, channel)
		} else {
			// Already a member: the sessions stay on the channel and the
			// subscription is tried again in the background.
			m.subs.markDirty(topic)
		}
		return err
	}
	m.seq.settle(ctx, topic, channel)
	// The user's sessions on other nodes follow (their nodes subscribe
	// before they answer); then every member hears.
	wctx, cancel := context.WithTimeout(ctx, joinSpreadTimeout)
	err = m.spread(wctx, uid, channel)
	cancel()
	if err != nil {
		if added {
			// No other node heard of the join: undo it here and in Redis.
			m.router.remove(topic, local...)
			m.rollback(uid, channel)
		}
		// Already a member: it stays one, and a retry tells the other
		// nodes again.
		return err
	}
	if !added {
		return nil
	}
	return m.backend.Publish(ctx, topic, participantEvent(s, channel, protocol.EventJoin))
}

// rollback undoes a join whose subscription failed, so that the failed
// request changes nothing.
func (m *membership) rollback(uid, channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := m.backend.Leave(ctx, channel, uid, pubsub.Notice{}); err != nil {
		m.log.Error("roll back join", "user", uid, "channel", channel, "err", err)
	}
}

func (m *membership) leave(ctx context.Context, s *Session, channel string) error {
	uid := s.login.UserID
	// One notice: the left event reaches every member and the leaver, then
	// every node takes the leaver's sessions off the channel.
	ev := participantEvent(s, channel, protocol.EventLeft)
	topic := channelTopic(channel)
	return m.applied(ctx, func(wait string) error {
		n := notice{op: opLeft, name: uid, wait: wait, frame: ev}
		return m.backend.Leave(ctx, channel, uid, pubsub.Notice{Topic: topic, Payload: n.encode()})
	}, func() {
		// As the resync will: the leave takes effect once the node has
		// delivered what was stored before it (read now, after the
		// leave), or gives up after repairGiveUp; the ack waits for it.
		done := make(chan struct{})
		m.seq.depart(topic, channel, uid, nil, func() { close(done) }, leavePoint{})
		<-done
	})
}

// applied has publish send a notice that carries a wait id (publish builds
// it around the id) and returns once this node has applied it, or ctx
// ended. If the notice is not applied in time (the node's pub/sub path
// is being rebuilt, or a leave waits for a repair), fallback applies its
// effect on this node's sessions itself, so that they at least stop
// receiving what they must not. An error from publish (the request
// failed, nothing was published) is returned as it is.
func (m *membership) applied(ctx context.Context, publish func(wait string) error, fallback func()) error {
	id, done, release := m.waits.add(1)
	defer release()
	if err := publish(id); err != nil {
		return err
	}
	select {
	case <-done:
	case <-ctx.Done():
		m.log.Warn("own notice not received in time, applied locally")
		fallback()
	}
	return nil
}

// spread tells the nodes that hold sessions of user that it joined
// channel, and waits (at most until ctx ends) until each of them is
// subscribed to the channel's topic, so that whatever is published there
// next reaches every session of the user.
func (m *membership) spread(ctx context.Context, user, channel string) error {
	ut := userTopic(user)
	counts, err := m.backend.Subscribers(ctx, ut)
	if err != nil {
		return err
	}
	n := counts[0]
	if n <= 1 { // only this node, whose sessions are on the topic already
		return m.backend.Publish(ctx, ut, notice{op: opJoin, name: channel}.encode())
	}
	id, done, release := m.waits.add(n)
	defer release()
	if err := m.backend.Publish(ctx, ut, notice{op: opJoin, name: channel, wait: id, reply: m.waits.prefix}.encode()); err != nil {
		return err
	}
	select {
	case <-done:
	case <-ctx.Done():
		// A node that went away does not answer; the join stands, and
		// that node's sessions catch up when its subscription is made.
		m.log.Warn("join notice not answered by every node", "user", user, "channel", channel, "nodes", n)
	}
	return nil
}
