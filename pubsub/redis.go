package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/rediserr"
)

// RedisOptions configure a Redis backend. A zero field means its default.
type RedisOptions struct {
	// Client is the connection to use: a *redis.Client for a single
	// Redis, a *redis.ClusterClient for a Redis Cluster. If nil, one is
	// made from URL (NewClient) and closed by Close. A Client given here
	// is not closed by Close; it should have ContextTimeoutEnabled set and
	// no retries (MaxRetries -1), since a retried script may run twice
	// (TuneOptions).
	Client redis.UniversalClient

	// URL is the Redis to connect to when Client is nil, such as
	// redis://127.0.0.1:6379/0 or redis+cluster://10.0.0.1:6379/ (see
	// NewClient).
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

// Redis is the Backend of a cluster of nodes: state lives in Redis
// (docs/cluster.md lists the keys), on a single Redis (with replicas, if
// any) or on a Redis Cluster, and every node holds long-lived pub/sub
// connections, shared by all topics: one to a single Redis, one to each
// primary of a cluster (sharded pub/sub).
//
// On a single Redis every change of state is one Lua script, atomic in
// Redis. On a cluster every step is one script in one hash slot, and a
// change that spans slots is steps in a set order, with the state that
// decides in one slot and what is derived from it repaired after a
// failure between them (cluster.go). Every command is bounded by
// RedisOptions.Timeout; a Redis that cannot be reached or does not answer
// in time gives ErrUnavailable.
//
// The node proves each pub/sub connection end to end: it publishes a
// heartbeat on a channel of its own there and must receive it back within
// HeartbeatTimeout. If it does not, Healthy turns false and the node
// replaces the connection and subscribes its topics again; Healthy turns
// true again once every connection hears its heartbeat.
type Redis struct {
	*store   // what both layouts share
	keyspace // the Registry and History of the layout: single or sharded
	sub      *subscriber

	ownClient bool
	stop      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // the batcher
	pubs      chan *pubReq
}

// keyspace is what a key layout implements: single (a single Redis) or
// sharded (a Redis Cluster).
type keyspace interface {
	CreateChannel(ctx context.Context, channel, owner string, n Notice) error
	DestroyChannel(ctx context.Context, channel, by string, n Notice) ([]string, error)
	Join(ctx context.Context, channel string, user Peer) (bool, error)
	Leave(ctx context.Context, channel, user string, n Notice) error
	Members(ctx context.Context, channel, after string, limit int) ([]Member, bool, error)
	CheckMember(ctx context.Context, channel, user string) error
	PublishMessage(ctx context.Context, channel string, m Message) (Stored, error)
	PublishDirect(ctx context.Context, from, to Peer, m Message) (Stored, error)
	Sizes(ctx context.Context, channels ...string) ([]int, error)
	Channels(ctx context.Context) ([]string, error)
	Memberships(ctx context.Context, user string) (joined, owned []string, err error)
	View(ctx context.Context, user string) (View, error)
	Joined(ctx context.Context, users ...string) ([][]string, error)
	AcquirePlace(ctx context.Context, user Peer, conn string, limit int, ttl time.Duration) (bool, error)
	RefreshPlaces(ctx context.Context, places map[string][]string, ttl time.Duration) error
	ReleasePlace(ctx context.Context, user, conn string, grace time.Duration) error
	SweepPresence(ctx context.Context, limit int) ([]Peer, error)
	MarkRead(ctx context.Context, user, log string, seq uint64, n Notice) (bool, error)
	Latest(ctx context.Context, logs ...string) ([]uint64, error)
	Last(ctx context.Context, logs ...string) ([]uint64, error)
}

type pubReq struct {
	channels []string // published in order, in one script where Redis allows
	payload  []byte
	err      chan error // buffered: the batcher never waits for the caller
}

// publishAllScript publishes ARGV[1] on each channel of KEYS, in order, as
// one atomic step; shardedPublishAllScript does it with SPUBLISH, for
// channels of one hash slot.
var (
	publishAllScript        = `for _, c in ipairs(KEYS) do redis.call('PUBLISH', c, ARGV[1]) end return #KEYS`
	shardedPublishAllScript = `for _, c in ipairs(KEYS) do redis.call('SPUBLISH', c, ARGV[1]) end return #KEYS`
)

var _ Backend = (*Redis)(nil)

// Batching of publishes: the batcher sends whatever is queued (up to
// maxBatch) in one pipeline.
const (
	pubQueue = 4096
	maxBatch = 512
)

// NewRedis connects to Redis (a single Redis or a Redis Cluster: see
// NewClient) and opens the node's pub/sub connections. It returns once
// Redis has confirmed the heartbeat subscription of every one, or with an
// error (ErrUnavailable) when ctx ends before. The caller must Close the
// backend.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	opts.setDefaults()
	client, own := opts.Client, false
	if client == nil {
		c, err := NewClient(opts.URL, opts.Timeout)
		if err != nil {
			return nil, fmt.Errorf("pubsub: redis url: %w", err)
		}
		client, own = c, true
	}
	_, cluster := client.(*redis.ClusterClient)
	if cluster && strings.ContainsAny(opts.Prefix, "{}") {
		if own {
			client.Close()
		}
		return nil, fmt.Errorf("pubsub: a key prefix on a Redis Cluster must not hold braces (%q): they would choose the hash slot", opts.Prefix)
	}
	st := &store{client: client, cluster: cluster, prefix: opts.Prefix, timeout: opts.Timeout, history: opts.History, log: opts.Logger}
	r := &Redis{
		store:     st,
		ownClient: own,
		stop:      make(chan struct{}),
		pubs:      make(chan *pubReq, pubQueue),
	}
	if cluster {
		r.keyspace = newSharded(st)
	} else {
		r.keyspace = &single{store: st}
	}
	sub, err := newSubscriber(ctx, subscriberOptions{
		client: client, prefix: opts.Prefix, nodeID: opts.NodeID, topicOf: st.topicOf, handler: opts.Handler,
		log: opts.Logger, timeout: opts.Timeout, interval: opts.HeartbeatInterval, deadline: opts.HeartbeatTimeout,
		onHealth: opts.OnHealth,
	})
	if err != nil {
		if own {
			client.Close()
		}
		return nil, err
	}
	r.sub = sub
	if s, ok := r.keyspace.(*single); ok {
		if err := s.migrate(ctx); err != nil {
			r.Close()
			return nil, fmt.Errorf("pubsub: bring data of earlier versions up to date: %w", err)
		}
	}
	r.wg.Add(1)
	go r.batcher()
	if s, ok := r.keyspace.(*sharded); ok {
		s.background(r.stop, &r.wg)
	}
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
// together, in one pipeline (on a cluster, one per primary).
func (r *Redis) Publish(ctx context.Context, topic string, payload []byte) error {
	return r.publish(ctx, &pubReq{channels: []string{r.channelOf(topic)}, payload: payload, err: make(chan error, 1)}, topic)
}

// PublishAll implements Broker: one script (EVAL, in the same pipeline as
// other publishes) publishes on every topic. On a cluster, topics of more
// than one hash slot are published one after the other, each atomic on
// its own (Redis runs no script across slots).
func (r *Redis) PublishAll(ctx context.Context, topics []string, payload []byte) error {
	if len(topics) == 0 {
		if r.isClosed() {
			return ErrClosed
		}
		return nil
	}
	req := &pubReq{channels: make([]string, len(topics)), payload: payload, err: make(chan error, 1)}
	for i, t := range topics {
		req.channels[i] = r.channelOf(t)
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
	var cmds []redis.Cmder
	ends := make([]int, 0, maxBatch) // where each request's commands end in cmds
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
		cmds, ends = cmds[:0], ends[:0]
		for _, req := range batch {
			cmds = r.publishCmds(ctx, pipe, req, cmds)
			ends = append(ends, len(cmds))
		}
		_, err := pipe.Exec(ctx)
		cancel()
		from := 0
		for i, req := range batch {
			var e error
			for _, c := range cmds[from:ends[i]] {
				if e = c.Err(); e != nil {
					break
				}
			}
			from = ends[i]
			if e == nil && err != nil && !rediserr.Answered(err) {
				e = err
			}
			req.err <- r.wrap(e)
			batch[i] = nil
		}
	}
}

// publishCmds queues the commands of req on pipe and appends them to cmds.
func (r *Redis) publishCmds(ctx context.Context, pipe redis.Pipeliner, req *pubReq, cmds []redis.Cmder) []redis.Cmder {
	one := len(req.channels) == 1
	if !r.cluster {
		if one {
			return append(cmds, pipe.Publish(ctx, req.channels[0], req.payload))
		}
		return append(cmds, pipe.Eval(ctx, publishAllScript, req.channels, req.payload))
	}
	if one {
		return append(cmds, pipe.SPublish(ctx, req.channels[0], req.payload))
	}
	slot := keySlot(req.channels[0])
	for _, c := range req.channels[1:] {
		if keySlot(c) != slot {
			for _, c := range req.channels {
				cmds = append(cmds, pipe.SPublish(ctx, c, req.payload))
			}
			return cmds
		}
	}
	return append(cmds, pipe.Eval(ctx, shardedPublishAllScript, req.channels, req.payload))
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
// subscription on the node's pub/sub connection (on a cluster, the one to
// the primary that serves the topic's slot), or with ErrUnavailable when
// ctx ends or no confirmation came within five times
// RedisOptions.Timeout. A Subscribe that fails leaves the topic
// unsubscribed, unless it was subscribed before.
func (r *Redis) Subscribe(ctx context.Context, topic string) error {
	if err := r.sub.subscribe(ctx, r.channelOf(topic)); err != nil {
		return fmt.Errorf("subscribe %q: %w", topic, err)
	}
	return nil
}

// Unsubscribe implements Broker. It waits (as Subscribe does) for Redis to
// confirm; payloads published before that may still arrive. It fails only
// after Close: when Redis does not answer, the topic is forgotten anyway
// and no reconnection subscribes it again.
func (r *Redis) Unsubscribe(ctx context.Context, topic string) error {
	return r.sub.unsubscribe(ctx, r.channelOf(topic))
}

// Subscribers implements Broker with one PUBSUB NUMSUB (on a cluster, one
// PUBSUB SHARDNUMSUB per primary): every node holds one pub/sub connection
// to each Redis it uses, so subscribers are nodes.
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
		channels[i] = r.channelOf(t)
	}
	counts, err := r.sub.subscribers(ctx, channels)
	if err != nil {
		return nil, fmt.Errorf("subscribers of %d topics (%q...): %w", len(topics), topics[0], r.wrap(err))
	}
	return counts, nil
}

// Healthy implements Broker: true while every pub/sub connection of the
// node receives its own heartbeats.
func (r *Redis) Healthy() bool { return r.sub.healthy.Load() }

// Outages implements Broker: how many times a pub/sub connection turned
// unhealthy, or Redis dropped subscriptions, or they moved to another
// primary of a cluster.
func (r *Redis) Outages() uint64 { return r.sub.outages() }

// Close implements Broker: it stops the batcher and the pub/sub
// connections, waits for their goroutines, and closes the client if
// NewRedis made it.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		close(r.stop)
		r.wg.Wait()
		r.sub.close()
		if r.ownClient {
			r.client.Close()
		}
	})
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
