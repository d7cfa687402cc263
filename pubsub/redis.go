package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/rediserr"
)

// RedisOptions configure a Redis backend. A zero field means its default.
type RedisOptions struct {
	// Client is the connection to use. If nil, one is made from URL, with
	// the timeouts below and without retries, and closed by Close. A
	// Client given here is not closed by Close; it should have
	// ContextTimeoutEnabled set and no retries (MaxRetries -1), since a
	// retried script may run twice.
	Client *redis.Client

	// URL is the Redis to connect to when Client is nil, such as
	// redis://127.0.0.1:6379/0 (see redis.ParseURL).
	URL string

	// Prefix is put in front of every key and pub/sub channel name. If
	// empty, "chat:".
	Prefix string

	// NodeID names this node in logs and in the name of its heartbeat
	// channel. If empty, the host name.
	NodeID string

	// Handler receives the payloads of subscribed topics. If nil, they are
	// dropped.
	Handler Handler

	// Logger receives the backend's lifecycle events. If nil, nothing is
	// logged.
	Logger *slog.Logger

	// Timeout bounds every Redis command; a wait for Redis to confirm a
	// subscription gets five times as long. If zero, 1 s.
	Timeout time.Duration

	// HeartbeatInterval is how often the node publishes a heartbeat to
	// itself. If zero, 1 s.
	HeartbeatInterval time.Duration

	// HeartbeatTimeout is how long the node may go without receiving its
	// own heartbeat before it counts as unhealthy and rebuilds its pub/sub
	// connection (a connection that still delivers other payloads gets
	// three times as long before it is rebuilt). If zero, 3 s.
	HeartbeatTimeout time.Duration

	// History is the retention of stored messages.
	History HistoryOptions

	// OnHealth, if set, is called with the new value whenever Healthy
	// changes. It is called from the broker's goroutines and must not
	// block.
	OnHealth func(healthy bool)
}

// Redis is the Broker and Registry of a cluster: state lives in Redis
// (docs/cluster.md lists the keys) and every node holds one long-lived
// pub/sub connection, shared by all topics.
//
// Every change of state is one Lua script, so it is atomic in Redis. Every
// command is bounded by RedisOptions.Timeout; a Redis that cannot be
// reached or does not answer in time gives ErrUnavailable.
//
// The node proves its pub/sub path end to end: it publishes a heartbeat on
// a channel of its own and must receive it back within HeartbeatTimeout.
// If it does not, Healthy turns false and the node rebuilds its pub/sub
// connection and resubscribes every topic; Healthy turns true again at the
// next heartbeat received.
type Redis struct {
	// immutable after NewRedis
	client      *redis.Client
	ownClient   bool
	prefix      string
	topicPrefix string // prefix + "t:"
	hbChannel   string
	handler     Handler
	log         *slog.Logger
	timeout     time.Duration
	hbInterval  time.Duration
	hbTimeout   time.Duration
	onHealth    func(bool)
	history     HistoryOptions
	seed        maphash.Seed

	healthy   atomic.Bool
	outages   atomic.Uint64 // times healthy turned false, Close aside
	lastBeat  atomic.Int64  // unix nanoseconds of the last heartbeat received
	lastRecv  atomic.Int64  // unix nanoseconds of the last reply of any kind received
	stop      chan struct{} // closed by Close
	beatNow   chan struct{} // capacity 1: publish a heartbeat at once
	closeOnce sync.Once
	wg        sync.WaitGroup // the batcher, the heartbeat and the monitor
	pubs      chan *pubReq

	// topicLocks serialise Subscribe and Unsubscribe of one topic (striped
	// by hash), so that a topic's confirmations answer its own requests.
	topicLocks [64]sync.Mutex

	// psMu is held for reading by Subscribe and Unsubscribe while they use
	// ps, and for writing by rebuild and Close while they replace it.
	// Lock order: topicLocks, psMu, mu.
	psMu sync.RWMutex
	ps   *redis.PubSub // guarded by psMu
	recv *receiver     // guarded by psMu

	mu       sync.Mutex // guards the fields below
	closed   bool
	topics   map[string]*topicState // by Redis channel name, heartbeat included
	unsubbed map[string][]chan struct{}
}

