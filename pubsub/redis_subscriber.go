package pubsub

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriber keeps a node's subscriptions on Redis: which pub/sub channels
// the node wants, on which wire (pub/sub connection) each one is, and
// whether Redis confirmed it there.
//
// A single Redis has one wire. On a Redis Cluster every primary has one,
// and a channel is on the wire of the primary that serves its hash slot
// (sharded pub/sub: SSUBSCRIBE). The subscriber reads the cluster's slot
// table every slotsEvery, and at once when a wire hears that Redis dropped
// a subscription (a failover or a slot migration does that) or refused
// one (MOVED); a channel whose slot changed primary moves to that
// primary's wire. A wire for a new primary is opened, the wire of an
// address that serves no slot any more is closed.
//
// Callers change what is wanted and wait for Redis's confirmation; each
// wire's writer sends the (un)subscriptions (writer.go's work), so that a
// reconnection or a move never races a caller's command on the same
// channel.
type subscriber struct {
	// immutable after newSubscriber
	client     redis.UniversalClient
	cluster    *redis.ClusterClient // nil on a single Redis
	prefix     string               // of every channel name
	beatBase   string               // heartbeat channels: beatBase, then the wire's tag on a cluster
	topicOf    func(channel string) (string, bool)
	handler    Handler
	log        *slog.Logger
	timeout    time.Duration
	hbInterval time.Duration
	hbTimeout  time.Duration
	onHealth   func(bool)
	seed       maphash.Seed

	// topicLocks serialise Subscribe and Unsubscribe of one channel
	// (striped by hash), so that a channel's confirmations answer its own
	// requests. Lock order: a topic lock, healthMu, mu.
	topicLocks [64]sync.Mutex

	healthy  atomic.Bool
	moves    atomic.Uint64 // times Redis dropped subscriptions, or channels moved to another primary
	retired  atomic.Uint64 // outages of the wires closed so far
	refresh  chan struct{} // capacity 1: read the slot table again now
	stop     chan struct{} // closed by close
	wg       sync.WaitGroup
	healthMu sync.Mutex // serialises updateHealth

	mu       sync.Mutex // guards the fields below and the wires' fields that say so
	closed   bool
	slots    *slotTable             // a cluster's, as last read
	wires    map[string]*wire       // by address; "" on a single Redis
	topics   map[string]*topicState // by channel name: the wanted ones, heartbeats included
	unsubbed map[string][]unsub     // unsubscriptions waiting for Redis's confirmation
}

type topicState struct {
	wire      *wire // the wire it is on; nil while no primary serves its slot
	confirmed bool  // Redis confirmed it on wire's current connection
	waiters   []chan struct{}
	beat      bool // a wire's heartbeat channel
}

type unsub struct {
	wire *wire
	done chan struct{}
}

// How often a cluster's slot table is read when nothing asks for it.
const slotsEvery = 2 * time.Second

type subscriberOptions struct {
	client   redis.UniversalClient
	prefix   string
	nodeID   string
	topicOf  func(channel string) (string, bool)
	handler  Handler
	log      *slog.Logger
	timeout  time.Duration
	interval time.Duration
	deadline time.Duration
	onHealth func(bool)
}

// newSubscriber opens the wires (on a cluster, after reading its slot
// table) and returns once Redis has confirmed every wire's heartbeat
// subscription, or with ErrUnavailable when ctx ends before.
func newSubscriber(ctx context.Context, o subscriberOptions) (*subscriber, error) {
	s := &subscriber{
		client: o.client,
		prefix: o.prefix,
		// The random part keeps two nodes that share a NodeID from
		// answering each other's heartbeats.
		beatBase:   o.prefix + "hb:" + o.nodeID + ":" + randomHex(4),
		topicOf:    o.topicOf,
		handler:    o.handler,
		log:        o.log,
		timeout:    o.timeout,
		hbInterval: o.interval,
		hbTimeout:  o.deadline,
		onHealth:   o.onHealth,
		seed:       maphash.MakeSeed(),
		refresh:    make(chan struct{}, 1),
		stop:       make(chan struct{}),
		wires:      make(map[string]*wire),
		topics:     make(map[string]*topicState),
		unsubbed:   make(map[string][]unsub),
	}
	if cc, ok := o.client.(*redis.ClusterClient); ok {
		s.cluster = cc
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		table, err := readSlots(rctx, cc)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w: read the cluster's slots: %w", ErrUnavailable, err)
		}
		if len(table.primaries) == 0 {
			return nil, fmt.Errorf("%w: no primary serves a slot", ErrUnavailable)
		}
		s.adopt(table)
		s.wg.Add(1)
		go s.watchSlots()
	} else {
		s.mu.Lock()
		w := s.newWireLocked("", nil)
		s.beatLocked(w, s.beatBase)
		s.mu.Unlock()
	}
	if err := s.awaitBeats(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *subscriber) topicLock(channel string) *sync.Mutex {
	return &s.topicLocks[maphash.String(s.seed, channel)%uint64(len(s.topicLocks))]
}

