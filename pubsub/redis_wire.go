package pubsub

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/rediserr"
)

// wire is one pub/sub connection to one Redis server (the single Redis, or
// a primary of a cluster), kept open by four goroutines:
//
//   - run connects, receives, and connects again when the connection
//     fails; each connection is a new PubSub that starts with nothing
//     subscribed (go-redis would resubscribe a cluster's channels of many
//     slots in one SSUBSCRIBE, which Redis refuses);
//   - write sends the (un)subscriptions that the subscriber's table asks
//     for, and sends again those Redis has not confirmed within a timeout;
//   - heartbeat publishes on the wire's heartbeat channel every interval;
//   - monitor turns the wire unhealthy when its heartbeats stop coming
//     back, and then replaces its connection.
type wire struct {
	s       *subscriber
	addr    string        // "" on a single Redis
	client  *redis.Client // a cluster node's own client; nil on a single Redis
	beat    atomic.Pointer[string]
	kick    chan struct{} // capacity 1: the writer has work
	beatNow chan struct{} // capacity 1: publish a heartbeat at once
	stop    chan struct{} // closed by shutLocked
	wg      sync.WaitGroup

	healthy  atomic.Bool
	outages  atomic.Uint64 // times healthy turned false
	lastBeat atomic.Int64  // unix nanoseconds of the last heartbeat received
	lastRecv atomic.Int64  // unix nanoseconds of the last reply of any kind received

	// guarded by s.mu
	ps      *redis.PubSub // the current connection; nil while there is none
	shut    bool
	topics  map[string]struct{}  // the channels on this wire
	pending map[string]struct{}  // channels the writer must look at
	sent    map[string]bool      // channels subscribed on ps
	waiting map[string]time.Time // subscribed on ps but not confirmed: when sent
}

// The first wait before connecting again; it doubles up to a second, and
// starts over once a connection received anything.
const firstBackoff = 50 * time.Millisecond

// newWireLocked opens a wire to addr: with a client of opts (a cluster's
// node), or over the subscriber's client (a single Redis, opts nil).
func (s *subscriber) newWireLocked(addr string, opts *redis.Options) *wire {
	w := &wire{
		s:       s,
		addr:    addr,
		kick:    make(chan struct{}, 1),
		beatNow: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		topics:  make(map[string]struct{}),
		pending: make(map[string]struct{}),
		sent:    make(map[string]bool),
		waiting: make(map[string]time.Time),
	}
	if opts != nil {
		w.client = redis.NewClient(opts)
	}
	now := time.Now().UnixNano()
	w.lastBeat.Store(now)
	w.lastRecv.Store(now)
	empty := ""
	w.beat.Store(&empty)
	s.wires[addr] = w
	w.wg.Add(4)
	go w.run()
	go w.write()
	go w.heartbeat()
	go w.monitor()
	s.wg.Go(func() {
		w.wg.Wait()
		if w.client != nil {
			w.client.Close()
		}
	})
	return w
}

func (w *wire) beatChannel() string { return *w.beat.Load() }