type topicState struct {
	confirmed bool // Redis confirmed the subscription on the current connection
	waiters   []chan struct{}
}

// receiver is one run of the receive loop, over one PubSub.
type receiver struct {
	stop chan struct{} // closed to end the loop
	done chan struct{} // closed when the loop has ended
}

type pubReq struct {
	channel string
	more    []string // further channels, published with channel in one script
	payload []byte
	err     chan error // buffered: the batcher never waits for the caller
}

// publishAllScript publishes ARGV[1] on each channel of KEYS, in order, as
// one atomic step.
var publishAllScript = `for _, c in ipairs(KEYS) do redis.call('PUBLISH', c, ARGV[1]) end return #KEYS`

var _ Backend = (*Redis)(nil)

// Batching of publishes: the batcher sends whatever is queued (up to
// maxBatch) in one pipeline.
const (
	pubQueue = 4096
	maxBatch = 512
)

// NewRedis connects to Redis and opens the node's pub/sub connection. It
// returns once Redis has confirmed the node's heartbeat subscription, or
// with an error (ErrUnavailable) when ctx ends before. The caller must
// Close the backend.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	opts.setDefaults()
	client, own := opts.Client, false
	if client == nil {
		o, err := redis.ParseURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("pubsub: redis url: %w", err)
		}
		TuneOptions(o, opts.Timeout)
		client, own = redis.NewClient(o), true
	}
	r := &Redis{
		client:      client,
		ownClient:   own,
		prefix:      opts.Prefix,
		topicPrefix: opts.Prefix + "t:",
		// The random part keeps two nodes that share a NodeID from
		// answering each other's heartbeats.
		hbChannel:  opts.Prefix + "hb:" + opts.NodeID + ":" + randomHex(4),
		handler:    opts.Handler,
		log:        opts.Logger,
		timeout:    opts.Timeout,
		hbInterval: opts.HeartbeatInterval,
		hbTimeout:  opts.HeartbeatTimeout,
		onHealth:   opts.OnHealth,
		history:    opts.History,
		seed:       maphash.MakeSeed(),
		stop:       make(chan struct{}),
		beatNow:    make(chan struct{}, 1),
		pubs:       make(chan *pubReq, pubQueue),
		topics:     make(map[string]*topicState),
		unsubbed:   make(map[string][]chan struct{}),
	}
	r.lastBeat.Store(time.Now().UnixNano())
	r.lastRecv.Store(time.Now().UnixNano())
	r.psMu.Lock()
	r.startPubSubLocked(ctx)
	r.psMu.Unlock()
	if err := r.subscribe(ctx, r.hbChannel); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.migrate(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("pubsub: bring data of earlier versions up to date: %w", err)
	}
	r.wg.Add(3)
	go r.batcher()
	go r.heartbeat()
	go r.monitor()
	return r, nil
}