// confirmTimeout bounds the wait for Redis to confirm a (un)subscription.
// The confirmation comes on the pub/sub connection behind whatever is
// being delivered, so it gets more time than a command.
func (s *subscriber) confirmTimeout() time.Duration { return 5 * s.timeout }

// subscribe returns once Redis has confirmed channel, or with
// ErrUnavailable when ctx ends or no confirmation came within
// confirmTimeout. A subscribe that fails leaves the channel unsubscribed,
// unless it was wanted before.
func (s *subscriber) subscribe(ctx context.Context, channel string) error {
	tl := s.topicLock(channel)
	tl.Lock()
	defer tl.Unlock()

	st, wait, fresh, err := s.want(channel)
	if err != nil || st == nil {
		return err // closed, or confirmed already
	}
	ctx, cancel := context.WithTimeout(ctx, s.confirmTimeout())
	defer cancel()
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.stop:
		return ErrClosed
	}
	s.giveUp(channel, st, wait, fresh)
	return fmt.Errorf("%w: no confirmation: %w", ErrUnavailable, err)
}

// want records that channel is wanted and returns its state and a wait
// that Redis's confirmation closes, and whether the channel is new. It
// returns a nil state if the channel is confirmed already.
func (s *subscriber) want(channel string) (st *topicState, wait chan struct{}, fresh bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, false, ErrClosed
	}
	st, ok := s.topics[channel]
	if ok && st.confirmed {
		return nil, nil, false, nil
	}
	if !ok {
		// A channel that is wanted but not confirmed (a reconnection is
		// under way, or an earlier subscribe gave up) is sent again by
		// its wire, not by the caller.
		st = &topicState{}
		s.topics[channel] = st
		s.moveLocked(channel, st, s.wireForLocked(channel))
	}
	wait = make(chan struct{})
	st.waiters = append(st.waiters, wait)
	return st, wait, !ok, nil
}

// giveUp forgets a subscribe's wait that no confirmation ended. A channel
// that this subscribe added is dropped again, so that a failed subscribe
// leaves no subscription behind; one that was wanted before stays: others
// rely on it.
func (s *subscriber) giveUp(channel string, st *topicState, wait chan struct{}, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.waiters = slices.DeleteFunc(st.waiters, func(w chan struct{}) bool { return w == wait })
	if fresh && len(st.waiters) == 0 && s.topics[channel] == st {
		delete(s.topics, channel)
		s.moveLocked(channel, st, nil)
	}
}

// unsubscribe waits (as subscribe does) for Redis to confirm; payloads
// published before that may still arrive. It fails only after close: when
// Redis does not answer, the channel is forgotten anyway and no
// reconnection subscribes it again.
func (s *subscriber) unsubscribe(ctx context.Context, channel string) error {
	tl := s.topicLock(channel)
	tl.Lock()
	defer tl.Unlock()

	u, err := s.unwant(channel)
	if err != nil || u.done == nil {
		return err // closed, or not subscribed
	}
	ctx, cancel := context.WithTimeout(ctx, s.confirmTimeout())
	defer cancel()
	// Waiting for the confirmation makes sure that no confirmation of an
	// earlier SUBSCRIBE of this channel is still on its way, which a
	// later subscribe would take for its own.
	select {
	case <-u.done:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.stop:
		return ErrClosed
	}
	s.mu.Lock()
	if us := slices.DeleteFunc(s.unsubbed[channel], func(x unsub) bool { return x.done == u.done }); len(us) > 0 {
		s.unsubbed[channel] = us
	} else {
		delete(s.unsubbed, channel)
	}
	s.mu.Unlock()
	// If the old connection still delivers the channel, the handler gets
	// a topic it no longer needs, which it must tolerate.
	s.log.Debug("unsubscribe not confirmed", "channel", channel, "err", err)
	return nil
}

// unwant forgets channel and returns a wait that Redis's confirmation of
// the unsubscription closes, or none if nothing was subscribed.
func (s *subscriber) unwant(channel string) (unsub, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return unsub{}, ErrClosed
	}
	st, ok := s.topics[channel]
	if !ok {
		return unsub{}, nil
	}
	delete(s.topics, channel)
	w := st.wire
	s.moveLocked(channel, st, nil)
	if w == nil || !w.sent[channel] {
		return unsub{}, nil // never sent: nothing to take back
	}
	u := unsub{wire: w, done: make(chan struct{})}
	s.unsubbed[channel] = append(s.unsubbed[channel], u)
	return u, nil
}

