package gateway

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// Presence (spec section 6). A user is online from the place that brought
// it online (AcquirePlace says so) to the sweep that finds it gone: its
// last place released and the grace passed, or its places lapsed because
// its node died. The registry decides each change once for the cluster;
// the node that learns of it tells the user's channels.
//
// The storm: a node that restarts drops all its users at once, but those
// that reconnect within the grace (or before their old places lapse)
// change nothing. Those that do not go offline as their graces end, and
// each node coalesces what it must tell: every presenceWindow, it reads
// the channels of all the users that changed in one round trip, their
// sizes in another, and publishes one notice per channel with the events
// of all those users (docs/cluster.md has the worst case).

// Presence timing: how often a node sweeps for users gone offline, and
// how long it gathers changes before it tells them.
const (
	sweepEvery     = time.Second
	presenceWindow = 250 * time.Millisecond
	sweepBatch     = 500
)

// presence tells the members of users' channels when they come online or
// go offline.
type presence struct {
	backend    pubsub.Backend // immutable
	maxMembers int            // immutable: channels above it get no presence events
	log        *slog.Logger
	metrics    *metrics

	mu      sync.Mutex
	pending []change      // guarded by mu: changes not told yet, in order
	wake    chan struct{} // capacity 1: pending has news
}

// change is one user's presence changing. channels, if set, are the
// channels the user was a member of at the change; else they are read
// when the change is told.
type change struct {
	user     pubsub.Peer
	online   bool
	channels []string
}

func newPresence(backend pubsub.Backend, maxMembers int, log *slog.Logger, m *metrics) *presence {
	return &presence{backend: backend, maxMembers: maxMembers, log: log, metrics: m, wake: make(chan struct{}, 1)}
}

// changed has the node tell the user's channels that it came online (or
// went offline), in the next window. channels are the user's channels at
// the change, or nil to read them when it is told.
func (p *presence) changed(user pubsub.Peer, online bool, channels []string) {
	p.mu.Lock()
	p.pending = append(p.pending, change{user, online, channels})
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run sweeps for users gone offline and tells the changes, until ctx
// ends.
func (p *presence) run(ctx context.Context) {
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			p.sweep(ctx)
		case <-p.wake:
			// Gather what else changes meanwhile: one notice per channel
			// for all of them.
			select {
			case <-time.After(presenceWindow):
			case <-ctx.Done():
				return
			}
		}
		p.tell(ctx)
	}
}

// sweep asks the registry for users gone offline.
func (p *presence) sweep(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	gone, err := p.backend.SweepPresence(sctx, sweepBatch)
	if err != nil {
		p.log.Warn("sweep presence", "err", err)
	}
	for _, u := range gone {
		p.changed(u, false, nil)
	}
}

// tell publishes the pending changes: one notice per channel of at most
// maxMembers members, with an event for each user of the channel that
// changed. If the registry cannot be read, the changes wait for the next
// round.
func (p *presence) tell(ctx context.Context) {
	p.mu.Lock()
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	joined, err := p.channelsOf(ctx, pending)
	if err != nil {
		p.retry(pending, err)
		return
	}
	var channels []string
	for _, js := range joined {
		channels = append(channels, js...)
	}
	slices.Sort(channels)
	channels = slices.Compact(channels)
	sizes, err := p.backend.Sizes(ctx, channels...)
	if err != nil {
		p.retry(pending, err)
		return
	}
	type batch struct {
		users  []string
		frames [][]byte
	}
	by := make(map[string]*batch)
	for i, c := range pending {
		for _, ch := range joined[i] {
			j, _ := slices.BinarySearch(channels, ch)
			if sizes[j] > p.maxMembers {
				continue // large channels get no presence events: clients ask members
			}
			b := by[ch]
			if b == nil {
				b = &batch{}
				by[ch] = b
			}
			b.users = append(b.users, c.user.ID)
			b.frames = append(b.frames, presenceEvent(c, ch))
		}
	}
	for ch, b := range by {
		if err := p.backend.Publish(ctx, channelTopic(ch), othersNotice(b.users, b.frames).encode()); err != nil {
			p.log.Warn("publish presence", "channel", ch, "err", err)
			continue
		}
		p.metrics.presenceEvents.Add(float64(len(b.frames)))
	}
}

// channelsOf returns the channels of each change's user: those it came
// with, or else read now (all in one round trip).
func (p *presence) channelsOf(ctx context.Context, pending []change) ([][]string, error) {
	out := make([][]string, len(pending))
	var users []string
	var at []int
	for i, c := range pending {
		if c.channels != nil {
			out[i] = c.channels
		} else {
			users, at = append(users, c.user.ID), append(at, i)
		}
	}
	if len(users) == 0 {
		return out, nil
	}
	joined, err := p.backend.Joined(ctx, users...)
	if err != nil {
		return nil, err
	}
	for k, i := range at {
		out[i] = joined[k]
	}
	return out, nil
}

// retry puts changes that could not be told back in front of the queue.
func (p *presence) retry(pending []change, err error) {
	p.log.Warn("tell presence changes; will retry", "changes", len(pending), "err", err)
	p.mu.Lock()
	p.pending = append(pending, p.pending...)
	p.mu.Unlock()
}

func presenceEvent(c change, channel string) []byte {
	event := protocol.EventOffline
	if c.online {
		event = protocol.EventOnline
	}
	return mustJSON(protocol.Event{
		Type:       protocol.TypeEvent,
		Emitter:    protocol.EmitterParticipant,
		Identifier: c.user.ID,
		Event:      event,
		Target:     channel,
		Username:   c.user.Username,
	})
}
