package gateway

import (
	"context"
	"time"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// commands is the table of command actions.
var commands = map[string]func(s *Server, ctx context.Context, sess *Session, channel string) error{
	protocol.ActionCreate:  (*Server).create,
	protocol.ActionDestroy: (*Server).destroy,
	protocol.ActionJoin:    (*Server).join,
	protocol.ActionLeave:   (*Server).leave,
}

// requestTimeout bounds the backend work of one request.
const requestTimeout = 5 * time.Second

// joinSpreadTimeout bounds how long a join waits for the other nodes that
// hold sessions of the joiner to subscribe to the channel.
const joinSpreadTimeout = 2 * time.Second

// dispatch carries out a decoded request. The checks run in the order of
// the error table (spec 3.4): the target's name, the text, then the state.
func (s *Server) dispatch(ctx context.Context, sess *Session, req protocol.Request) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	switch req.Type {
	case protocol.TypeCommand:
		channel, err := channelName(req.Target)
		if err != nil {
			return err
		}
		return commands[req.Action](s, ctx, sess, channel)
	default: // protocol.TypeMessage; DecodeRequest admits no other
		switch {
		case len(req.Target) > 0 && req.Target[0] == '#':
			channel, err := channelName(req.Target)
			if err != nil {
				return err
			}
			if err := s.checkText(req.Message); err != nil {
				return err
			}
			return s.channelMessage(ctx, sess, channel, req.Message)
		case len(req.Target) > 0 && req.Target[0] == '@':
			name, ok := protocol.NormalizeUsername(req.Target[1:])
			if !ok {
				return errorf(protocol.CodeInvalidTarget, "%q is not a valid user: @ and 1 to 39 of a-z 0-9 _ -", clip(req.Target))
			}
			if err := s.checkText(req.Message); err != nil {
				return err
			}
			return s.privateMessage(ctx, sess, name, req.Message)
		default:
			return errorf(protocol.CodeInvalidTarget, "%q is neither a channel (#name) nor a user (@name)", clip(req.Target))
		}
	}
}

func channelName(target string) (string, error) {
	if len(target) > 0 && target[0] == '@' {
		return "", errorf(protocol.CodeInvalidTarget, "commands take a channel (#name), not a user")
	}
	c, ok := protocol.NormalizeChannel(target)
	if !ok {
		return "", errorf(protocol.CodeInvalidTarget, "%q is not a valid channel: # and 1 to 64 of A-Z a-z 0-9 _ -", clip(target))
	}
	return c, nil
}

func (s *Server) checkText(text string) error {
	if !protocol.ValidText(text, s.cfg.MaxMessageBytes) {
		return errorf(protocol.CodeInvalidMessage, "message text must be 1 to %d bytes and not only white space", s.cfg.MaxMessageBytes)
	}
	return nil
}

// create, destroy and leave hand the registry the event that announces
// the change: it is published in the same atomic step, so it goes out if
// and only if the change was made.
func (s *Server) create(ctx context.Context, sess *Session, channel string) error {
	ev := channelEvent(channel, protocol.EventCreate)
	n := pubsub.Notice{Topic: clusterTopic, Payload: control(opCreate, channel, ev)}
	return s.registry.CreateChannel(ctx, channel, sess.login.UserID, n)
}

func (s *Server) destroy(ctx context.Context, sess *Session, channel string) error {
	ev := channelEvent(channel, protocol.EventDestroy)
	return s.router.publishApplied(ctx, func(id string) error {
		n := pubsub.Notice{Topic: clusterTopic, Payload: control(opDestroy, channel+" "+id, ev)}
		_, err := s.registry.DestroyChannel(ctx, channel, sess.login.UserID, n)
		return err
	}, func() {
		s.router.book.tell(channel, false, func() { s.router.forward(clusterTopic, ev) })
		s.router.drop(channelTopic(channel))
	})
}

