package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// requestTimeout bounds the backend work of one request.
const requestTimeout = 5 * time.Second

// chat carries out the requests of the node's sessions (it is their host)
// and opens them (welcome.go). The checks of a request run in the order of
// the error table (spec 3.4): the rate limit, the frame's shape, the
// target's name, the text, then the state in the registry.
type chat struct {
	maxText  int // immutable: Config.MaxMessageBytes
	log      *slog.Logger
	metrics  *metrics
	backend  pubsub.Backend
	users    Directory
	router   *router
	subs     *subscriptions
	book     *channelBook
	limits   *limits
	commands map[string]func(context.Context, *Session, string) error // by action; immutable
}

func newChat(c chat, m *membership) *chat {
	c.commands = map[string]func(context.Context, *Session, string) error{
		protocol.ActionCreate:  m.create,
		protocol.ActionDestroy: m.destroy,
		protocol.ActionJoin:    m.join,
		protocol.ActionLeave:   m.leave,
	}
	return &c
}

// handle answers one request frame of s.
func (c *chat) handle(ctx context.Context, s *Session, data []byte) {
	req, err := protocol.DecodeRequest(data)
	id := req.ID
	var de *protocol.DecodeError
	if errors.As(err, &de) {
		id = de.ID
	}
	if err := c.limits.allow(ctx, s.login.UserID, s.user); err != nil {
		if errors.Is(err, errRateLimited) {
			c.metrics.rateLimited.Inc()
		}
		c.reply(s, id, toProto(err, ""))
		return
	}
	if err != nil {
		c.metrics.framesIn.WithLabelValues("invalid").Inc()
		c.reply(s, id, &protoError{protocol.CodeBadRequest, de.Reason})
		return
	}
	kind := req.Type
	if kind == protocol.TypeCommand {
		kind = req.Action
	}
	c.metrics.framesIn.WithLabelValues(kind).Inc()
	var perr *protoError
	if err := c.dispatch(ctx, s, req); err != nil {
		perr = toProto(err, req.Target)
		switch perr.code {
		case protocol.CodeInternal:
			s.log(slog.LevelError, "request failed", "type", req.Type, "action", req.Action, "err", err)
		case protocol.CodeUnavailable:
			s.log(slog.LevelWarn, "request failed: backend unavailable", "type", req.Type, "action", req.Action, "err", err)
		}
	}
	c.reply(s, id, perr)
}

// reply acks a request with an id, or reports its error.
func (c *chat) reply(s *Session, id string, perr *protoError) {
	if perr != nil {
		c.metrics.errors.WithLabelValues(string(perr.code)).Inc()
		s.sendReply(mustJSON(protocol.Error{Type: protocol.TypeError, Code: perr.code, Message: perr.msg, ID: id}))
		return
	}
	if id != "" {
		s.sendReply(mustJSON(protocol.Ack{Type: protocol.TypeAck, ID: id}))
	}
}

// dispatch carries out a decoded request.
func (c *chat) dispatch(ctx context.Context, s *Session, req protocol.Request) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if req.Type == protocol.TypeCommand {
		channel, err := channelName(req.Target)
		if err != nil {
			return err
		}
		return c.commands[req.Action](ctx, s, channel)
	}
	// protocol.TypeMessage; DecodeRequest admits no other
	switch {
	case len(req.Target) > 0 && req.Target[0] == '#':
		channel, err := channelName(req.Target)
		if err != nil {
			return err
		}
		if err := c.checkText(req.Message); err != nil {
			return err
		}
		return c.sendChannel(ctx, s, channel, req.Message)
	case len(req.Target) > 0 && req.Target[0] == '@':
		name, ok := protocol.NormalizeUsername(req.Target[1:])
		if !ok {
			return errorf(protocol.CodeInvalidTarget, "%q is not a valid user: @ and 1 to 39 of a-z 0-9 _ -", clip(req.Target))
		}
		if err := c.checkText(req.Message); err != nil {
			return err
		}
		return c.sendPrivate(ctx, s, name, req.Message)
	default:
		return errorf(protocol.CodeInvalidTarget, "%q is neither a channel (#name) nor a user (@name)", clip(req.Target))
	}
}

func channelName(target string) (string, error) {
	if len(target) > 0 && target[0] == '@' {
		return "", errorf(protocol.CodeInvalidTarget, "commands take a channel (#name), not a user")
	}
	ch, ok := protocol.NormalizeChannel(target)
	if !ok {
		return "", errorf(protocol.CodeInvalidTarget, "%q is not a valid channel: # and 1 to 64 of A-Z a-z 0-9 _ -", clip(target))
	}
	return ch, nil
}

func (c *chat) checkText(text string) error {
	if !protocol.ValidText(text, c.maxText) {
		return errorf(protocol.CodeInvalidMessage, "message text must be 1 to %d bytes and not only white space", c.maxText)
	}
	return nil
}

func (c *chat) sendChannel(ctx context.Context, s *Session, channel, text string) error {
	// The membership check and the publish are one step in the backend:
	// a leave or destroy racing this message cannot let it through.
	frame := messageFrame(s, channel, text)
	if err := c.backend.PublishIfMember(ctx, channel, s.login.UserID, channelTopic(channel), frame); err != nil {
		return err
	}
	c.metrics.published.WithLabelValues("channel").Inc()
	return nil
}

func (c *chat) sendPrivate(ctx context.Context, s *Session, username, text string) error {
	to, err := c.users.UserByName(ctx, username)
	if err != nil {
		return err
	}
	frame := messageFrame(s, "@"+to.Username, text)
	c.metrics.published.WithLabelValues("private").Inc()
	topics := []string{userTopic(to.ID)}
	if to.ID != s.login.UserID {
		// The sender's copy goes out with the recipient's, in one step.
		topics = append(topics, userTopic(s.login.UserID))
	}
	return c.backend.PublishAll(ctx, topics, frame)
}

func messageFrame(s *Session, target, text string) []byte {
	return mustJSON(protocol.Message{
		Type:       protocol.TypeMessage,
		Emitter:    protocol.EmitterParticipant,
		Target:     target,
		Identifier: s.login.UserID,
		Username:   s.login.Username,
		Message:    text,
		TS:         time.Now().UTC().Format(protocol.TimeFormat),
	})
}

func channelEvent(channel, event string) []byte {
	return mustJSON(protocol.Event{
		Type:       protocol.TypeEvent,
		Emitter:    protocol.EmitterChannel,
		Identifier: channel,
		Event:      event,
	})
}

func participantEvent(s *Session, channel, event string) []byte {
	return mustJSON(protocol.Event{
		Type:       protocol.TypeEvent,
		Emitter:    protocol.EmitterParticipant,
		Identifier: s.login.UserID,
		Event:      event,
		Target:     channel,
		Username:   s.login.Username,
	})
}

// clip keeps client-chosen strings short in error messages.
func clip(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}

// mustJSON encodes one of our own wire types. HTML characters stay as they
// are (clients render text, never HTML), so frames read as the spec shows.
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only our own wire types are marshalled
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}