func (opts *RedisOptions) setDefaults() {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = time.Second
	}
	if opts.HeartbeatTimeout <= 0 {
		opts.HeartbeatTimeout = 3 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "chat:"
	}
	if opts.NodeID == "" {
		opts.NodeID, _ = os.Hostname()
	}
	if opts.Handler == nil {
		opts.Handler = func(string, []byte) {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.History.Limit <= 0 {
		opts.History.Limit = DefaultHistoryLimit
	}
}

// TuneOptions sets the options that the backend relies on: deadlines from
// the context, read and write timeouts of timeout, no retries (a retried
// script could run twice) and short dial and pool timeouts. Use it on the
// options of a Client passed in RedisOptions.
// A timeout of zero means 1 s.
func TuneOptions(o *redis.Options, timeout time.Duration) {
	if timeout <= 0 {
		timeout = time.Second
	}
	o.ContextTimeoutEnabled = true
	o.DialTimeout = timeout
	o.ReadTimeout = timeout
	o.WriteTimeout = timeout
	o.PoolTimeout = timeout
	o.MaxRetries = -1
}

// Publish implements Broker. Concurrent publishes are sent to Redis
// together, in one pipeline.
func (r *Redis) Publish(ctx context.Context, topic string, payload []byte) error {
	return r.publish(ctx, &pubReq{channel: r.topicPrefix + topic, payload: payload, err: make(chan error, 1)}, topic)
}

// PublishAll implements Broker: one script (EVAL, in the same pipeline as
// other publishes) publishes on every topic.
func (r *Redis) PublishAll(ctx context.Context, topics []string, payload []byte) error {
	if len(topics) == 0 {
		if r.isClosed() {
			return ErrClosed
		}
		return nil
	}
	req := &pubReq{channel: r.topicPrefix + topics[0], payload: payload, err: make(chan error, 1)}
	for _, t := range topics[1:] {
		req.more = append(req.more, r.topicPrefix+t)
	}
	name := topics[0]
	if len(topics) > 1 {
		name = fmt.Sprintf("%s and %d more", topics[0], len(topics)-1)
	}
	return r.publish(ctx, req, name)
}

// publish hands req to the batcher and waits for its outcome; topic names
// it in errors.
func (r *Redis) publish(ctx context.Context, req *pubReq, topic string) error {
	select {
	case <-r.stop:
		return ErrClosed
	default:
	}
	select {
	case r.pubs <- req:
	case <-r.stop:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("publish %q: %w: %w", topic, ErrUnavailable, ctx.Err())
	}
	select {
	case err := <-req.err:
		if err != nil {
			return fmt.Errorf("publish %q: %w", topic, err)
		}
		return nil
	case <-r.stop:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("publish %q: %w: %w", topic, ErrUnavailable, ctx.Err())
	}
}

// batcher sends queued publishes, as many as are waiting, in one pipeline
// at a time; a lone publish goes out at once.
func (r *Redis) batcher() {
	defer r.wg.Done()
	batch := make([]*pubReq, 0, maxBatch)
	cmds := make([]redis.Cmder, 0, maxBatch)
	for {
		select {
		case req := <-r.pubs:
			batch = append(batch[:0], req)
		case <-r.stop:
			r.failQueued()
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case req := <-r.pubs:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		pipe := r.client.Pipeline()
		cmds = cmds[:0]
		for _, req := range batch {
			if len(req.more) == 0 {
				cmds = append(cmds, pipe.Publish(ctx, req.channel, req.payload))
				continue
			}
			keys := append([]string{req.channel}, req.more...)
			cmds = append(cmds, pipe.Eval(ctx, publishAllScript, keys, req.payload))
		}
		_, err := pipe.Exec(ctx)
		cancel()
		for i, req := range batch {
			e := cmds[i].Err()
			if e == nil && err != nil && !rediserr.Answered(err) {
				e = err
			}
			req.err <- r.wrap(e)
			batch[i] = nil
		}
	}
}

func (r *Redis) failQueued() {
	for {
		select {
		case req := <-r.pubs:
			req.err <- ErrClosed
		default:
			return
		}
	}
}

// Subscribe implements Broker: it returns once Redis has confirmed the
// subscription on the node's pub/sub connection, or with ErrUnavailable
// when ctx ends or no confirmation came within five times
// RedisOptions.Timeout. A Subscribe that fails leaves the topic
// unsubscribed, unless it was subscribed before.
func (r *Redis) Subscribe(ctx context.Context, topic string) error {
	if err := r.subscribe(ctx, r.topicPrefix+topic); err != nil {
		return fmt.Errorf("subscribe %q: %w", topic, err)
	}
	return nil
}

func (r *Redis) subscribe(ctx context.Context, channel string) error {
	tl := r.topicLock(channel)
	tl.Lock()
	defer tl.Unlock()
	r.psMu.RLock()
	defer r.psMu.RUnlock()

	st, wait, fresh, err := r.want(channel)
	if err != nil || st == nil {
		return err // closed, or confirmed already
	}
	ctx, cancel := context.WithTimeout(ctx, r.confirmTimeout())
	defer cancel()
	if fresh {
		// A topic that is already wanted but not yet confirmed (a
		// reconnection is under way, or an earlier Subscribe gave up)
		// needs no second SUBSCRIBE: the connection subscribes every
		// wanted topic when it comes up.
		wctx, wcancel := context.WithTimeout(ctx, r.timeout)
		err = r.ps.Subscribe(wctx, channel)
		wcancel()
	}
	if err == nil {
		select {
		case <-wait:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		case <-r.stop:
			return ErrClosed
		}
	}
	r.giveUp(channel, st, wait, fresh)
	return fmt.Errorf("%w: no confirmation: %w", ErrUnavailable, err)
}

// want records that channel is wanted and returns its state and a wait
// that Redis's confirmation closes, and whether the channel is new to the
// broker. It returns a nil state if the channel is confirmed already.
// The caller holds the topic's lock and psMu for reading.
func (r *Redis) want(channel string) (st *topicState, wait chan struct{}, fresh bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, false, ErrClosed
	}
	st, ok := r.topics[channel]
	if ok && st.confirmed {
		return nil, nil, false, nil
	}
	if !ok {
		st = &topicState{}
		r.topics[channel] = st
	}
	wait = make(chan struct{})
	st.waiters = append(st.waiters, wait)
	return st, wait, !ok, nil
}

// giveUp forgets a Subscribe's wait that no confirmation ended. A channel
// that this Subscribe added is dropped again, so that a failed Subscribe
// leaves no subscription behind (the UNSUBSCRIBE is only sent: Redis may
// not be answering). A channel that was wanted before (a reconnection is
// under way) stays: others rely on it.
func (r *Redis) giveUp(channel string, st *topicState, wait chan struct{}, fresh bool) {
	r.mu.Lock()
	st.waiters = slices.DeleteFunc(st.waiters, func(w chan struct{}) bool { return w == wait })
	drop := fresh && len(st.waiters) == 0 && r.topics[channel] == st
	if drop {
		delete(r.topics, channel)
	}
	r.mu.Unlock()
	if drop {
		uctx, ucancel := context.WithTimeout(context.Background(), r.timeout)
		r.ps.Unsubscribe(uctx, channel)
		ucancel()
	}
}

// Unsubscribe implements Broker. It waits (as Subscribe does) for Redis to
// confirm; payloads published before that may still arrive. It fails only
// after Close: when Redis does not answer, the topic is forgotten anyway
// and no reconnection subscribes it again.
func (r *Redis) Unsubscribe(ctx context.Context, topic string) error {
	channel := r.topicPrefix + topic
	tl := r.topicLock(channel)
	tl.Lock()
	defer tl.Unlock()
	r.psMu.RLock()
	defer r.psMu.RUnlock()

	wait, err := r.unwant(channel)
	if err != nil || wait == nil {
		return err // closed, or not subscribed
	}
	ctx, cancel := context.WithTimeout(ctx, r.confirmTimeout())
	defer cancel()
	// go-redis forgets the channel even when the command fails, so a
	// reconnection will not subscribe it again.
	wctx, wcancel := context.WithTimeout(ctx, r.timeout)
	err = r.ps.Unsubscribe(wctx, channel)
	wcancel()
	if err == nil {
		// Waiting for the confirmation makes sure that no confirmation of
		// an earlier SUBSCRIBE of this topic is still on its way, which a
		// later Subscribe would take for its own.
		select {
		case <-wait:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		case <-r.stop:
			return ErrClosed
		}
	}
	r.mu.Lock()
	if ws := slices.DeleteFunc(r.unsubbed[channel], func(w chan struct{}) bool { return w == wait }); len(ws) > 0 {
		r.unsubbed[channel] = ws
	} else {
		delete(r.unsubbed, channel)
	}
	r.mu.Unlock()
	// The topic is forgotten either way: no reconnection subscribes it
	// again, and if the old connection still delivers it, the handler
	// gets a topic it no longer needs, which it must tolerate.
	r.log.Debug("unsubscribe not confirmed", "topic", topic, "err", err)
	return nil
}

// unwant forgets channel and returns a wait that Redis's confirmation of
// the UNSUBSCRIBE closes, or nil if the channel was not wanted. The caller
// holds the topic's lock and psMu for reading.
func (r *Redis) unwant(channel string) (chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.topics[channel]; !ok {
		return nil, nil
	}
	delete(r.topics, channel)
	wait := make(chan struct{})
	r.unsubbed[channel] = append(r.unsubbed[channel], wait)
	return wait, nil
}

// confirmTimeout bounds the wait for Redis to confirm a (un)subscription.
// The confirmation comes on the pub/sub connection behind whatever is
// being delivered, so it gets more time than a command.
func (r *Redis) confirmTimeout() time.Duration { return 5 * r.timeout }

func (r *Redis) topicLock(channel string) *sync.Mutex {
	return &r.topicLocks[maphash.String(r.seed, channel)%uint64(len(r.topicLocks))]
}

// Subscribers implements Broker with one PUBSUB NUMSUB: every node holds
// one pub/sub connection, so subscribers are nodes.
func (r *Redis) Subscribers(ctx context.Context, topics ...string) ([]int, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if len(topics) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	channels := make([]string, len(topics))
	for i, t := range topics {
		channels[i] = r.topicPrefix + t
	}
	byChannel, err := r.client.PubSubNumSub(ctx, channels...).Result()
	if err != nil {
		return nil, fmt.Errorf("subscribers of %d topics (%q...): %w", len(topics), topics[0], r.wrap(err))
	}
	counts := make([]int, len(topics))
	for i, c := range channels {
		counts[i] = int(byChannel[c])
	}
	return counts, nil
}

// Healthy implements Broker: true while the node receives its own
// heartbeats.
func (r *Redis) Healthy() bool { return r.healthy.Load() }

// Outages implements Broker: how many times Healthy turned false.
func (r *Redis) Outages() uint64 { return r.outages.Load() }

func (r *Redis) setHealthy(ok bool) {
	if r.healthy.Swap(ok) != ok {
		if ok {
			r.log.Info("pubsub healthy")
		} else {
			r.outages.Add(1)
			r.log.Warn("pubsub unhealthy")
		}
		if r.onHealth != nil {
			r.onHealth(ok)
		}
	}
}

// startPubSubLocked opens a new PubSub that wants every topic in r.topics
// and starts its receive loop. r.psMu must be held for writing.
func (r *Redis) startPubSubLocked(ctx context.Context) {
	r.mu.Lock()
	channels := make([]string, 0, len(r.topics))
	for ch, st := range r.topics {
		st.confirmed = false
		channels = append(channels, ch)
	}
	r.mu.Unlock()
	ps := r.client.Subscribe(ctx)
	if len(channels) > 0 {
		// If Redis cannot be reached now, the PubSub keeps the channels
		// and subscribes them when its receive loop connects.
		ctx, cancel := context.WithTimeout(ctx, r.timeout)
		if err := ps.Subscribe(ctx, channels...); err != nil {
			r.log.Debug("resubscribe", "topics", len(channels), "err", err)
		}
		cancel()
	}
	rc := &receiver{stop: make(chan struct{}), done: make(chan struct{})}
	r.ps, r.recv = ps, rc
	go r.receive(ps, rc)
}

// stopPubSubLocked closes the PubSub and waits for its receive loop.
// r.psMu must be held for writing.
func (r *Redis) stopPubSubLocked() {
	if r.ps == nil {
		return
	}
	close(r.recv.stop)
	r.ps.Close() // unblocks the receive loop's read
	<-r.recv.done
	r.ps, r.recv = nil, nil
}

// receive is the only caller of the Handler while ps is current: payloads
// reach it in the order in which Redis sent them.
func (r *Redis) receive(ps *redis.PubSub, rc *receiver) {
	defer close(rc.done)
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(context.Background())
		if err != nil {
			select {
			case <-rc.stop:
				return
			default:
			}
			// go-redis reconnects and resubscribes on the next Receive;
			// until Redis confirms again, no topic counts as subscribed.
			r.connectionLost(err)
			select {
			case <-rc.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		r.lastRecv.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel == r.hbChannel {
				r.lastBeat.Store(time.Now().UnixNano())
				r.setHealthy(true)
				continue
			}
			topic, ok := strings.CutPrefix(m.Channel, r.topicPrefix)
			if ok {
				r.handler(topic, []byte(m.Payload))
			}
		case *redis.Subscription:
			r.confirm(m)
		}
	}
}

func (r *Redis) connectionLost(err error) {
	r.setHealthy(false)
	r.mu.Lock()
	for _, st := range r.topics {
		st.confirmed = false
	}
	r.mu.Unlock()
	r.log.Warn("pubsub connection lost", "err", err)
}

func (r *Redis) confirm(s *redis.Subscription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch s.Kind {
	case "subscribe":
		if st, ok := r.topics[s.Channel]; ok {
			st.confirmed = true
			for _, w := range st.waiters {
				close(w)
			}
			st.waiters = nil
		}
		if s.Channel == r.hbChannel {
			// The path works again (or for the first time): prove it now,
			// not at the next tick, so that Healthy (and /readyz) does
			// not lag behind delivery.
			select {
			case r.beatNow <- struct{}{}:
			default:
			}
		}
	case "unsubscribe":
		// The confirmation of an UNSUBSCRIBE sent after a failed
		// Subscribe may come after the topic was wanted again.
		if st, ok := r.topics[s.Channel]; ok {
			st.confirmed = false
		}
		if ws, ok := r.unsubbed[s.Channel]; ok {
			close(ws[0])
			if len(ws) == 1 {
				delete(r.unsubbed, s.Channel)
			} else {
				r.unsubbed[s.Channel] = ws[1:]
			}
		}
	}
}

// heartbeat publishes the node's heartbeat every interval, on a goroutine
// of its own so that a publish waiting for a silent Redis does not delay
// the monitor.
func (r *Redis) heartbeat() {
	defer r.wg.Done()
	tick := time.NewTicker(r.hbInterval)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		err := r.client.Publish(ctx, r.hbChannel, strconv.FormatUint(seq, 10)).Err()
		cancel()
		if err != nil {
			r.log.Debug("heartbeat", "err", err)
		}
		select {
		case <-r.stop:
			return
		case <-tick.C:
		case <-r.beatNow:
		}
	}
}

