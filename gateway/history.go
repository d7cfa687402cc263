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
	target, log, err := c.logOf(ctx, s, req.Target)
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
	page, err := c.backend.Range(ctx, log, q)
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
		Target:   target,
		First:    page.First,
		Messages: frames,
		More:     page.More,
	}), nil
}

// logOf checks a target that s reads or writes as a message does (its
// name, the channel's existence and s's membership of it, or the user's
// existence) and returns it in canonical form with its log.
func (c *chat) logOf(ctx context.Context, s *Session, target string) (string, string, error) {
	to, err := parseTarget(target)
	if err != nil {
		return "", "", err
	}
	if to[0] == '#' {
		if err := c.backend.CheckMember(ctx, to, s.login.UserID); err != nil {
			return "", "", err
		}
		return to, to, nil
	}
	u, err := c.users.UserByName(ctx, to[1:])
	if err != nil {
		return "", "", err
	}
	return "@" + u.Username, pubsub.Conversation(s.login.UserID, u.ID), nil
}