// wireForLocked returns the wire that channel belongs on: the only one of
// a single Redis, or the one of the primary that serves its slot (nil if
// none does).
func (s *subscriber) wireForLocked(channel string) *wire {
	if s.cluster == nil {
		return s.wires[""]
	}
	if s.slots == nil {
		return nil
	}
	return s.wires[s.slots.ownerOf(channel)]
}

// moveLocked puts channel on wire to (nil: on none), and has the writers
// of the old and the new wire look at it.
func (s *subscriber) moveLocked(channel string, st *topicState, to *wire) {
	if from := st.wire; from != nil {
		delete(from.topics, channel)
		from.look(channel)
	}
	st.wire, st.confirmed = to, false
	if to != nil {
		to.topics[channel] = struct{}{}
		to.look(channel)
	}
}

// confirmed is Redis's answer to a (un)subscription on w.
func (s *subscriber) confirmed(w *wire, m *redis.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.topics[m.Channel]
	switch m.Kind {
	case "subscribe", "ssubscribe":
		if st == nil || st.wire != w {
			return // unwanted meanwhile, or moved: the writer takes it back
		}
		st.confirmed = true
		delete(w.waiting, m.Channel)
		for _, c := range st.waiters {
			close(c)
		}
		st.waiters = nil
		if st.beat {
			// The path works again (or for the first time): prove it now,
			// not at the next tick, so that Healthy (and /readyz) does
			// not lag behind delivery.
			select {
			case w.beatNow <- struct{}{}:
			default:
			}
		}
	case "unsubscribe", "sunsubscribe":
		if us := s.unsubbed[m.Channel]; len(us) > 0 {
			if i := slices.IndexFunc(us, func(u unsub) bool { return u.wire == w }); i >= 0 {
				close(us[i].done)
				if us = slices.Delete(us, i, i+1); len(us) == 0 {
					delete(s.unsubbed, m.Channel)
				} else {
					s.unsubbed[m.Channel] = us
				}
				return
			}
		}
		if st == nil || st.wire != w || !w.sent[m.Channel] {
			return
		}
		// Redis dropped a channel that is still wanted: its slot moved to
		// another primary (a failover, a migration). What was published
		// meanwhile may be lost: that counts as an outage. The slot table
		// says where the channel goes now.
		st.confirmed = false
		delete(w.sent, m.Channel)
		delete(w.waiting, m.Channel)
		w.look(m.Channel)
		s.moves.Add(1)
		s.readSlotsSoon()
	}
}

