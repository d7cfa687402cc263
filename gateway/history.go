package gateway

import (
	"context"
	"encoding/json"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// history answers a history command (spec 5) with a page of stored
// messages, in place of its ack.
func (c *chat) history(ctx context.Context, s *Session, req protocol.Request) ([]byte, error) {
	t, err := c.resolve(ctx, s, req.Target, true)
	if err != nil {
		return nil, err
	}
	q := pubsub.Query{Limit: protocol.DefaultHistoryLimit}
	if req.Limit != nil {
		q.Limit = *req.Limit
	}
	if req.Before != nil {
		q.Before = *req.Before
	}
	if req.After != nil {
		q.After, q.FromAfter = *req.After, true
	}
	page, err := c.backend.Range(ctx, t.log, q)
	if err != nil {
		return nil, err
	}
	c.metrics.historyReads.Inc()
	frames := make([]json.RawMessage, len(page.Messages))
	for i, e := range page.Messages {
		frames[i] = e.Frame
	}
	return mustJSON(protocol.History{
		Type:     protocol.TypeHistory,
		ID:       req.ID,
		Target:   t.name,
		First:    page.First,
		Messages: frames,
		More:     page.More,
	}), nil
}

// target is a request's target, checked and resolved.
type target struct {
	name string // canonical: "#go" or "@bob"
	log  string // where its messages are stored
	peer string // for a conversation, the other user's id
}

// resolve checks a target that s reads or writes as a message does (its
// name, the channel's existence, the user's) and returns it with its log.
// With member set, s's membership of a channel is checked too.
func (c *chat) resolve(ctx context.Context, s *Session, name string, member bool) (target, error) {
	to, err := parseTarget(name)
	if err != nil {
		return target{}, err
	}
	if to[0] == '#' {
		if !member {
			return target{name: to, log: to}, nil
		}
		return target{name: to, log: to}, c.backend.CheckMember(ctx, to, s.login.UserID)
	}
	u, err := c.users.UserByName(ctx, to[1:])
	if err != nil {
		return target{}, err
	}
	return target{name: "@" + u.Username, log: pubsub.Conversation(s.login.UserID, u.ID), peer: u.ID}, nil
}
