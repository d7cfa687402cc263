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

// History keys, under the prefix, each log's in one hash slot (its tag in
// braces: c:#go for a channel, d:<uuid>:<uuid> for a conversation):
//
//	{tag}:seq           STRING the log's last seq; never deleted, so the
//	                    numbering goes on after a destroy
//	{tag}:log           STREAM the stored messages, entry ID <seq>-0,
//	                    fields f (the frame) and t (Unix ms, Redis's clock)
//	{tag}:idem:<u>:<id> STRING the seq of user u's message with request id
//	                    id; lapses after IdempotencyWindow
//	{u:<uuid>}:convs    ZSET   the user's recent conversations: "<peer's
//	                    uuid> <peer's username>" -> last activity (Unix ms)
//	epoch               STRING the store's epoch
//
// The message scripts append the store step below to the membership check
// (a channel) or the index update (a conversation), and publish last: a
// message is stored if and only if it is published.

// storeLua stores a message: KEYS[seq], KEYS[log] and, if the message has
// an id, KEYS[idem] (an empty name or none otherwise: a Redis Cluster
// refuses an empty key name, which is in another slot); ARGV from a: the frame's
// head, the log's limit, the TTL in ms (0: none), the idempotency window
// in ms. It returns seq, frame, and whether the message repeated an id
// (then nothing was stored).
const storeLua = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- trim_expired drops the entries of log older than oldest (ms).
local function trim_expired(log, oldest)
  for _ = 1, 100 do
    local head = redis.call('XRANGE', log, '-', '+', 'COUNT', 100)
    local cut = nil
    for _, e in ipairs(head) do
      if tonumber(e[2][4]) > oldest then break end
      cut = seq_of(e[1])
    end
    if not cut then return end
    redis.call('XTRIM', log, 'MINID', (cut + 1) .. '-0')
    if #head < 100 then return end
  end
end

local function store(seq_key, log_key, idem_key, a)
  if idem_key == '' then idem_key = nil end
  if idem_key then
    local prev = redis.call('GET', idem_key)
    if prev then return tonumber(prev), nil, 1 end
  end
  local seq = redis.call('INCR', seq_key)
  local frame = ARGV[a] .. ',"seq":' .. seq .. '}'
  local now = now_ms()
  redis.call('XADD', log_key, 'MAXLEN', ARGV[a + 1], seq .. '-0', 'f', frame, 't', now)
  local ttl = tonumber(ARGV[a + 2])
  if ttl > 0 then
    trim_expired(log_key, now - ttl)
    redis.call('PEXPIRE', log_key, ttl)
  end
  if idem_key then
    redis.call('SET', idem_key, seq, 'PX', ARGV[a + 3])
  end
  return seq, frame, 0
end

-- publish sends prefix, seq, a newline and the frame on ARGV[from..].
local function publish(prefix, seq, frame, from)
  local payload = prefix .. seq .. '\n' .. frame
  for i = from, #ARGV do redis.call('PUBLISH', ARGV[i], payload) end
end
`

// publishMessageScript: KEYS: channels, members:{channel}, seq, log, idem.
// ARGV: channel, user, head, limit, ttl, window, prefix, then the pub/sub
// channels.
var publishMessageScript = redis.NewScript(storeLua + `
-- A repeat is answered first: its message was stored while the sender
-- was a member, whatever happened since.
if KEYS[5] and KEYS[5] ~= '' then
  local prev = redis.call('GET', KEYS[5])
  if prev then return {0, tonumber(prev), 1} end
end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return {2} end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 then return {4} end
local seq, frame, dup = store(KEYS[3], KEYS[4], KEYS[5], 3)
if dup == 0 then publish(ARGV[7], seq, frame, 8) end
return {0, seq, dup}
`)

// touchLua makes member the most recent of the index key: its score is the
// time, or one more than the newest if that is not later (two messages in
// one millisecond).
const touchLua = `
local function touch(key, member, now, size)
  local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  local score = now
  if top[2] and tonumber(top[2]) >= now then score = tonumber(top[2]) + 1 end
  redis.call('ZADD', key, score, member)
  redis.call('ZREMRANGEBYRANK', key, 0, -1 - size)
