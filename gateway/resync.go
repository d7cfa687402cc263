package gateway

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// Resync timing: how often the node looks for an outage of its pub/sub
// path, and how long it waits before it tries a failed resync again.
const (
	healthPoll  = 250 * time.Millisecond
	resyncRetry = time.Second
)

// countBatch is for how many users one round trip reads memberships or
// counts nodes. A variable, so that a test crosses batches with few users.
var countBatch = 500

// resyncer brings the node's sessions back in line with the registry
// after its pub/sub path was down. What was published meanwhile never
// arrived: create and destroy events, which it sends late for the channels
// whose existence changed (the book knows what the sessions were told),
// membership notices (a join or leave made on another node: the broker
// restores the node's subscriptions, the resyncer which sessions they
// serve), !here notices (the users are counted again) and messages (the
// sequencer reads them from history).
type resyncer struct {
	backend  pubsub.Backend
	router   *router
	book     *channelBook
	limits   *limits
	seq      *sequencer
	sessions *sessionSet
	log      *slog.Logger
	metrics  *metrics
	epoch    string // the history store's, as last read; owned by watch
}

// watch resyncs after each outage of the pub/sub path, once the path is
// healthy again, until ctx ends. It goes by the broker's count of
// outages, not by sampling Healthy, so that an outage shorter than the
// poll is not missed; seen is the count that New saw before it read the
// channel set. A resync that fails is tried again.
func (r *resyncer) watch(ctx context.Context, seen uint64) {
	t := time.NewTicker(healthPoll)
	defer t.Stop()
	pending := false
	var retryAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := r.backend.Outages(); n != seen {
				seen, pending, retryAt = n, true, time.Time{}
			}
			if !pending || !r.backend.Healthy() || now.Before(retryAt) {
				continue
			}
			r.log.Info("pub/sub path back: resyncing channels and memberships")
			if r.resync(ctx, seen) {
				pending = false
				r.metrics.resyncs.WithLabelValues("ok").Inc()
			} else {
				retryAt = now.Add(resyncRetry)
				r.metrics.resyncs.WithLabelValues("failed").Inc()
			}
		}
	}
}

// resync runs every step and reports whether all succeeded. Each step is
// idempotent, so a failed resync is simply repeated. seen is the count of
// outages it makes up for.
func (r *resyncer) resync(ctx context.Context, seen uint64) bool {
	ok := true
	if err := r.channels(ctx); err != nil {
		r.log.Warn("resync channels", "err", err)
		ok = false
	}
	if err := r.memberships(ctx); err != nil {
		r.log.Warn("resync memberships", "err", err)
		ok = false
	}
	// A node that counted this one's users meanwhile could not see this
	// node, and its !here notices may have been lost too.
	if err := r.limits.recheck(ctx, true); err != nil {
		r.log.Warn("resync shared users", "err", err)
		ok = false
	}
	if err := r.messages(ctx, seen); err != nil {
		r.log.Warn("resync messages", "err", err)
		ok = false
	}
	return ok
}

// messages has every stream read from history what the outage made it
// miss. If the store lost its data (Redis came back empty: a new epoch),
// the seqs the streams hold mean nothing: they start anew.
func (r *resyncer) messages(ctx context.Context, seen uint64) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	epoch, err := r.backend.Epoch(ctx)
	if err != nil {
		return err
	}
	fresh := epoch != r.epoch
	if fresh {
		r.log.Warn("the history store lost its data: a new epoch", "was", r.epoch, "now", epoch)
		r.epoch = epoch
	}
	r.seq.outage(fresh, seen)
	return nil
}

// channels tells every session of the channels created and destroyed
// since the node last heard of them.
func (r *resyncer) channels(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return r.book.settle(func() ([]string, error) { return r.backend.Channels(ctx) },
		func(channel string, exists bool) {
			event := protocol.EventDestroy
			if exists {
				event = protocol.EventCreate
			}
			r.router.forward(clusterTopic, channelEvent(channel, event), nil)
			r.metrics.lateEvents.Inc()
			if !exists {
				r.router.drop(channelTopic(channel))
				r.seq.abandon(channelTopic(channel))
			}
		})
}

// memberships puts each local session on exactly the channels its user
// belongs to, reading the memberships of countBatch users per round trip.
// It stops at the first failure: the backend is failing again.
//
// A user that left a channel meanwhile (its !left notice was lost) may
// have left after messages that the node missed too, which its sessions
// must get first: the leave waits in the channel's stream until the node
// has delivered the messages stored up to where the channel's numbering
// stands now, read after the memberships (departure.go); the messages
// step has the streams repair them.
func (r *resyncer) memberships(ctx context.Context) error {
	byUser := r.sessions.groupBy(func(s *Session) string { return s.login.UserID })
	for batch := range slices.Chunk(slices.Collect(maps.Keys(byUser)), countBatch) {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		joined, err := r.backend.Joined(rctx, batch...)
		cancel()
		if err != nil {
			return err
		}
		var left []leaving
		for i, uid := range batch {
			left = r.putOnChannels(uid, byUser[uid], joined[i], left)
		}
		if err := r.takeOff(ctx, left); err != nil {
			return err
		}
	}
	return nil
}

// leaving is a user to take off a channel's topic.
type leaving struct{ user, channel string }

// putOnChannels puts sessions, user's, on the topics of channels, and
// appends to left the channels of the topics they are on that they must
// leave. The router reports the topics that gain their first session or
// lose their last, and the node's subscriptions follow in the background.
func (r *resyncer) putOnChannels(user string, sessions []*Session, channels []string, left []leaving) []leaving {
	want := make(map[string]bool, len(channels))
	for _, c := range channels {
		want[channelTopic(c)] = true
	}
	off := map[string]bool{}
	for _, s := range sessions {
		have := r.router.topicsOf(s, channelPrefix)
		for _, t := range have {
			if !want[t] {
				off[t] = true
			}
		}
		for t := range want {
			if !slices.Contains(have, t) {
				r.router.add(t, s)
			}
		}
	}
	for t := range want {
		r.seq.stay(t, user) // a leave still waiting here is over: a member again
	}
	for _, t := range slices.Sorted(maps.Keys(off)) {
		left = append(left, leaving{user, strings.TrimPrefix(t, channelPrefix)})
	}
	return left
}

// takeOff has each of left leave its channel's topic once the channel's
// stream has delivered what was stored up to now, read in one round trip.
func (r *resyncer) takeOff(ctx context.Context, left []leaving) error {
	if len(left) == 0 {
		return nil
	}
	index := map[string]int{}
	var channels []string
	for _, l := range left {
		if _, ok := index[l.channel]; !ok {
			index[l.channel] = len(channels)
			channels = append(channels, l.channel)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	last, err := r.backend.Last(ctx, channels...)
	cancel()
	if err != nil {
		return err
	}
	for _, l := range left {
		r.seq.depart(channelTopic(l.channel), l.channel, l.user, nil, nil,
			leavePoint{last: last[index[l.channel]], known: true})
	}
	return nil
}
