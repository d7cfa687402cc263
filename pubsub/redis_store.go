package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/rediserr"
)

// store is what the parts of the Redis backend share: the client, the
// names of keys and channels, the deadline of a command. Its methods are
// those that read or write one hash slot the same way on a single Redis
// and on a cluster.
type store struct {
	client  redis.UniversalClient
	cluster bool // client is a Redis Cluster's
	prefix  string
	timeout time.Duration
	history HistoryOptions
	log     *slog.Logger
	closed  atomic.Bool
}

func (r *store) isClosed() bool { return r.closed.Load() }

// channelOf is the pub/sub channel of a broker topic: on a cluster the
// topic is the channel's hash tag, so that a channel's topic ("c:#go")
// lives in the slot of the channel's keys and a user's ("u:<uuid>") in
// the slot of the user's, and a script can publish where it writes.
func (r *store) channelOf(topic string) string {
	if r.cluster {
		return r.prefix + "{" + topic + "}"
	}
	return r.prefix + "t:" + topic
}

// topicOf is the broker topic of a pub/sub channel, if it is one.
func (r *store) topicOf(channel string) (string, bool) {
	rest, ok := strings.CutPrefix(channel, r.prefix)
	if !ok {
		return "", false
	}
	if r.cluster {
		rest, ok = strings.CutPrefix(rest, "{")
		if ok {
			rest, ok = strings.CutSuffix(rest, "}")
		}
		return rest, ok
	}
	return strings.CutPrefix(rest, "t:")
}

