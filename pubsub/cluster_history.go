package pubsub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// clusterPublishMessageScript: the membership check against the truth, the
// store step and the publish, in the channel's slot. KEYS: meta, members,
// seq, log, and idem if the message has an id. ARGV: user, head, limit,
// ttl, window, prefix, then the pub/sub channels (of the slot).
var clusterPublishMessageScript = shardedScript(storeLua + `
local idem = KEYS[5]
if idem then
  local prev = redis.call('GET', idem)
  if prev then return {0, tonumber(prev), 1} end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return {4} end
local seq, frame, dup = store(KEYS[3], KEYS[4], idem, 2)
if dup == 0 then publish(ARGV[6], seq, frame, 7) end
return {0, seq, dup}
`)

// storeDirectScript stores a private message in its conversation's slot.
// KEYS: seq, log, and idem if the message has an id. ARGV: head, limit,
// ttl, window. Returns {0, seq, dup, the stored frame} (the frame of a
// repeat is the first one's, if it is still stored).
var storeDirectScript = redis.NewScript(storeLua + `
local seq, frame, dup = store(KEYS[1], KEYS[2], KEYS[3], 1)
if dup == 1 then
  local e = redis.call('XRANGE', KEYS[2], seq .. '-0', seq .. '-0')
  if #e > 0 then frame = e[1][2][2] else frame = '' end
end
return {0, seq, dup, frame}
`)

// deliverDirectScript makes a conversation the user's most recent and
// publishes the message on the user's channels, in the user's slot.
// KEYS: the user's conversations. ARGV: the peer's entry, the index's
// size, the payload, then the pub/sub channels.
var deliverDirectScript = redis.NewScript(nowLua + touchLua + `
touch(KEYS[1], ARGV[1], now, tonumber(ARGV[2]))
for i = 4, #ARGV do redis.call('SPUBLISH', ARGV[i], ARGV[3]) end
return 0
`)

// channelViewScript reads what a user's index says of a channel from the
// truth: the gen of the user's membership (false: none), the owner and
// the channel's gen (false: no channel), and the log's newest and last
// seq. KEYS: meta, members, log, seq. ARGV: user, ttl.
var channelViewScript = redis.NewScript(storeLua + newestLua + `
local latest, last = newest(KEYS[3], KEYS[4], tonumber(ARGV[2]))
local meta = redis.call('HMGET', KEYS[1], 'owner', 'gen')
return {redis.call('HGET', KEYS[2], ARGV[1]), meta[1], meta[2], latest, last}
`)

// membersOfScript returns the gen of the membership of each user (false:
// none). KEYS: members. ARGV: users.
var membersOfScript = redis.NewScript(`return redis.call('HMGET', KEYS[1], unpack(ARGV))`)

// split returns, of m's topics, the pub/sub channels in key's slot and
// the others.
func (r *sharded) split(topics []string, key string) (in []any, out []string) {
	slot := keySlot(key)
	for _, t := range topics {
		if c := r.channelOf(t); keySlot(c) == slot {
			in = append(in, c)
		} else {
			out = append(out, c)
		}
	}
	return in, out
}

// PublishMessage implements Registry: one script in the channel's slot.
func (r *sharded) PublishMessage(ctx context.Context, channel string, m Message) (Stored, error) {
	keys := []string{r.metaKey(channel), r.membersKey(channel), r.logKey(channel, "seq"), r.logKey(channel, "log")}
	if m.ID != "" {
		keys = append(keys, r.idemKey(channel, m))
	}
	in, out := r.split(m.Topics, keys[0])
	args := append([]any{m.From}, r.storeArgs(m)...)
	args = append(append(args, m.Prefix), in...)
	st, err := r.runStored(ctx, clusterPublishMessageScript, keys, args)
	if err != nil {
		return Stored{}, fmt.Errorf("publish to %s: %w", channel, err)
	}
	if !st.Duplicate {
		for _, c := range out {
			r.publishAfter(ctx, c, m.payload(st.Seq, m.frame(st.Seq)))
		}
	}
	return st, nil
}