// monitor turns Healthy false when heartbeats stop coming back, and then
// rebuilds the pub/sub connection, at most once per HeartbeatTimeout.
func (r *Redis) monitor() {
	defer r.wg.Done()
	check := time.NewTicker(r.hbInterval / 10)
	defer check.Stop()
	rebuiltAt := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case now := <-check.C:
			silent := now.Sub(time.Unix(0, r.lastBeat.Load()))
			if silent < r.hbTimeout {
				continue
			}
			r.setHealthy(false)
			if now.Sub(rebuiltAt) < r.hbTimeout {
				continue
			}
			// A connection that still delivers is more likely behind
			// than wedged, and a rebuild would drop what it holds: it
			// gets longer before it is replaced.
			idle := now.Sub(time.Unix(0, r.lastRecv.Load()))
			if idle < r.hbTimeout && silent < 3*r.hbTimeout {
				continue
			}
			r.log.Warn("no heartbeat: rebuilding the pubsub connection",
				"silent", silent.Round(time.Millisecond), "idle", idle.Round(time.Millisecond))
			r.rebuild()
			rebuiltAt = time.Now()
		}
	}
}

// rebuild replaces the pub/sub connection by a new one that subscribes
// every wanted topic.
func (r *Redis) rebuild() {
	r.psMu.Lock()
	defer r.psMu.Unlock()
	if r.isClosed() {
		return
	}
	r.stopPubSubLocked()
	r.startPubSubLocked(context.Background())
}

// Close implements Broker: it stops the heartbeat, the batcher and the
// receive loop, waits for them, and closes the client if NewRedis made it.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.stop)
		r.wg.Wait()
		r.psMu.Lock()
		r.stopPubSubLocked()
		r.psMu.Unlock()
		// Not a fault: no warning, but Healthy and OnHealth say false.
		if r.healthy.Swap(false) && r.onHealth != nil {
			r.onHealth(false)
		}
		if r.ownClient {
			r.client.Close()
		}
	})
	return nil
}

func (r *Redis) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// wrap turns a go-redis error into one of ours: a failure to reach Redis
// in time is ErrUnavailable; an error that Redis itself returned (a bug in
// a script, say) is passed on.
func (r *Redis) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.ErrClosed) && r.isClosed() {
		return ErrClosed
	}
	if !rediserr.Unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
