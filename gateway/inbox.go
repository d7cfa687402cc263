package gateway

import (
	"context"
	"log/slog"
	"strings"

	"github.com/wirechat/chat/pubsub"
)

// inbox receives what the broker delivers (its Handler) and passes each
// payload to its owner: a wire frame to the topic's sessions (router), a
// notice to whoever keeps what it changes. It keeps no state of its own.
type inbox struct {
	broker  pubsub.Broker
	router  *router
	seq     *sequencer
	subs    *subscriptions
	book    *channelBook
	waits   *waits
	limits  *limits
	self    string // the node's reply topic
	log     *slog.Logger
	metrics *metrics
}

// deliver is the broker's Handler: it runs on the broker's delivery
// goroutine, in publish order, and never blocks.
func (in *inbox) deliver(topic string, payload []byte) {
	if len(payload) == 0 || payload[0] != '!' {
		in.router.forward(topic, payload, nil)
		return
	}
	n, err := decodeNotice(payload)
	if err != nil {
		// A newer node's notice: its event still reaches the sessions.
		if n.frame != nil {
			in.router.forward(topic, n.frame, nil)
		}
		in.log.Warn("notice not understood, ignored", "topic", topic, "err", err)
		return
	}
	in.apply(topic, n)
}

// apply carries out notice n, received on topic. Its frame, if any, goes to
// the topic's sessions first, so that the event that announces a change
// reaches the sessions the change takes off the topic. A leave's frame
// goes out when the leave takes effect, after the messages stored before
// it (departure.go).
func (in *inbox) apply(topic string, n notice) {
	send := func() {
		if n.frame != nil {
			in.router.forward(topic, n.frame, nil)
		}
	}
	switch n.op {
	case opMsg:
		began := monoNow()
		in.seq.deliver(topic, n.name, n.seq, n.frame)
		in.metrics.hop(hopDeliver, monoNow()-began)
	case opOthers:
		users, frames, ok := n.split()
		if !ok {
			in.log.Warn("notice not understood, ignored", "topic", topic, "op", n.op, "err", "users and frames do not pair up")
			return
		}
		for i, f := range frames {
			in.router.forwardOthers(topic, f, users[i])
		}
	case opCreate:
		in.book.tell(n.name, true, send)
	case opDestroy:
		in.book.tell(n.name, false, send)
		in.router.drop(channelTopic(n.name))
		in.seq.abandon(channelTopic(n.name))
		in.signal(n.wait)
	case opJoin:
		send()
		channel := channelTopic(n.name)
		in.router.add(channel, in.router.sessionsOf(topic)...)
		in.seq.stay(channel, strings.TrimPrefix(topic, userPrefix)) // a member again
		if n.reply != "" {
			answer := notice{op: opJoined, name: n.wait}.encode()
			in.subs.once(channel, func(ctx context.Context) {
				if err := in.broker.Publish(ctx, n.reply, answer); err != nil {
					in.log.Warn("answer join notice", "topic", channel, "err", err)
				}
			})
		} else {
			in.subs.markDirty(channel)
		}
	case opJoined:
		in.signal(n.name)
	case opLeft:
		// The left event and the leave itself wait for the messages
		// stored before the leave that the node has yet to deliver
		// (departure.go).
		wait := n.wait
		in.seq.depart(topic, strings.TrimPrefix(topic, channelPrefix), n.name, n.frame,
			func() { in.signal(wait) }, leavePoint{live: true})
	case opLogout:
		send()
		for _, s := range in.router.sessionsOf(topic) {
			if s.login.ID == n.name {
				s.close(statusNormal, "logged out")
			}
		}
	case opHere:
		send()
		if n.name != in.self {
			in.limits.heard(topic)
		}
	}
}

func (in *inbox) signal(wait string) {
	if wait != "" {
		in.waits.signal(wait)
	}
}