// look has the writer look at channel. The caller holds s.mu.
func (w *wire) look(channel string) {
	w.pending[channel] = struct{}{}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// shutLocked stops the wire's goroutines and closes its connection. The
// caller holds s.mu.
func (w *wire) shutLocked() {
	if w.shut {
		return
	}
	w.shut = true
	close(w.stop)
	if w.ps != nil {
		w.ps.Close() // unblocks the receive
	}
}

func (w *wire) open() *redis.PubSub {
	if w.client != nil {
		return w.client.SSubscribe(context.Background())
	}
	return w.s.client.Subscribe(context.Background())
}

func (w *wire) run() {
	defer w.wg.Done()
	backoff := firstBackoff
	for {
		ps := w.open()
		if !w.s.install(w, ps) {
			ps.Close()
			return
		}
		heard := w.receive(ps)
		ps.Close()
		w.s.lose(w, ps)
		if heard {
			backoff = firstBackoff
		}
		select {
		case <-w.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// install makes ps the wire's connection and has the writer subscribe
// every channel of the wire on it. It reports false if the wire is shut.
func (s *subscriber) install(w *wire, ps *redis.PubSub) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.shut {
		return false
	}
	w.ps = ps
	for channel := range w.topics {
		w.look(channel)
	}
	return true
}

// lose forgets the wire's connection ps, which failed or was closed:
// nothing is subscribed on it any more.
func (s *subscriber) lose(w *wire, ps *redis.PubSub) {
	s.mu.Lock()
	if w.ps == ps {
		w.ps = nil
	}
	for channel := range w.topics {
		if st := s.topics[channel]; st != nil {
			st.confirmed = false
		}
	}
	clear(w.sent)
	clear(w.waiting)
	clear(w.pending)
	for channel, us := range s.unsubbed {
		us = slices.DeleteFunc(us, func(u unsub) bool {
			if u.wire == w {
				close(u.done) // nothing is subscribed on a lost connection
				return true
			}
			return false
		})
		if len(us) == 0 {
			delete(s.unsubbed, channel)
		} else {
			s.unsubbed[channel] = us
		}
	}
	shut := w.shut
	s.mu.Unlock()
	if !shut {
		w.setHealthy(false)
	}
}

// receive is the wire's only caller of the Handler while ps is its
// connection: a channel's payloads reach it in the order in which Redis
// sent them. It returns when ps fails or is closed, and reports whether
// anything came.
func (w *wire) receive(ps *redis.PubSub) (heard bool) {
	for {
		msg, err := ps.Receive(context.Background())
		if err != nil {
			select {
			case <-w.stop:
				return heard
			default:
			}
			if rediserr.Answered(err) {
				// Redis refused a (un)subscription, the connection stays:
				// MOVED, while a slot changes primary. The slot table
				// says where the channel goes; until the writer sends it
				// there, it waits unconfirmed.
				w.s.log.Debug("pubsub command refused", "addr", w.addr, "err", err)
				w.s.readSlotsSoon()
				continue
			}
			w.s.log.Warn("pubsub connection lost", "addr", w.addr, "err", err)
			return heard
		}
		heard = true
		now := time.Now().UnixNano()
		w.lastRecv.Store(now)
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel == w.beatChannel() {
				w.lastBeat.Store(now)
				w.setHealthy(true)
				continue
			}
			if topic, ok := w.s.topicOf(m.Channel); ok {
				w.s.handler(topic, []byte(m.Payload))
			}
		case *redis.Subscription:
			w.s.confirmed(w, m)
		}
	}
}

// write sends what the subscriber's table asks of the wire.
func (w *wire) write() {
	defer w.wg.Done()
	retry := time.NewTicker(w.s.timeout)
	defer retry.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		case <-retry.C:
		}
		ps, subs, unsubs := w.s.work(w, time.Now())
		if ps == nil {
			continue
		}
		w.send(ps, unsubs, false)
		w.send(ps, subs, true)
	}
}

// work takes the wire's pending channels and returns its connection, the
// channels to subscribe there (pending ones that are on the wire and not
// subscribed yet, and those Redis has not confirmed within the timeout)
// and those to unsubscribe (pending ones that are subscribed but no longer
// on the wire). It records them as done: a send that fails is either
// followed by a new connection, which starts over, or retried as
// unconfirmed.
func (s *subscriber) work(w *wire, now time.Time) (ps *redis.PubSub, subs, unsubs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.ps == nil || w.shut {
		return nil, nil, nil
	}
	for channel := range w.pending {
		_, mine := w.topics[channel]
		switch {
		case mine && !w.sent[channel]:
			subs = append(subs, channel)
			w.sent[channel] = true
			w.waiting[channel] = now
		case !mine && w.sent[channel]:
			unsubs = append(unsubs, channel)
			delete(w.sent, channel)
			delete(w.waiting, channel)
		}
	}
	clear(w.pending)
	for channel, at := range w.waiting {
		if now.Sub(at) >= s.timeout {
			subs = append(subs, channel)
			w.waiting[channel] = now
		}
	}
	return w.ps, subs, unsubs
}

