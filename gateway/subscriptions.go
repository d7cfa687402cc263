package gateway

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/wirechat/chat/pubsub"
)

// subscriptions keeps the node's broker subscriptions in step with the
// router: subscribed to a topic while it has local sessions. This is the
// only place that counts a topic's users (the router's sessions); the
// broker just keeps the set of topics it was asked for.
//
// Edges reported by the router mark a topic dirty, and loop brings dirty
// topics in step in the background, trying failures again every second.
// A caller that must know the node is subscribed (a join's ack waits for
// it) calls sync, which does the same at once.
type subscriptions struct {
	broker pubsub.Broker // immutable after newSubscriptions
	wants  func(topic string) bool
	// onSubscribe is told of each topic the node has just subscribed to,
	// once the broker confirmed it (the sequencer reads its baseline),
	// and onUnsubscribe of each it has left (the sequencer forgets it).
	onSubscribe, onUnsubscribe func(topic string)
	log                        *slog.Logger
	metrics                    *metrics
	pinned                     map[string]bool // immutable: subscribed for the node's life, never synced

	// locks serialise sync per topic (striped by hash), so that the
	// broker's calls for one topic never overlap; never held across two
	// topics.
	locks [64]sync.Mutex
	seed  maphash.Seed

	mu         sync.Mutex
	subscribed map[string]bool                    // guarded by mu
	dirty      map[string]struct{}                // guarded by mu: topics to sync
	after      map[string][]func(context.Context) // guarded by mu: run once the topic is in step
	wake       chan struct{}                      // capacity 1: dirty has news
}

func newSubscriptions(broker pubsub.Broker, wants func(string) bool, onSubscribe, onUnsubscribe func(string), log *slog.Logger, m *metrics, pinned ...string) *subscriptions {
	s := &subscriptions{
		broker:        broker,
		wants:         wants,
		onSubscribe:   onSubscribe,
		onUnsubscribe: onUnsubscribe,
		log:           log,
		metrics:       m,
		pinned:        make(map[string]bool),
		seed:          maphash.MakeSeed(),
		subscribed:    make(map[string]bool),
		dirty:         make(map[string]struct{}),
		after:         make(map[string][]func(context.Context)),
		wake:          make(chan struct{}, 1),
	}
	for _, t := range pinned {
		s.pinned[t] = true
	}
	return s
}

// sync subscribes or unsubscribes the node so that it matches whether
// topic name has local sessions, and returns once it does. A failed
// subscribe leaves the topic unsubscribed; the caller decides what next
// (markDirty has loop try again).
func (s *subscriptions) sync(ctx context.Context, name string) error {
	if s.pinned[name] {
		return nil
	}
	mu := &s.locks[maphash.String(s.seed, name)%uint64(len(s.locks))]
	mu.Lock()
	defer mu.Unlock()
	want := s.wants(name)
	s.mu.Lock()
	have := s.subscribed[name]
	s.mu.Unlock()
	switch {
	case want && !have:
		if err := s.broker.Subscribe(ctx, name); err != nil {
			return err
		}
		s.metrics.subscriptions.Inc()
		s.onSubscribe(name)
	case !want && have:
		if err := s.broker.Unsubscribe(ctx, name); err != nil {
			// Stray deliveries find no session; nothing to retry.
			s.log.Warn("unsubscribe failed", "topic", name, "err", err)
		}
		s.metrics.subscriptions.Dec()
		s.onUnsubscribe(name)
	}
	s.mu.Lock()
	if want {
		s.subscribed[name] = true
	} else {
		delete(s.subscribed, name)
	}
	s.mu.Unlock()
	return nil
}

// markDirty has loop sync topic name soon.
func (s *subscriptions) markDirty(name string) {
	s.mu.Lock()
	s.dirty[name] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// once has loop run f the next time it has synced topic name, marking it
// dirty: an answer owed once the node is subscribed.
func (s *subscriptions) once(name string, f func(context.Context)) {
	s.mu.Lock()
	s.after[name] = append(s.after[name], f)
	s.mu.Unlock()
	s.markDirty(name)
}

// add puts sessions on topic name (which the router reports as an edge if
// it is new) and returns once the node is subscribed to it. On an error
// the sessions stay on the topic; the caller decides.
func (s *subscriptions) add(ctx context.Context, r *router, name string, sessions ...*Session) error {
	r.add(name, sessions...)
	return s.sync(ctx, name)
}

// loop syncs dirty topics until ctx ends.
func (s *subscriptions) loop(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-retry.C:
		}
		s.mu.Lock()
		names := make([]string, 0, len(s.dirty))
		for name := range s.dirty {
			names = append(names, name)
		}
		clear(s.dirty)
		s.mu.Unlock()

		failed := false
		for _, name := range names {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := s.sync(cctx, name)
			if err == nil {
				s.runAfter(cctx, name)
			}
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("subscribe failed, will retry", "topic", name, "err", err)
				s.mu.Lock()
				s.dirty[name] = struct{}{}
				s.mu.Unlock()
				failed = true
			}
		}
		if failed {
			retry.Reset(time.Second)
		}
	}
}

func (s *subscriptions) runAfter(ctx context.Context, name string) {
	s.mu.Lock()
	owed := s.after[name]
	delete(s.after, name)
	s.mu.Unlock()
	for _, f := range owed {
		f(ctx)
	}
}