// PublishDirect implements Registry in two steps: the store in the
// conversation's slot, then each user's index and topic in the user's
// slot. A repeat (the same id) runs the second step again, in case the
// first attempt stopped before it.
func (r *sharded) PublishDirect(ctx context.Context, from, to Peer, m Message) (Stored, error) {
	log := Conversation(from.ID, to.ID)
	keys := []string{r.logKey(log, "seq"), r.logKey(log, "log")}
	if m.ID != "" {
		keys = append(keys, r.idemKey(log, m))
	}
	v, err := r.run(ctx, storeDirectScript, keys, r.storeArgs(m)...)
	if err != nil {
		return Stored{}, fmt.Errorf("publish to @%s: %w", to.Username, err)
	}
	code, rest := result(v)
	if code != resOK || len(rest) != 3 {
		return Stored{}, fmt.Errorf("publish to @%s: unexpected script result %v", to.Username, v)
	}
	seq, _ := rest[0].(int64)
	dup, _ := rest[1].(int64)
	frame, _ := rest[2].(string)
	st := Stored{Seq: uint64(seq), Duplicate: dup == 1}
	if frame == "" {
		return st, nil // a repeat of a message no longer stored
	}
	payload := m.payload(st.Seq, []byte(frame))
	type side struct{ user, peer Peer }
	sides := []side{{from, to}}
	if to.ID != from.ID { // not a message to oneself
		sides = append(sides, side{to, from})
	}
	var calls []call
	topics := m.Topics
	for _, u := range sides {
		convs := r.convsKey(u.user.ID)
		in, _ := r.split(topics, convs)
		topics = slices.DeleteFunc(slices.Clone(topics), func(t string) bool { return keySlot(r.channelOf(t)) == keySlot(convs) })
		args := append([]any{u.peer.ID + " " + u.peer.Username, RecentConversations, payload}, in...)
		calls = append(calls, call{deliverDirectScript, []string{convs}, args})
	}
	if _, err := r.runAll(ctx, calls); err != nil {
		// Stored: the receivers find it when the next message shows the
		// gap, or in history; the sender's retry delivers it again.
		r.log.Warn("private message stored, its delivery failed", "log", log, "seq", st.Seq, "err", err)
		return st, nil
	}
	for _, t := range topics {
		r.publishAfter(ctx, r.channelOf(t), payload)
	}
	return st, nil
}

// Latest implements History: one script per hash slot, in one pipeline.
func (r *sharded) Latest(ctx context.Context, logs ...string) ([]uint64, error) {
	latest, _, err := r.newest(ctx, logs)
	return latest, err
}

// Last implements History, as Latest.
func (r *sharded) Last(ctx context.Context, logs ...string) ([]uint64, error) {
	_, last, err := r.newest(ctx, logs)
	return last, err
}

func (r *sharded) newest(ctx context.Context, logs []string) (latest, last []uint64, err error) {
	latest, last = make([]uint64, len(logs)), make([]uint64, len(logs))
	if len(logs) == 0 {
		return latest, last, nil
	}
	bySlot := make(map[int][]int) // slot -> indexes into logs
	var slots []int
	for i, log := range logs {
		s := keySlot(r.logKey(log, "log"))
		if _, ok := bySlot[s]; !ok {
			slots = append(slots, s)
		}
		bySlot[s] = append(bySlot[s], i)
	}
	calls := make([]call, len(slots))
	for j, s := range slots {
		keys := make([]string, 0, 2*len(bySlot[s]))
		for _, i := range bySlot[s] {
			keys = append(keys, r.logKey(logs[i], "log"), r.logKey(logs[i], "seq"))
		}
		calls[j] = call{latestScript, keys, []any{r.history.TTL.Milliseconds()}}
	}
	cmds, err := r.runAll(ctx, calls)
	if err != nil {
		return nil, nil, fmt.Errorf("newest of %d logs: %w", len(logs), err)
	}
	for j, s := range slots {
		res, err := cmds[j].Slice()
		if err != nil || len(res) != 2*len(bySlot[s]) {
			return nil, nil, fmt.Errorf("newest of %d logs: unexpected script result %v, %v", len(logs), res, err)
		}
		for k, i := range bySlot[s] {
			n, _ := res[2*k].(int64)
			g, _ := res[2*k+1].(int64)
			latest[i], last[i] = uint64(n), uint64(g)
		}
	}
	return latest, last, nil
}