// readSlotsSoon has a cluster's slot table read again now.
func (s *subscriber) readSlotsSoon() {
	if s.cluster == nil {
		return
	}
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

// watchSlots reads a cluster's slot table every slotsEvery, and when asked
// to, and adopts it.
func (s *subscriber) watchSlots() {
	defer s.wg.Done()
	t := time.NewTicker(slotsEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.refresh:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		table, err := readSlots(ctx, s.cluster)
		cancel()
		if err != nil {
			s.log.Debug("read the cluster's slots", "err", err)
			continue
		}
		if s.adopt(table) {
			// The client routes commands by a slot table of its own,
			// which it reads again only when a command meets a MOVED: a
			// primary that died gives none.
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			s.cluster.ReloadState(ctx)
			cancel()
		}
	}
}

// adopt makes the wires follow a new slot table: a wire for every primary,
// every channel on the wire of its slot's primary, every wire's heartbeat
// in a slot of its own primary, and no wire for an address that serves no
// slot. It reports whether the table was new.
func (s *subscriber) adopt(table *slotTable) bool {
	s.mu.Lock()
	if s.closed || table.same(s.slots) {
		s.mu.Unlock()
		return false
	}
	s.slots = table
	for _, addr := range table.primaries {
		if s.wires[addr] == nil {
			s.newWireLocked(addr, s.nodeOptions(addr))
		}
	}
	moved := 0
	for channel, st := range s.topics {
		if st.beat {
			continue
		}
		if to := s.wires[table.ownerOf(channel)]; st.wire != to {
			s.moveLocked(channel, st, to)
			moved++
		}
	}
	var retired []*wire
	for addr, w := range s.wires {
		if !table.serves(addr) {
			retired = append(retired, w)
			continue
		}
		if beat := w.beatChannel(); beat == "" || table.ownerOf(beat) != addr {
			s.beatLocked(w, s.beatBase+"{"+table.tagIn(addr, "hb")+"}")
		}
	}
	for _, w := range retired {
		s.retireLocked(w)
	}
	s.mu.Unlock()
	if moved > 0 {
		s.moves.Add(1)
		s.log.Info("cluster slots changed: subscriptions moved", "channels", moved, "primaries", len(table.primaries))
	}
	if len(retired) > 0 {
		s.updateHealth()
	}
	return true
}

// beatLocked makes channel w's heartbeat channel, in place of the one it
// had.
func (s *subscriber) beatLocked(w *wire, channel string) {
	if old := w.beatChannel(); old != "" {
		if st, ok := s.topics[old]; ok {
			delete(s.topics, old)
			s.moveLocked(old, st, nil)
		}
	}
	st := &topicState{beat: true}
	s.topics[channel] = st
	s.moveLocked(channel, st, w)
	w.beat.Store(&channel)
}

// retireLocked closes a wire whose address serves no slot any more. Its
// channels moved to other wires already, but for its heartbeat.
func (s *subscriber) retireLocked(w *wire) {
	for channel := range w.topics {
		if st := s.topics[channel]; st != nil {
			delete(s.topics, channel)
			st.wire = nil
		}
	}
	delete(s.wires, w.addr)
	s.retired.Add(w.outages.Load())
	w.shutLocked()
}

// nodeOptions are the options of a client of one cluster node, derived
// from the cluster client's.
func (s *subscriber) nodeOptions(addr string) *redis.Options {
	c := s.cluster.Options()
	return &redis.Options{
		Addr:                  addr,
		Protocol:              c.Protocol,
		Username:              c.Username,
		Password:              c.Password,
		CredentialsProvider:   c.CredentialsProvider,
		Dialer:                c.Dialer,
		TLSConfig:             c.TLSConfig,
		ContextTimeoutEnabled: true,
		DialTimeout:           s.timeout,
		ReadTimeout:           s.timeout,
		WriteTimeout:          s.timeout,
		PoolTimeout:           s.timeout,
		PoolSize:              4,
		MaxRetries:            -1,
	}
}

// awaitBeats waits until Redis confirmed every wire's heartbeat.
func (s *subscriber) awaitBeats(ctx context.Context) error {
	s.mu.Lock()
	var waits []chan struct{}
	for _, st := range s.topics {
		if st.beat && !st.confirmed {
			c := make(chan struct{})
			st.waiters = append(st.waiters, c)
			waits = append(waits, c)
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.confirmTimeout())
	defer cancel()
	for _, c := range waits {
		select {
		case <-c:
		case <-ctx.Done():
			return fmt.Errorf("%w: no confirmation of the heartbeat's subscription: %w", ErrUnavailable, ctx.Err())
		}
	}
	return nil
}

// subscribers counts the subscribers of each channel: with PUBSUB NUMSUB
// on a single Redis, with PUBSUB SHARDNUMSUB on each primary of a cluster
// (sharded subscriptions are counted by the primary that serves them).
func (s *subscriber) subscribers(ctx context.Context, channels []string) ([]int, error) {
	counts := make([]int, len(channels))
	if s.cluster == nil {
		byChannel, err := s.client.PubSubNumSub(ctx, channels...).Result()
		if err != nil {
			return nil, err
		}
		for i, c := range channels {
			counts[i] = int(byChannel[c])
		}
		return counts, nil
	}
	s.mu.Lock()
	byWire := make(map[*wire][]string)
	for _, c := range channels {
		w := s.wireForLocked(c)
		if w == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: no primary serves the slot of %q", ErrUnavailable, c)
		}
		byWire[w] = append(byWire[w], c)
	}
	s.mu.Unlock()
	var (
		mu   sync.Mutex
		all  = make(map[string]int64, len(channels))
		errs []error
		wg   sync.WaitGroup
	)
	for w, cs := range byWire {
		wg.Go(func() {
			got, err := w.client.PubSubShardNumSub(ctx, cs...).Result()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			for c, n := range got {
				all[c] = n
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	for i, c := range channels {
		counts[i] = int(all[c])
	}
	return counts, nil
}

// updateHealth sets Healthy: every wire receives its own heartbeats.
func (s *subscriber) updateHealth() {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	s.mu.Lock()
	ok := !s.closed && len(s.wires) > 0
	for _, w := range s.wires {
		ok = ok && w.healthy.Load()
	}
	s.mu.Unlock()
	if s.healthy.Swap(ok) == ok {
		return
	}
	if ok {
		s.log.Info("pubsub healthy")
	} else {
		s.log.Warn("pubsub unhealthy")
	}
	if s.onHealth != nil {
		s.onHealth(ok)
	}
}

// outages counts the times a wire went unhealthy, and the times Redis
// dropped subscriptions or they moved to another primary: every event
// after which a payload may have been lost.
func (s *subscriber) outages() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.retired.Load() + s.moves.Load()
	for _, w := range s.wires {
		n += w.outages.Load()
	}
	return n
}

// close stops every wire and waits for their goroutines. Healthy and
// onHealth say false, as a fault would, but without a warning.
func (s *subscriber) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	for _, w := range s.wires {
		w.shutLocked()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if s.healthy.Swap(false) && s.onHealth != nil {
		s.onHealth(false)
	}
}
