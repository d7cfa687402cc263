package gateway

import (
	"context"
	"slices"

	"github.com/wirechat/chat/protocol"
)

// attach puts a new session on its topics, waiting for each subscription,
// and returns its welcome frame. The user topic comes first, so that a
// membership change made elsewhere after the memberships are read still
// reaches the session (as a notice).
func (c *chat) attach(ctx context.Context, s *Session) ([]byte, error) {
	uid := s.login.UserID
	c.router.enter(s)
	// The welcome lists the channels the node's other sessions know of,
	// not the registry's: after an outage the resync then tells every
	// session of the same changes (resync.go).
	channels, since := c.book.snapshot(func() { c.router.add(clusterTopic, s) })
	if err := c.subs.add(ctx, c.router, userTopic(uid), s); err != nil {
		return nil, err
	}
	// Subscribed to the user topic: a node that attaches the user from
	// now on counts this one (ratelimit.go).
	if err := c.limits.count(ctx, uid); err != nil {
		return nil, err
	}
	joined, owned, err := c.joinTopics(ctx, s)
	if err != nil {
		return nil, err
	}
	return mustJSON(protocol.Welcome{
		Type:       protocol.TypeWelcome,
		Identifier: uid,
		Username:   s.login.Username,
		Channels:   c.ownChannels(s, channels, since, slices.Concat(joined, owned)),
		Joined:     joined,
		Owned:      owned,
	}), nil
}

// joinTopics puts s on the topics of its user's channels and returns the
// channels it is a member of and those it owns.
func (c *chat) joinTopics(ctx context.Context, s *Session) (joined, owned []string, err error) {
	uid := s.login.UserID
	joined, owned, err = c.backend.Memberships(ctx, uid)
	if err != nil {
		return nil, nil, err
	}
	if len(joined) == 0 {
		return joined, owned, nil
	}
	for _, ch := range joined {
		if err := c.subs.add(ctx, c.router, channelTopic(ch), s); err != nil {
			return nil, nil, err
		}
	}
	// A leave or destroy between reading the memberships and subscribing
	// would have found this session on no topic yet: read them again and
	// take it off what it no longer belongs to. (A join meanwhile arrives
	// as a notice on the user topic.)
	now, owned, err := c.backend.Memberships(ctx, uid)
	if err != nil {
		return nil, nil, err
	}
	for _, ch := range joined {
		if !slices.Contains(now, ch) {
			c.router.remove(channelTopic(ch), s)
		}
	}
	return now, owned, nil
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
