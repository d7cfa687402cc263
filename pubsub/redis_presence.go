package pubsub

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Keys of presence, members and read markers, under the prefix:
//
//	{u:<uuid>}:presence  HASH  state (on, leaving), name, until (Unix ms)
//	{u:<uuid>}:read      HASH  log -> the user's read marker
//	presence:due         ZSET  uuid -> when to look at its presence again
//	{c:<channel>}:roster ZSET  "<username>\0<uuid>", score 0: members by name
//	{c:<channel>}:names  HASH  uuid -> username, for the members
//	throttle:<key>       STRING lapses when key may pass again

// sweepScript decides whether one user due for a look has gone offline:
// it has no place left and its grace is over (or its places lapsed: its
// node died). It returns {1, username} if so (and only to one caller: the
// presence is gone after), else {0, when to look again (Unix ms; 0: not
// at all, the user is offline)}. KEYS: places:{user}, presence, and
// presence:due (optional, as for acquireScript). ARGV: user.
var sweepScript = redis.NewScript(placesNow + `
local function due(at)
  if KEYS[3] then
    if at == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) else redis.call('ZADD', KEYS[3], at, ARGV[1]) end
  end
  return {0, at}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local state = redis.call('HGET', KEYS[2], 'state')
if not state then return due(0) end
if redis.call('ZCARD', KEYS[1]) > 0 then
  if state == 'leaving' then redis.call('HSET', KEYS[2], 'state', 'on') end
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  return due(tonumber(last[2]))
end
if state == 'leaving' then
  local deadline = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
  if deadline > now then return due(deadline) end
end
local name = redis.call('HGET', KEYS[2], 'name') or ''
redis.call('DEL', KEYS[2])
due(0)
return {1, name}
`)

// membersScript reads a page of a channel's roster. KEYS: channels, the
// roster. ARGV: channel, the username to list after, limit. Returns 2
// (resNotFound) if the channel does not exist, else the roster entries
// (one more than limit if more follow).
var membersScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 2 end
local from = '-'
if ARGV[2] ~= '' then from = '(' .. ARGV[2] .. '\0\255' end
return redis.call('ZRANGEBYLEX', KEYS[2], from, '+', 'LIMIT', 0, tonumber(ARGV[3]) + 1)
`)

// markReadScript moves a read marker up and publishes the notice if it
// moved. KEYS: the user's read markers. ARGV: log, seq, notice.
var markReadScript = redis.NewScript(markReadLua)

const markReadLua = `
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= cur then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
`

// SweepPresence implements Registry: the users due for a look, each
// looked at by one script.
// sweptUser reads sweepScript's answer: whether the user went offline,
// with its username, or else when to look at it again.
func sweptUser(v any) (name string, next int64, gone bool) {
	res, _ := v.([]any)
	if len(res) != 2 {
		return "", 0, false
	}
	if g, _ := res[0].(int64); g == 1 {
		name, _ = res[1].(string)
		return name, 0, true
	}
	next, _ = res[1].(int64)
	return "", next, false
}

func (r *single) SweepPresence(ctx context.Context, limit int) ([]Peer, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	// The ones whose time has come by this node's clock: Redis's decides
	// in the script.
	due, err := r.client.ZRangeArgs(rctx, redis.ZRangeArgs{
		Key: r.key("presence:due"), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("presence due: %w", r.wrap(err))
	}
	var gone []Peer
	for _, user := range due {
		v, err := r.run(ctx, sweepScript, []string{r.key("places:", user), r.userKey(user, "presence"), r.key("presence:due")}, user)
		if err != nil {
			return gone, fmt.Errorf("presence of %s: %w", user, err)
		}
		if name, _, ok := sweptUser(v); ok {
			gone = append(gone, Peer{ID: user, Username: name})
		}
	}
	return gone, nil
}

// Members implements Registry: a page of the roster, then each member's
// presence in one round trip.
func (r *single) Members(ctx context.Context, channel, after string, limit int) ([]Member, bool, error) {
	return r.members(ctx, membersScript, []string{r.key("channels"), r.logKey(channel, "roster")}, channel, after, limit)
}

// members runs a script that reads a page of channel's roster, then reads
// each member's presence.
func (r *store) members(ctx context.Context, s *redis.Script, keys []string, channel, after string, limit int) ([]Member, bool, error) {
	v, err := r.run(ctx, s, keys, channel, after, limit)
	if err != nil {
		return nil, false, fmt.Errorf("members of %s: %w", channel, err)
	}
	entries, ok := v.([]any)
	if !ok {
		if err := resultError(v); err != nil {
			return nil, false, fmt.Errorf("members of %s: %w", channel, err)
		}
		return nil, false, fmt.Errorf("members of %s: unexpected script result %v", channel, v)
	}
	more := len(entries) > limit
	entries = entries[:min(len(entries), limit)]
	members := make([]Member, 0, len(entries))
	for _, e := range entries {
		s, _ := e.(string)
		name, id, _ := strings.Cut(s, "\x00")
		members = append(members, Member{ID: id, Username: name})
	}
	if len(members) == 0 {
		return members, more, nil
	}
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmds := make([]*redis.BoolCmd, len(members))
	_, err = r.client.Pipelined(rctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			cmds[i] = p.HExists(rctx, r.userKey(m.ID, "presence"), "state")
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("presence of %s's members: %w", channel, r.wrap(err))
	}
	for i, c := range cmds {
		members[i].Online = c.Val()
	}
	return members, more, nil
}

// Sizes implements Registry with one pipeline of SCARD.
func (r *single) Sizes(ctx context.Context, channels ...string) ([]int, error) {
	return r.sizes(ctx, channels, func(ctx context.Context, p redis.Pipeliner, ch string) *redis.IntCmd {
		return p.SCard(ctx, r.key("members:", ch))
	})
}

// sizes counts each channel's members with one command each, in one
// pipeline.
func (r *store) sizes(ctx context.Context, channels []string, count func(context.Context, redis.Pipeliner, string) *redis.IntCmd) ([]int, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	out := make([]int, len(channels))
	if len(channels) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmds := make([]*redis.IntCmd, len(channels))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ch := range channels {
			cmds[i] = count(ctx, p, ch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sizes of %d channels: %w", len(channels), r.wrap(err))
	}
	for i, c := range cmds {
		out[i] = int(c.Val())
	}
	return out, nil
}

// MarkRead implements Registry.
func (r *single) MarkRead(ctx context.Context, user, log string, seq uint64, n Notice) (bool, error) {
	return r.markRead(ctx, markReadScript, user, log, seq, n)
}

func (r *store) markRead(ctx context.Context, s *redis.Script, user, log string, seq uint64, n Notice) (bool, error) {
	nc, np := r.notice(n)
	v, err := r.run(ctx, s, []string{r.userKey(user, "read")}, log, seq, nc, np)
	if err != nil {
		return false, fmt.Errorf("read marker of %s: %w", log, err)
	}
	moved, _ := v.(int64)
	return moved == 1, nil
}