end
`

// publishDirectScript: KEYS: seq, log, idem, convs of the sender, convs of
// the recipient. ARGV: head, limit, ttl, window, the sender's entry in the
// recipient's index, the recipient's entry in the sender's, the index's
// size, prefix, then the pub/sub channels.
var publishDirectScript = redis.NewScript(storeLua + touchLua + `
local seq, frame, dup = store(KEYS[1], KEYS[2], KEYS[3], 1)
if dup == 0 then
  local now = now_ms()
  touch(KEYS[4], ARGV[6], now, tonumber(ARGV[7]))
  if KEYS[5] ~= KEYS[4] then touch(KEYS[5], ARGV[5], now, tonumber(ARGV[7])) end
  publish(ARGV[8], seq, frame, 9)
end
return {0, seq, dup}
`)

// rangeScript reads a page of a log. KEYS: log, seq. ARGV: mode (newest,
// before, after), n, limit, ttl. Returns first, more (0 or 1), then seq
// and frame of each message, oldest first.
var rangeScript = redis.NewScript(storeLua + `
local log, limit = KEYS[1], tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 then trim_expired(log, now_ms() - ttl) end
local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
local first
if #oldest == 0 then
  first = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
else
  first = seq_of(oldest[1][1])
end
local e
if ARGV[1] == 'after' then
  e = redis.call('XRANGE', log, '(' .. ARGV[2] .. '-0', '+', 'COUNT', limit + 1)
elseif ARGV[1] == 'before' then
  e = redis.call('XREVRANGE', log, '(' .. ARGV[2] .. '-0', '-', 'COUNT', limit + 1)
else
  e = redis.call('XREVRANGE', log, '+', '-', 'COUNT', limit + 1)