func (s *Server) join(ctx context.Context, sess *Session, channel string) error {
	uid := sess.login.UserID
	added, err := s.registry.Join(ctx, channel, uid)
	if err != nil {
		return err
	}
	// The ack waits for this node's subscription, so that a message
	// published anywhere after the ack reaches the joiner here.
	topic := channelTopic(channel)
	local := s.router.sessionsOf(userTopic(uid))
	if err := s.router.add(ctx, topic, local...); err != nil {
		if added {
			s.router.remove(topic, local...)
			s.rollback(uid, channel)
		} else {
			// Already a member: the sessions stay on the channel and the
			// subscription is tried again in the background.
			s.router.markDirty(topic)
		}
		return err
	}
	if !added {
		return nil
	}
	// The user's sessions on other nodes follow (their nodes subscribe
	// before they answer); then every member hears.
	wctx, cancel := context.WithTimeout(ctx, joinSpreadTimeout)
	err = s.router.spreadJoin(wctx, uid, channel)
	cancel()
	if err != nil {
		// No other node heard of the join: undo it here and in Redis.
		s.router.remove(topic, local...)
		s.rollback(uid, channel)
		return err
	}
	return s.broker.Publish(ctx, topic, s.participantEvent(sess, channel, protocol.EventJoin))
}

// rollback undoes a join whose subscription failed, so that the failed
// request changes nothing.
func (s *Server) rollback(uid, channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := s.registry.Leave(ctx, channel, uid, pubsub.Notice{}); err != nil {
		s.log.Error("roll back join", "user", uid, "channel", channel, "err", err)
	}
}

func (s *Server) leave(ctx context.Context, sess *Session, channel string) error {
	uid := sess.login.UserID
	// One notice: the left event reaches every member and the leaver, then
	// every node takes the leaver's sessions off the channel.
	ev := s.participantEvent(sess, channel, protocol.EventLeft)
	topic := channelTopic(channel)
	return s.router.publishApplied(ctx, func(id string) error {
		n := pubsub.Notice{Topic: topic, Payload: control(opLeft, uid+" "+id, ev)}
		return s.registry.Leave(ctx, channel, uid, n)
	}, func() { s.router.remove(topic, s.router.sessionsOf(userTopic(uid))...) })
}

func (s *Server) channelMessage(ctx context.Context, sess *Session, channel, text string) error {
	// The membership check and the publish are one step in the backend:
	// a leave or destroy racing this message cannot let it through.
	frame := s.message(sess, channel, text)
	if err := s.registry.PublishIfMember(ctx, channel, sess.login.UserID, channelTopic(channel), frame); err != nil {
		return err
	}
	s.metrics.published.WithLabelValues("channel").Inc()
	return nil
}

func (s *Server) privateMessage(ctx context.Context, sess *Session, username, text string) error {
	to, err := s.users.UserByName(ctx, username)
	if err != nil {
		return err
	}
	frame := s.message(sess, "@"+to.Username, text)
	s.metrics.published.WithLabelValues("private").Inc()
	topics := []string{userTopic(to.ID)}
	if to.ID != sess.login.UserID {
		// The sender's copy goes out with the recipient's, in one step.
		topics = append(topics, userTopic(sess.login.UserID))
	}
	return s.broker.PublishAll(ctx, topics, frame)
}

func (s *Server) message(sess *Session, target, text string) []byte {
	return mustJSON(protocol.Message{
		Type:       protocol.TypeMessage,
		Emitter:    protocol.EmitterParticipant,
		Target:     target,
		Identifier: sess.login.UserID,
		Username:   sess.login.Username,
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

func (s *Server) participantEvent(sess *Session, channel, event string) []byte {
	return mustJSON(protocol.Event{
		Type:       protocol.TypeEvent,
		Emitter:    protocol.EmitterParticipant,
		Identifier: sess.login.UserID,
		Event:      event,
		Target:     channel,
		Username:   sess.login.Username,
	})
}

// clip keeps client-chosen strings short in error messages.
func clip(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}
