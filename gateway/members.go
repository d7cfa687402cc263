package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// typingEvery is how often a user's typing in one target is told at most
// (spec 6); further requests meanwhile are acked and dropped.
const typingEvery = 3 * time.Second

// members answers a members command (spec 6) with a page of the channel's
// members, by username, in place of its ack. Any logged-in user may list
// any channel.
func (c *chat) members(ctx context.Context, s *Session, req protocol.Request) ([]byte, error) {
	channel, err := channelName(req.Target)
	if err != nil {
		return nil, err
	}
	limit, after := protocol.DefaultMembersLimit, ""
	if req.Limit != nil {
		limit = *req.Limit
	}
	if req.AfterName != nil {
		after = *req.AfterName
	}
	list, more, err := c.backend.Members(ctx, channel, after, limit)
	if err != nil {
		return nil, err
	}
	members := make([]protocol.Member, len(list))
	for i, m := range list {
		members[i] = protocol.Member{Identifier: m.ID, Username: m.Username, Online: m.Online}
	}
	return mustJSON(protocol.Members{Type: protocol.TypeMembers, ID: req.ID, Target: channel, Members: members, More: more}), nil
}

// typing tells the other members of a channel (or the peer of a
// conversation) that s's user is typing, at most once every typingEvery;
// it is checked as a message to the target is, and never stored.
func (c *chat) typing(ctx context.Context, s *Session, req protocol.Request) ([]byte, error) {
	t, err := c.resolve(ctx, s, req.Target, true)
	if err != nil {
		return nil, err
	}
	uid := s.login.UserID
	if t.peer == uid {
		return nil, nil // to oneself: nobody else to tell
	}
	ok, err := c.backend.Throttle(ctx, "typing:"+uid+":"+t.log, typingEvery)
	if err != nil || !ok {
		return nil, err
	}
	ev := participantEvent(s, t.name, protocol.EventTyping)
	if t.peer != "" {
		return nil, c.backend.Publish(ctx, userTopic(t.peer), ev)
	}
	return nil, c.backend.Publish(ctx, channelTopic(t.name), othersNotice([]string{uid}, [][]byte{ev}).encode())
}

// read moves s's user's read marker of a target (spec 7), telling every
// session of the user when it moves. A seq above the target's newest is
// bad_request; it is checked once the target is known to exist (a newest
// seq means nothing otherwise), before the membership (docs/protocol.md,
// section 10).
func (c *chat) read(ctx context.Context, s *Session, req protocol.Request) ([]byte, error) {
	t, err := c.resolve(ctx, s, req.Target, false)
	if err != nil {
		return nil, err
	}
	uid := s.login.UserID
	var member error
	if t.peer == "" {
		member = c.backend.CheckMember(ctx, t.name, uid)
		if errors.Is(member, pubsub.ErrNotFound) || member != nil && !errors.Is(member, pubsub.ErrNotMember) {
			return nil, member
		}
	}
	last, err := c.backend.Last(ctx, t.log)
	if err != nil {
		return nil, err
	}
	if *req.Seq > last[0] {
		return nil, errorf(protocol.CodeBadRequest, "seq %d is above the newest message of %s (%d)", *req.Seq, t.name, last[0])
	}
	if member != nil {
		return nil, member
	}
	event := participant(s, t.name, protocol.EventRead)
	event.Seq = *req.Seq
	ev := mustJSON(event)
	_, err = c.backend.MarkRead(ctx, uid, t.log, *req.Seq, pubsub.Notice{Topic: userTopic(uid), Payload: ev})
	return nil, err
}
