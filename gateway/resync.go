package gateway

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wirechat/chat/protocol"
)

// watchHealth resyncs the node's channel subscriptions each time its
// pub/sub path comes back after being down, until ctx ends.
func (s *Server) watchHealth(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.broker.Healthy()
		if now && !healthy {
			s.log.Info("pub/sub path back: resyncing channels and memberships")
			s.resync(ctx)
		}
		healthy = now
	}
}

// resync brings the node's sessions back in line with the registry after
// the node's pub/sub path was down. What was published meanwhile never
// arrived: create and destroy events, which resync sends now for the
// channels whose existence changed, and membership notices (a join or
// leave made on another node): the broker restores the node's
// subscriptions, resync restores which sessions they serve.
func (s *Server) resync(ctx context.Context) {
	if err := s.resyncChannels(ctx); err != nil {
		s.log.Warn("resync channels", "err", err)
		return // the backend is failing again; the next recovery retries
	}
	s.resyncMemberships(ctx)
}

// resyncChannels tells every session of the channels created and destroyed
// since the node last heard of them.
func (s *Server) resyncChannels(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return s.router.told.settle(func() ([]string, error) { return s.registry.Channels(ctx) },
		func(channel string, exists bool) {
			event := protocol.EventDestroy
			if exists {
				event = protocol.EventCreate
			}
			s.router.forward(clusterTopic, channelEvent(channel, event))
			if !exists {
				s.router.drop(channelTopic(channel))
			}
		})
}

func (s *Server) resyncMemberships(ctx context.Context) {
	byUser := s.sessionsBy(func(sess *Session) string { return sess.login.UserID })
	for uid, sessions := range byUser {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		joined, _, err := s.registry.Memberships(rctx, uid)
		cancel()
		if err != nil {
			s.log.Warn("resync memberships", "user", uid, "err", err)
			return // the backend is failing again; the next recovery retries
		}
		want := make(map[string]bool, len(joined))
		for _, c := range joined {
			want[channelTopic(c)] = true
		}
		for _, sess := range sessions {
			have := s.router.channelTopicsOf(sess)
			for _, t := range have {
				if !want[t] {
					s.router.remove(t, sess)
				}
			}
			for t := range want {
				if !slices.Contains(have, t) {
					s.router.addLocal(t, []*Session{sess})
					s.router.markDirty(t)
				}
			}
		}
	}
}

// channelBook is which channels a node's sessions have been told exist:
// the node's view of the registry's channel set, kept by the create and
// destroy notices it receives. The notices published while the node's
// pub/sub path was down are lost; comparing the book with the registry
// afterwards finds them.
type channelBook struct {
	mu    sync.Mutex
	names map[string]struct{} // guarded by mu
	// heard is non-nil while settle reads the registry: the channels whose
	// notices arrived meanwhile, and which the read may predate.
	heard map[string]struct{} // guarded by mu
}

// tell records that channel now exists or is gone. If that is news to the
// book, it calls send, which passes the event on to the sessions, under
// the book's lock, so that settle cannot interleave an event of its own
// for the same channel. A notice that settle or a local fallback has
// already applied is not sent twice.
func (b *channelBook) tell(channel string, exists bool, send func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heard != nil {
		b.heard[channel] = struct{}{}
	}
	if _, known := b.names[channel]; known == exists {
		return
	}
	send()
	b.setLocked(channel, exists)
}

func (b *channelBook) setLocked(channel string, exists bool) {
	if b.names == nil {
		b.names = make(map[string]struct{})
	}
	if exists {
		b.names[channel] = struct{}{}
	} else {
		delete(b.names, channel)
	}
}

// settle reads the registry's channels with read and brings the book in
// line with them, calling change (under the book's lock) for each channel
// whose existence differs. A channel whose notice arrives while read runs
// is left as the notice put it: the notice is at least as recent as the
// read, since the node is subscribed to the notices before settle starts.
// If read fails, the book is unchanged. Calls of settle must not overlap.
func (b *channelBook) settle(read func() ([]string, error), change func(channel string, exists bool)) error {
	b.mu.Lock()
	b.heard = make(map[string]struct{})
	b.mu.Unlock()
	current, err := read()

	b.mu.Lock()
	defer b.mu.Unlock()
	heard := b.heard
	b.heard = nil
	if err != nil {
		return err
	}
	now := make(map[string]struct{}, len(current))
	for _, c := range current {
		now[c] = struct{}{}
		if _, ok := heard[c]; ok {
			continue
		}
		if _, ok := b.names[c]; !ok {
			b.setLocked(c, true)
			change(c, true)
		}
	}
	for c := range b.names {
		if _, ok := heard[c]; ok {
			continue
		}
		if _, ok := now[c]; !ok {
			delete(b.names, c)
			change(c, false)
		}
	}
	return nil
}

// channelTopicsOf returns the channel topics sess receives.
func (r *router) channelTopicsOf(sess *Session) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for t := range sess.topics {
		if strings.HasPrefix(t, channelPrefix) {
			out = append(out, t)
		}
	}
	return out
}