// send (un)subscribes channels on ps: on a cluster one command per hash
// slot (Redis refuses a sharded command across slots), on a single Redis
// up to a thousand channels a command.
func (w *wire) send(ps *redis.PubSub, channels []string, subscribe bool) {
	if len(channels) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.s.timeout)
	defer cancel()
	for _, group := range w.groups(channels) {
		var err error
		switch {
		case w.client != nil && subscribe:
			err = ps.SSubscribe(ctx, group...)
		case w.client != nil:
			err = ps.SUnsubscribe(ctx, group...)
		case subscribe:
			err = ps.Subscribe(ctx, group...)
		default:
			err = ps.Unsubscribe(ctx, group...)
		}
		if err != nil {
			// The receive finds the connection broken, or the
			// subscriptions are sent again as unconfirmed.
			w.s.log.Debug("pubsub command", "addr", w.addr, "subscribe", subscribe, "channels", len(group), "err", err)
			return
		}
	}
}

func (w *wire) groups(channels []string) [][]string {
	if w.client == nil {
		return slices.Collect(slices.Chunk(channels, 1000))
	}
	slot := func(c string) int { return keySlot(c) }
	slices.SortFunc(channels, func(a, b string) int { return cmp.Compare(slot(a), slot(b)) })
	var out [][]string
	for i := 0; i < len(channels); {
		j := i + 1
		for j < len(channels) && slot(channels[j]) == slot(channels[i]) {
			j++
		}
		out = append(out, channels[i:j])
		i = j
	}
	return out
}

// heartbeat publishes on the wire's heartbeat channel every interval, on a
// goroutine of its own so that a publish waiting for a silent Redis does
// not delay the monitor. On a cluster it goes through the cluster client,
// routed by slot as every publish is: the heartbeat proves the route too.
func (w *wire) heartbeat() {
	defer w.wg.Done()
	tick := time.NewTicker(w.s.hbInterval)
	defer tick.Stop()
	for n := uint64(1); ; n++ {
		if beat := w.beatChannel(); beat != "" {
			ctx, cancel := context.WithTimeout(context.Background(), w.s.timeout)
			var err error
			if w.client != nil {
				err = w.s.client.SPublish(ctx, beat, strconv.FormatUint(n, 10)).Err()
			} else {
				err = w.s.client.Publish(ctx, beat, strconv.FormatUint(n, 10)).Err()
			}
			cancel()
			if err != nil {
				w.s.log.Debug("heartbeat", "addr", w.addr, "err", err)
				w.s.readSlotsSoon() // its primary may have died
			}
		}
		select {
		case <-w.stop:
			return
		case <-tick.C:
		case <-w.beatNow:
		}
	}
}

// monitor turns the wire unhealthy when heartbeats stop coming back, and
// then replaces its connection, at most once per heartbeat timeout.
func (w *wire) monitor() {
	defer w.wg.Done()
	check := time.NewTicker(w.s.hbInterval / 10)
	defer check.Stop()
	rebuiltAt := time.Now()
	for {
		select {
		case <-w.stop:
			return
		case now := <-check.C:
			silent := now.Sub(time.Unix(0, w.lastBeat.Load()))
			if silent < w.s.hbTimeout {
				continue
			}
			w.setHealthy(false)
			if now.Sub(rebuiltAt) < w.s.hbTimeout {
				continue
			}
			// A connection that still delivers is more likely behind
			// than wedged, and a new one would drop what it holds: it
			// gets longer before it is replaced.
			idle := now.Sub(time.Unix(0, w.lastRecv.Load()))
			if idle < w.s.hbTimeout && silent < 3*w.s.hbTimeout {
				continue
			}
			w.s.log.Warn("no heartbeat: replacing the pubsub connection", "addr", w.addr,
				"silent", silent.Round(time.Millisecond), "idle", idle.Round(time.Millisecond))
			w.s.mu.Lock()
			ps := w.ps
			w.s.mu.Unlock()
			if ps != nil {
				ps.Close() // the receive fails, and run connects again
			}
			rebuiltAt = time.Now()
		}
	}
}

// setHealthy records whether the wire receives its own heartbeats.
func (w *wire) setHealthy(ok bool) {
	if w.healthy.Swap(ok) == ok {
		return
	}
	if !ok {
		select {
		case <-w.stop:
			return // shut: no fault
		default:
		}
		w.outages.Add(1)
		w.s.log.Warn("pubsub path unhealthy", "addr", w.addr)
	}
	w.s.updateHealth()
}
