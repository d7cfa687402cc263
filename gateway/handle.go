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
	seq      *sequencer
	commands map[string]command // by action; immutable
}

// command carries out a request of s. It returns the frame that answers
// the request when it succeeded, or nil for a plain ack (sent only to a
// request with an id).
type command func(ctx context.Context, s *Session, req protocol.Request) ([]byte, error)

func newChat(c chat, m *membership) *chat {
	c.commands = map[string]command{
		protocol.ActionCreate:  onChannel(m.create),
		protocol.ActionDestroy: onChannel(m.destroy),
		protocol.ActionJoin:    onChannel(m.join),
		protocol.ActionLeave:   onChannel(m.leave),
		protocol.ActionHistory: c.history,
		protocol.ActionMembers: c.members,
		protocol.ActionTyping:  c.typing,
		protocol.ActionRead:    c.read,
	}
	return &c
}

// onChannel makes a command of an action on a channel.
func onChannel(action func(context.Context, *Session, string) error) command {
	return func(ctx context.Context, s *Session, req protocol.Request) ([]byte, error) {
		channel, err := channelName(req.Target)
		if err != nil {
			return nil, err
		}
		return nil, action(ctx, s, channel)
	}
}

// handle answers one request frame of s, charging it to the rate limit if
// charge is set.
func (c *chat) handle(ctx context.Context, s *Session, data []byte, charge bool) {
	req, err := protocol.DecodeRequest(data)
	id := req.ID
	var de *protocol.DecodeError
	if errors.As(err, &de) {
		id = de.ID
	}
	if err := c.allow(ctx, s, charge); err != nil {
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
	answer, err := c.dispatch(ctx, s, req)
	if err != nil {
		perr := toProto(err, req.Target)
		switch perr.code {
		case protocol.CodeInternal:
			s.log(slog.LevelError, "request failed", "type", req.Type, "action", req.Action, "err", err)
		case protocol.CodeUnavailable:
			s.log(slog.LevelWarn, "request failed: backend unavailable", "type", req.Type, "action", req.Action, "err", err)
		}
		c.reply(s, id, perr)
		return
	}
	if answer != nil {
		s.sendReply(answer)
		return
	}
	c.reply(s, id, nil)
}

// allow charges a request of s to the rate limit, unless charge is unset.
func (c *chat) allow(ctx context.Context, s *Session, charge bool) error {
	if !charge {
		return nil
	}
	return c.limits.allow(ctx, s.login.UserID, s.user)
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

// dispatch carries out a decoded request. A command may take several
// backend calls and gets requestTimeout for all of them. A message takes
// one store call (a user lookup first, for a private one), each with the
// backend's own deadline: a request deadline around it would bound
// nothing more, and cost every message a context, a timer, and the map
// its store call registers in (a tenth of what a cluster node allocates
// per message: BENCHMARKS.md, sitting 19).
func (c *chat) dispatch(ctx context.Context, s *Session, req protocol.Request) ([]byte, error) {
	if req.Type == protocol.TypeCommand {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return c.commands[req.Action](ctx, s, req)
	}
	return c.send(ctx, s, req) // protocol.TypeMessage; DecodeRequest admits no other
}

// send publishes a message, stored with its seq, and acks it with the
// seq. A retry of a message with the same id gets the first one's ack and
// is not delivered again.
func (c *chat) send(ctx context.Context, s *Session, req protocol.Request) ([]byte, error) {
	to, err := parseTarget(req.Target)
	if err != nil {
		return nil, err
	}
	if err := c.checkText(req.Message); err != nil {
		return nil, err
	}
	var st pubsub.Stored
	if to[0] == '#' {
		st, err = c.sendChannel(ctx, s, to, req)
	} else {
		st, err = c.sendPrivate(ctx, s, to[1:], req)
	}
	if err != nil {
		return nil, err
	}
	if st.Duplicate {
		c.metrics.duplicates.Inc()
	}
	if req.ID == "" {
		return nil, nil
	}
	return mustJSON(protocol.Ack{Type: protocol.TypeAck, ID: req.ID, Seq: st.Seq}), nil
}

// parseTarget checks a target's name and returns it in canonical form:
// a channel (#name) or a user (@name).
func parseTarget(target string) (string, error) {
	switch {
	case len(target) > 0 && target[0] == '#':
		return channelName(target)
	case len(target) > 0 && target[0] == '@':
		name, ok := protocol.NormalizeUsername(target[1:])
		if !ok {
			return "", errorf(protocol.CodeInvalidTarget, "%q is not a valid user: @ and 1 to 39 of a-z 0-9 _ -", clip(target))
		}
		return "@" + name, nil
	default:
		return "", errorf(protocol.CodeInvalidTarget, "%q is neither a channel (#name) nor a user (@name)", clip(target))
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

func (c *chat) sendChannel(ctx context.Context, s *Session, channel string, req protocol.Request) (pubsub.Stored, error) {
	// The membership check, the storing and the publish are one step in
	// the backend: a leave or destroy racing this message cannot let it
	// through, and it is stored if and only if it is published.
	m := pubsub.Message{
		From:   s.login.UserID,
		ID:     req.ID,
		Head:   messageHead(s, channel, req.Message),
		Topics: []string{channelTopic(channel)},
		Prefix: msgPrefix(channel),
	}
	began := monoNow()
	c.metrics.hop(hopHandle, began-s.readAt)
	st, err := c.backend.PublishMessage(ctx, channel, m)
	c.metrics.hop(hopStore, monoNow()-began)
	if err == nil && !st.Duplicate {
		c.metrics.published.WithLabelValues("channel").Inc()
	}
	return st, err
}

func (c *chat) sendPrivate(ctx context.Context, s *Session, username string, req protocol.Request) (pubsub.Stored, error) {
	to, err := c.users.UserByName(ctx, username)
	if err != nil {
		return pubsub.Stored{}, err
	}
	topics := []string{userTopic(to.ID)}
	if to.ID != s.login.UserID {
		// The sender's copy goes out with the recipient's, in one step.
		topics = append(topics, userTopic(s.login.UserID))
	}
	m := pubsub.Message{
		From:   s.login.UserID,
		ID:     req.ID,
		Head:   messageHead(s, "@"+to.Username, req.Message),
		Topics: topics,
		Prefix: msgPrefix(pubsub.Conversation(s.login.UserID, to.ID)),
	}
	began := monoNow()
	c.metrics.hop(hopHandle, began-s.readAt)
	st, err := c.backend.PublishDirect(ctx,
		pubsub.Peer{ID: s.login.UserID, Username: s.login.Username},
		pubsub.Peer{ID: to.ID, Username: to.Username}, m)
	c.metrics.hop(hopStore, monoNow()-began)
	if err == nil && !st.Duplicate {
		c.metrics.published.WithLabelValues("private").Inc()
	}
	return st, err
}

// seqSuffix ends a message frame encoded with a zero seq: the backend
// writes the seq it gives (pubsub.Message.Head).
var seqSuffix = []byte(`,"seq":0}`)

// messageHead is the frame of s's message, without its seq and closing
// brace: the backend appends them.
func messageHead(s *Session, target, text string) []byte {
	frame := mustJSON(protocol.Message{
		Type:       protocol.TypeMessage,
		Emitter:    protocol.EmitterParticipant,
		Target:     target,
		Identifier: s.login.UserID,
		Username:   s.login.Username,
		Message:    text,
		TS:         time.Now().UTC().Format(protocol.TimeFormat),
	})
	return frame[:len(frame)-len(seqSuffix)]
}

func channelEvent(channel, event string) []byte {
	return mustJSON(protocol.Event{
		Type:       protocol.TypeEvent,
		Emitter:    protocol.EmitterChannel,
		Identifier: channel,
		Event:      event,
	})
}

func participantEvent(s *Session, target, event string) []byte {
	return mustJSON(participant(s, target, event))
}

// participant is an event of what s's user did in target.
func participant(s *Session, target, event string) protocol.Event {
	return protocol.Event{
		Type:       protocol.TypeEvent,
		Emitter:    protocol.EmitterParticipant,
		Identifier: s.login.UserID,
		Event:      event,
		Target:     target,
		Username:   s.login.Username,
	}
}

// clipBytes is how much of a client-chosen string an error message quotes.
const clipBytes = 70

// clip keeps client-chosen strings short in error messages: a string
// longer than clipBytes is cut to the longest prefix of whole characters
// that fits (as `for range` sees them: an invalid byte counts as one), and
// "…" is appended.
func clip(s string) string {
	if len(s) <= clipBytes {
		return s
	}
	cut := 0
	for i := range s {
		if i > clipBytes {
			break
		}
		cut = i
	}
	return s[:cut] + "…"
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