// verified is what a user's indexes say once checked against the truth.
type verified struct {
	joined, owned []string
	latest, last  map[string]uint64 // of the joined channels
	read          map[string]string
	peers         []string // the conversations index, newest first
	epoch         string
}

// verify reads a user's indexes and checks each entry against the truth,
// with the newest seqs of the channels in the same round trip, and repairs
// what is stale (a failure between the steps of a change leaves it).
func (r *sharded) verify(ctx context.Context, user string) (verified, error) {
	if r.isClosed() {
		return verified{}, ErrClosed
	}
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	joinedKey, ownedKey, readKey := r.userKey(user, "joined"), r.userKey(user, "owned"), r.userKey(user, "read")
	var joined, owned, read *redis.MapStringStringCmd
	var convs *redis.StringSliceCmd
	var epoch *redis.StringCmd
	_, err := r.client.Pipelined(rctx, func(p redis.Pipeliner) error {
		joined = p.HGetAll(rctx, joinedKey)
		owned = p.HGetAll(rctx, ownedKey)
		read = p.HGetAll(rctx, readKey)
		convs = p.ZRevRange(rctx, r.convsKey(user), 0, RecentConversations-1)
		epoch = p.Get(rctx, r.key("epoch"))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return verified{}, r.wrap(err)
	}
	v := verified{latest: make(map[string]uint64), last: make(map[string]uint64), read: read.Val(), peers: convs.Val(), epoch: epoch.Val()}
	js, os := joined.Val(), owned.Val()
	channels := make([]string, 0, len(js)+len(os))
	for ch := range js {
		channels = append(channels, ch)
	}
	for ch := range os {
		if _, ok := js[ch]; !ok {
			channels = append(channels, ch)
		}
	}
	slices.Sort(channels)
	calls := make([]call, len(channels))
	for i, ch := range channels {
		calls[i] = call{channelViewScript, []string{r.metaKey(ch), r.membersKey(ch), r.logKey(ch, "log"), r.logKey(ch, "seq")},
			[]any{user, r.history.TTL.Milliseconds()}}
	}
	cmds, err := r.runAll(ctx, calls)
	if err != nil {
		return verified{}, err
	}
	var fixJoined, fixOwned []any
	for i, ch := range channels {
		res, err := cmds[i].Slice()
		if err != nil || len(res) != 5 {
			return verified{}, fmt.Errorf("the truth of %s: unexpected script result %v, %v", ch, res, err)
		}
		token, _ := res[0].(string)
		owner, _ := res[1].(string)
		gen, _ := res[2].(string)
		if entry, ok := js[ch]; ok {
			if token != "" {
				v.joined = append(v.joined, ch)
				n, _ := res[3].(int64)
				g, _ := res[4].(int64)
				v.latest[ch], v.last[ch] = uint64(n), uint64(g)
			}
			if entry != token {
				fixJoined = append(fixJoined, ch, entry, token)
			}
		}
		if entry, ok := os[ch]; ok {
			right := ""
			if owner == user {
				v.owned = append(v.owned, ch)
				right = gen
			}
			if entry != right {
				fixOwned = append(fixOwned, ch, entry, right)
			}
		}
	}
	r.fix(ctx, user, []string{joinedKey, readKey}, fixJoined)
	r.fix(ctx, user, []string{ownedKey}, fixOwned)
	if v.epoch == "" { // a store never used, or one that lost its data
		if v.epoch, err = r.Epoch(ctx); err != nil {
			return verified{}, err
		}
	}
	return v, nil
}

// fix repairs index entries (triples of channel, entry read, right entry).
// A failure only leaves them for the next reader.
func (r *sharded) fix(ctx context.Context, user string, keys []string, triples []any) {
	if len(triples) == 0 {
		return
	}
	if _, err := r.run(ctx, indexFixScript, keys, triples...); err != nil {
		r.log.Debug("repair an index", "user", user, "key", keys[0], "err", err)
	}
}

// Memberships implements Registry, from the user's indexes checked
// against the truth.
func (r *sharded) Memberships(ctx context.Context, user string) (joined, owned []string, err error) {
	v, err := r.verify(ctx, user)
	if err != nil {
		return nil, nil, fmt.Errorf("memberships: %w", err)
	}
	return orEmpty(v.joined), orEmpty(v.owned), nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// View implements Registry: the user's indexes, the epoch and the
// conversations in one round trip, then the truth of every channel with
// its newest seqs, and the newest seqs of the conversations, in another.
func (r *sharded) View(ctx context.Context, user string) (View, error) {
	v, err := r.verify(ctx, user)
	if err != nil {
		return View{}, fmt.Errorf("view of %s: %w", user, err)
	}
	view := View{Joined: orEmpty(v.joined), Owned: orEmpty(v.owned), Peers: []Peer{}, Latest: make(map[string]uint64),
		Last: make(map[string]uint64), Read: make(map[string]uint64), Epoch: v.epoch}
	logs := make([]string, 0, len(v.peers))
	for _, c := range v.peers {
		id, name, _ := strings.Cut(c, " ")
		view.Peers = append(view.Peers, Peer{ID: id, Username: name})
		logs = append(logs, Conversation(user, id))
	}
	latest, last, err := r.newest(ctx, logs)
	if err != nil {
		return View{}, err
	}
	for i, log := range logs {
		v.latest[log], v.last[log] = latest[i], last[i]
	}
	for _, log := range append(slices.Clone(view.Joined), logs...) {
		if n := v.latest[log]; n > 0 {
			view.Latest[log] = n
		}
		if n := v.last[log]; n > 0 {
			view.Last[log] = n
		}
		if m, err := strconv.ParseUint(v.read[log], 10, 64); err == nil && m > 0 {
			view.Read[log] = m
		}
	}
	return view, nil
}

// Joined implements Registry: every user's index in one round trip, then
// one script per channel that checks all its users against the truth.
func (r *sharded) Joined(ctx context.Context, users ...string) ([][]string, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if len(users) == 0 {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	indexes := make([]*redis.MapStringStringCmd, len(users))
	_, err := r.client.Pipelined(rctx, func(p redis.Pipeliner) error {
		for i, u := range users {
			indexes[i] = p.HGetAll(rctx, r.userKey(u, "joined"))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("joined of %d users: %w", len(users), r.wrap(err))
	}
	byChannel := make(map[string][]int) // channel -> indexes into users
	var channels []string
	for i, c := range indexes {
		for ch := range c.Val() {
			if _, ok := byChannel[ch]; !ok {
				channels = append(channels, ch)
			}
			byChannel[ch] = append(byChannel[ch], i)
		}
	}
	calls := make([]call, len(channels))
	for j, ch := range channels {
		args := make([]any, len(byChannel[ch]))
		for k, i := range byChannel[ch] {
			args[k] = users[i]
		}
		calls[j] = call{membersOfScript, []string{r.membersKey(ch)}, args}
	}
	cmds, err := r.runAll(ctx, calls)
	if err != nil {
		return nil, fmt.Errorf("joined of %d users: %w", len(users), err)
	}
	out := make([][]string, len(users))
	fixes := make([][]any, len(users))
	for j, ch := range channels {
		tokens, err := cmds[j].Slice()
		if err != nil || len(tokens) != len(byChannel[ch]) {
			return nil, fmt.Errorf("joined: the truth of %s: unexpected script result %v, %v", ch, tokens, err)
		}
		for k, i := range byChannel[ch] {
			token, _ := tokens[k].(string)
			if token != "" {
				out[i] = append(out[i], ch)
			}
			if entry := indexes[i].Val()[ch]; entry != token {
				fixes[i] = append(fixes[i], ch, entry, token)
			}
		}
	}
	for i, u := range users {
		r.fix(ctx, u, []string{r.userKey(u, "joined"), r.userKey(u, "read")}, fixes[i])
		out[i] = orEmpty(out[i])
		slices.Sort(out[i])
	}
	return out, nil
}