// wrap turns a go-redis error into one of ours: a failure to reach Redis
// in time is ErrUnavailable; an error that Redis itself returned (a bug in
// a script, say) is passed on.
func (r *store) wrap(err error) error {
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

func (r *store) key(parts ...string) string {
	k := r.prefix
	for _, p := range parts {
		k += p
	}
	return k
}

// run runs a script with the backend's deadline.
func (r *store) run(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := s.Run(ctx, r.client, keys, args...).Result()
	return v, r.wrap(err)
}

// notice returns a Notice's script arguments: its pub/sub channel (empty
// for none) and payload.
func (r *store) notice(n Notice) (string, []byte) {
	if n.Topic == "" {
		return "", []byte{}
	}
	return r.channelOf(n.Topic), n.Payload
}

func resultError(v any) error {
	n, _ := v.(int64)
	switch n {
	case resOK, resAlready:
		return nil
	case resExists:
		return ErrExists
	case resNotFound:
		return ErrNotFound
	case resForbidden:
		return ErrForbidden
	case resNotMember:
		return ErrNotMember
	case resTooMany:
		return ErrTooManySessions
	}
	return fmt.Errorf("pubsub: unexpected script result %v", v)
}

// Allow implements Registry with allowScript, on Redis's clock.
func (r *store) Allow(ctx context.Context, user string, rate float64, burst int) (bool, error) {
	// At least 1 µs between requests: the script counts in whole µs.
	v, err := r.run(ctx, allowScript, []string{r.key("rate:", user)}, max(1e6/rate, 1), burst)
	if err != nil {
		return false, fmt.Errorf("rate of %s: %w", user, err)
	}
	n, _ := v.(int64)
	return n == 1, nil
}

// Ping implements Registry.
func (r *store) Ping(ctx context.Context) error {
	if r.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.wrap(r.client.Ping(ctx).Err())
}

func ttlMillis(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// allowScript is the generic cell rate algorithm: the key holds the
// theoretical arrival time (TAT) of the next request; a request is allowed
// if, after it, the TAT is at most burst intervals ahead of now.
// KEYS: rate:{user}. ARGV: interval between requests in µs, burst.
var allowScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + interval
if tat - now > interval * tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 1
`)

// logTag is the hash tag of log's keys: a channel's is c:<channel>, a
// conversation's its own name.
func logTag(log string) string {
	if strings.HasPrefix(log, "#") {
		return "c:" + log
	}
	return log
}

func (r *store) logKey(log, suffix string) string {
	return r.prefix + "{" + logTag(log) + "}:" + suffix
}

func (r *store) idemKey(log string, m Message) string {
	if m.ID == "" {
		return ""
	}
	return r.logKey(log, "idem:"+m.From+":"+m.ID)
}

func (r *store) convsKey(user string) string { return r.prefix + "{u:" + user + "}:convs" }

// storeArgs are the store step's arguments for m.
func (r *store) storeArgs(m Message) []any {
	return []any{m.Head, r.history.Limit, r.history.TTL.Milliseconds(), IdempotencyWindow.Milliseconds()}
}

func (r *store) channels(topics []string) []any {
	out := make([]any, len(topics))
	for i, t := range topics {
		out[i] = r.channelOf(t)
	}
	return out
}

func (r *store) runStored(ctx context.Context, s *redis.Script, keys []string, args []any) (Stored, error) {
	v, err := r.run(ctx, s, keys, args...)
	if err != nil {
		return Stored{}, err
	}
	res, _ := v.([]any)
	if len(res) == 0 {
		return Stored{}, fmt.Errorf("pubsub: unexpected script result %v", v)
	}
	if err := resultError(res[0]); err != nil {
		return Stored{}, err
	}
	if len(res) != 3 {
		return Stored{}, fmt.Errorf("pubsub: unexpected script result %v", v)
	}
	seq, _ := res[1].(int64)
	dup, _ := res[2].(int64)
	return Stored{Seq: uint64(seq), Duplicate: dup == 1}, nil
}

// Range implements History.
func (r *store) Range(ctx context.Context, log string, q Query) (Page, error) {
	if err := q.check(); err != nil {
		return Page{}, err
	}
	mode, n := "newest", uint64(0)
	switch {
	case q.FromAfter:
		mode, n = "after", q.After
	case q.Before > 0:
		mode, n = "before", q.Before
	}
	v, err := r.run(ctx, rangeScript, []string{r.logKey(log, "log"), r.logKey(log, "seq")}, mode, n, q.Limit, r.history.TTL.Milliseconds())
	if err != nil {
		return Page{}, fmt.Errorf("history of %s: %w", log, err)
	}
	res, _ := v.([]any)
	if len(res) < 2 || len(res)%2 != 0 {
		return Page{}, fmt.Errorf("history of %s: unexpected script result %v", log, v)
	}
	first, _ := res[0].(int64)
	more, _ := res[1].(int64)
	p := Page{First: uint64(first), More: more == 1, Messages: make([]Entry, 0, len(res)/2-1)}
	for i := 2; i < len(res); i += 2 {
		seq, _ := res[i].(int64)
		frame, _ := res[i+1].(string)
		p.Messages = append(p.Messages, Entry{Seq: uint64(seq), Frame: []byte(frame)})
	}
	return p, nil
}

// Epoch implements History.
func (r *store) Epoch(ctx context.Context) (string, error) {
	v, err := r.run(ctx, epochScript, []string{r.key("epoch")}, randomHex(8))
	if err != nil {
		return "", fmt.Errorf("epoch: %w", err)
	}
	e, _ := v.(string)
	return e, nil
}

// epochScript returns the epoch, minting ARGV[1] if there is none.
var epochScript = redis.NewScript(`
local e = redis.call('GET', KEYS[1])
if e then return e end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`)

func (r *store) userKey(user, suffix string) string {
	return r.prefix + "{u:" + user + "}:" + suffix
}

// Throttle implements Registry with SET NX PX.
func (r *store) Throttle(ctx context.Context, key string, every time.Duration) (bool, error) {
	if r.isClosed() {
		return false, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ok, err := r.client.SetNX(ctx, r.key("throttle:", key), 1, every).Result()
	if err != nil {
		return false, fmt.Errorf("throttle %s: %w", key, r.wrap(err))
	}
	return ok, nil
}