end
local more = 0
if #e > limit then more = 1; e[limit + 1] = nil end
local out = {first, more}
local from, to, step = 1, #e, 1
if ARGV[1] ~= 'after' then from, to, step = #e, 1, -1 end
for i = from, to, step do
  out[#out + 1] = seq_of(e[i][1])
  out[#out + 1] = e[i][2][2]
end
return out
`)

// latestScript returns, for each log in KEYS (the log, then its seq key),
// its newest unexpired seq (0: none) and the last seq given (0: none).
// ARGV: ttl.
var latestScript = redis.NewScript(storeLua + newestLua + `
local out = {}
for i = 1, #KEYS, 2 do
  out[i], out[i + 1] = newest(KEYS[i], KEYS[i + 1], tonumber(ARGV[1]))
end
return out
`)

// newestLua: newest returns the newest unexpired seq of a log (0: none)
// and the last seq given (0: none), from the log and its seq key.
const newestLua = `
local function newest(log, seq_key, ttl)
  local e = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  local latest = 0
  if #e > 0 and (ttl == 0 or tonumber(e[1][2][4]) > now_ms() - ttl) then latest = seq_of(e[1][1]) end
  return latest, tonumber(redis.call('GET', seq_key) or '0')
end
`

// PublishMessage implements Registry with one script: the membership check,
// the store step and the publish.
func (r *single) PublishMessage(ctx context.Context, channel string, m Message) (Stored, error) {
	keys := []string{r.key("channels"), r.key("members:", channel), r.logKey(channel, "seq"), r.logKey(channel, "log"), r.idemKey(channel, m)}
	args := append([]any{channel, m.From}, r.storeArgs(m)...)
	args = append(append(args, m.Prefix), r.channels(m.Topics)...)
	st, err := r.runStored(ctx, publishMessageScript, keys, args)
	if err != nil {
		return Stored{}, fmt.Errorf("publish to %s: %w", channel, err)
	}
	return st, nil
}

// PublishDirect implements Registry with one script: the store step, the
// conversation indexes of both users and the publish.
func (r *single) PublishDirect(ctx context.Context, from, to Peer, m Message) (Stored, error) {
	log := Conversation(from.ID, to.ID)
	keys := []string{r.logKey(log, "seq"), r.logKey(log, "log"), r.idemKey(log, m), r.convsKey(from.ID), r.convsKey(to.ID)}
	args := append(r.storeArgs(m), from.ID+" "+from.Username, to.ID+" "+to.Username, RecentConversations, m.Prefix)
	st, err := r.runStored(ctx, publishDirectScript, keys, append(args, r.channels(m.Topics)...))
	if err != nil {
		return Stored{}, fmt.Errorf("publish to @%s: %w", to.Username, err)
	}
	return st, nil
}

// Latest implements History.
func (r *single) Latest(ctx context.Context, logs ...string) ([]uint64, error) {
	latest, _, err := r.newest(ctx, logs)
	return latest, err
}

// Last implements History.
func (r *single) Last(ctx context.Context, logs ...string) ([]uint64, error) {
	_, last, err := r.newest(ctx, logs)
	return last, err
}

// newest returns the newest stored and the last given seq of each of logs,
// with one script (on a single Redis; on Redis Cluster, one per slot).
func (r *single) newest(ctx context.Context, logs []string) (latest, last []uint64, err error) {
	latest, last = make([]uint64, len(logs)), make([]uint64, len(logs))
	if len(logs) == 0 {
		return latest, last, nil
	}
	keys := make([]string, 0, 2*len(logs))
	for _, log := range logs {
		keys = append(keys, r.logKey(log, "log"), r.logKey(log, "seq"))
	}
	v, err := r.run(ctx, latestScript, keys, r.history.TTL.Milliseconds())
	if err != nil {
		return nil, nil, fmt.Errorf("newest of %d logs: %w", len(logs), err)
	}
	res, _ := v.([]any)
	if len(res) != len(keys) {
		return nil, nil, fmt.Errorf("newest of %d logs: unexpected script result %v", len(logs), v)
	}
	for i := range logs {
		n, _ := res[2*i].(int64)
		g, _ := res[2*i+1].(int64)
		latest[i], last[i] = uint64(n), uint64(g)
	}
	return latest, last, nil
}

// View implements Registry: the memberships, the recent conversations and
// the epoch in one round trip, then the newest seq of each in another.
func (r *single) View(ctx context.Context, user string) (View, error) {
	if r.isClosed() {
		return View{}, ErrClosed
	}
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var joined, owned, convs *redis.StringSliceCmd
	var epoch *redis.StringCmd
	var read *redis.MapStringStringCmd
	_, err := r.client.Pipelined(rctx, func(p redis.Pipeliner) error {
		joined = p.SMembers(rctx, r.key("joined:", user))
		owned = p.SMembers(rctx, r.key("owned:", user))
		convs = p.ZRevRange(rctx, r.convsKey(user), 0, RecentConversations-1)
		read = p.HGetAll(rctx, r.userKey(user, "read"))
		epoch = p.Get(rctx, r.key("epoch"))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return View{}, fmt.Errorf("view of %s: %w", user, r.wrap(err))
	}
	v := View{Joined: joined.Val(), Owned: owned.Val(), Peers: []Peer{}, Latest: make(map[string]uint64),
		Last: make(map[string]uint64), Read: make(map[string]uint64), Epoch: epoch.Val()}
	markers := read.Val()
	if v.Epoch == "" { // a store never used, or one that lost its data
		if v.Epoch, err = r.Epoch(ctx); err != nil {
			return View{}, err
		}
	}
	slices.Sort(v.Joined)
	slices.Sort(v.Owned)
	logs := append([]string(nil), v.Joined...)
	for _, c := range convs.Val() {
		id, name, _ := strings.Cut(c, " ")
		v.Peers = append(v.Peers, Peer{ID: id, Username: name})
		logs = append(logs, Conversation(user, id))
	}
	latest, last, err := r.newest(ctx, logs)
	if err != nil {
		return View{}, err
	}
	for i, log := range logs {
		if latest[i] > 0 {
			v.Latest[log] = latest[i]
		}
		if last[i] > 0 {
			v.Last[log] = last[i]
		}
		if m, err := strconv.ParseUint(markers[log], 10, 64); err == nil && m > 0 {
			v.Read[log] = m
		}
	}
	return v, nil
}
