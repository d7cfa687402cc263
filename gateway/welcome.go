package gateway

import (
	"context"
	"slices"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// attach puts a new session on its topics, waiting for each subscription,
// and returns its welcome frame and the channels it lists as joined. The user topic comes first, so that a
// membership change made elsewhere after the memberships are read still
// reaches the session (as a notice).
func (c *chat) attach(ctx context.Context, s *Session) ([]byte, []string, error) {
	uid := s.login.UserID
	c.router.enter(s)
	// The welcome lists the channels the node's other sessions know of,
	// not the registry's: after an outage the resync then tells every
	// session of the same changes (resync.go).
	channels, since := c.book.snapshot(func() { c.router.add(clusterTopic, s) })
	if err := c.subs.add(ctx, c.router, userTopic(uid), s); err != nil {
		return nil, nil, err
	}
	// Subscribed to the user topic: a node that attaches the user from
	// now on counts this one (ratelimit.go).
	if err := c.limits.count(ctx, uid); err != nil {
		return nil, nil, err
	}
	v, err := c.joinTopics(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	latest, read := c.latest(s, v)
	return mustJSON(protocol.Welcome{
		Type:       protocol.TypeWelcome,
		Identifier: uid,
		Username:   s.login.Username,
		Channels:   c.ownChannels(s, channels, since, slices.Concat(v.Joined, v.Owned)),
		Joined:     v.Joined,
		Owned:      v.Owned,
		Epoch:      v.Epoch,
		Latest:     latest,
		Read:       read,
	}), v.Joined, nil
}

// joinTopics puts s on the topics of its user's channels and returns the
// user's view, read once s receives them all.
func (c *chat) joinTopics(ctx context.Context, s *Session) (pubsub.View, error) {
	uid := s.login.UserID
	joined, _, err := c.backend.Memberships(ctx, uid)
	if err != nil {
		return pubsub.View{}, err
	}
	for _, ch := range joined {
		if err := c.subs.add(ctx, c.router, channelTopic(ch), s); err != nil {
			return pubsub.View{}, err
		}
	}
	// Read again now: a leave or destroy between the first read and the
	// subscriptions would have found this session on no topic yet, so it
	// is taken off what it no longer belongs to (a join meanwhile arrives
	// as a notice on the user topic); and what is stored from here on
	// reaches the session live, so the newest seqs read now are where its
	// streams start (sequencer.go).
	v, err := c.backend.View(ctx, uid)
	if err != nil {
		return pubsub.View{}, err
	}
	for _, ch := range joined {
		if !slices.Contains(v.Joined, ch) {
			c.router.remove(channelTopic(ch), s)
		}
	}
	return v, nil
}

// latest returns the welcome's latest and read maps (by target, as the
// user names it) and gives the node's streams of those logs their
// baselines.
func (c *chat) latest(s *Session, v pubsub.View) (latest, read map[string]uint64) {
	uid := s.login.UserID
	latest, read = make(map[string]uint64, len(v.Latest)), make(map[string]uint64, len(v.Read))
	add := func(name, log string) {
		if seq := v.Latest[log]; seq > 0 {
			latest[name] = seq
			if m := v.Read[log]; m > 0 {
				read[name] = m
			}
		}
	}
	for _, ch := range v.Joined {
		c.seq.baseline(channelTopic(ch), ch, v.Last[ch])
		add(ch, ch)
	}
	convs := make(map[string]uint64, len(v.Peers))
	for _, p := range v.Peers {
		log := pubsub.Conversation(uid, p.ID)
		convs[log] = v.Last[log]
		add("@"+p.Username, log)
	}
	c.seq.conversations(userTopic(uid), convs, len(v.Peers) < pubsub.RecentConversations)
	return latest, read
}

// ownChannels returns the welcome's channel list: the book's snapshot
// told, plus the user's own channels. Those exist, even if their create
// notice has not reached this node yet (or was lost in an outage): the
// book learns of them now and tells the node's other sessions, so that
// the welcome stays the book's view; the notice, when it comes, is no news.
func (c *chat) ownChannels(s *Session, told []string, since uint64, own []string) []string {
	channels := told // sorted
	for _, ch := range own {
		if _, known := slices.BinarySearch(told, ch); known {
			continue
		}
		if c.book.learn(ch, since, func() {
			c.router.forward(clusterTopic, channelEvent(ch, protocol.EventCreate), s)
		}) {
			channels = append(channels, ch)
		}
	}
	slices.Sort(channels)
	return slices.Compact(channels)
}
