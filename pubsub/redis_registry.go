package pubsub

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Keys of the registry, under the prefix (docs/cluster.md):
//
//	channels          SET   every channel
//	owner             HASH  channel -> owner's UUID
//	owned:{user}      SET   the channels user owns
//	members:{channel} SET   the UUIDs of channel's members
//	joined:{user}     SET   the channels user is a member of
//	places:{user}     ZSET  conn -> lapses at (Unix ms, Redis's clock)
//	rate:{user}       STRING the user's rate bucket: when it is full again
//	                  (Unix µs, Redis's clock); gone once it is
//
// A script touches keys that it derives from the prefix (a member's
// joined set), so this layout needs a single Redis (or a primary with
// replicas); a Redis Cluster has its own (cluster.go).

// single is the key layout of a single Redis: every change of state is
// one script, whatever keys it touches.
type single struct {
	*store
}

// Script results: 0 is success, the rest map to the registry's errors.
const (
	resOK = iota
	resExists
	resNotFound
	resForbidden
	resNotMember
	resTooMany
	resAlready
)

// Scripts that change the registry publish their notice (ARGV: the
// pub/sub channel, or '' for none, then the payload) as their last step,
// so the event goes out if and only if the change was made.

// createScript: SADD decides who created the channel.
// KEYS: channels, owner, owned:{owner}. ARGV: channel, owner, notice.
var createScript = redis.NewScript(`
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 0
`)

// destroyScript removes the channel, its owner, every membership and its
// stored messages (not its seq: the numbering goes on) in one step, and
// returns {0, members}.
// KEYS: channels, owner, members:{channel}, the channel's log, roster
// and names. ARGV: channel, by, prefix, notice.
var destroyScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return {2} end
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if owner ~= ARGV[2] then return {3} end
local members = redis.call('SMEMBERS', KEYS[3])
for _, u in ipairs(members) do
  redis.call('SREM', ARGV[3] .. 'joined:' .. u, ARGV[1])
  redis.call('HDEL', ARGV[3] .. '{u:' .. u .. '}:read', ARGV[1])
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', ARGV[3] .. 'owned:' .. owner, ARGV[1])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return {0, members}
`)

// joinScript. KEYS: channels, members:{channel}, joined:{user}, the
// channel's roster (ZSET "<username>\0<uuid>" for listing members by
// name) and names (HASH uuid -> username). ARGV: channel, user, username.
var joinScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 2 end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 6 end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[3] .. '\0' .. ARGV[2])
return 0
`)

// leaveScript. KEYS as joinScript's, then the user's read markers. ARGV:
// channel, user, notice.
var leaveScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 2 end
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return 4 end
redis.call('SREM', KEYS[3], ARGV[1])
local name = redis.call('HGET', KEYS[5], ARGV[2])
if name then redis.call('ZREM', KEYS[4], name .. '\0' .. ARGV[2]) end
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('HDEL', KEYS[6], ARGV[1])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 0
`)

// checkScript. KEYS: channels, members:{channel}. ARGV: channel, user.
var checkScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 2 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 then return 4 end
return 0
`)

// Places are scored by the time they lapse, on Redis's clock, so that the
// nodes' clocks do not matter. The key lapses with its last place.
const placesNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

const placesExpire = `
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', key, last[2]) end
`

// The presence of a user (HASH {u:<uuid>}:presence: state on or leaving,
// name, and while leaving until, when the grace ends) says whether it is
// online; presence:due (ZSET uuid -> Unix ms) says when SweepPresence must
// look at it again: when its last place lapses, or its grace ends.

// acquireScript drops lapsed places and takes one if the user holds fewer
// than limit (or already holds this one). The user is online from then
// on; it came online if its presence was absent (not in the grace).
// KEYS: places:{user}, the user's presence, and presence:due (on a
// cluster, where it lives in another slot, none: the caller sees to it).
// ARGV: conn, limit, ttl in ms, user, username. Returns {0, came online}
// or 5.
var acquireScript = redis.NewScript(placesNow + `
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, ARGV[1]) and redis.call('ZCARD', key) >= tonumber(ARGV[2]) then
  return 5
end
redis.call('ZADD', key, now + tonumber(ARGV[3]), ARGV[1])
` + placesExpire + `
local online = 0
if redis.call('HGET', KEYS[2], 'state') == false then online = 1 end
redis.call('HSET', KEYS[2], 'state', 'on', 'name', ARGV[5])
if KEYS[3] then redis.call('ZADD', KEYS[3], last[2], ARGV[4]) end
return {0, online}
`)

// refreshScript sets the places of many users to lapse ttl from now, and
// their presence to be looked at then. KEYS: presence:due, then places:{user}
// for each user. ARGV: ttl in ms, then for each user its id, the number
// of its conns and the conns.
var refreshScript = redis.NewScript(placesNow + `
local expiry = now + tonumber(ARGV[1])
local a = 2
for k = 2, #KEYS do
  local key = KEYS[k]
  local user, n = ARGV[a], tonumber(ARGV[a + 1])
  for i = a + 2, a + 1 + n do
    redis.call('ZADD', key, 'XX', expiry, ARGV[i])
  end
  a = a + n + 2
` + placesExpire + `
  if last[2] then redis.call('ZADD', KEYS[1], 'GT', last[2], user) end
end
return 0
`)

// releaseScript frees a place; if it was the user's last, the user is
// leaving: offline once grace has passed without a new place, which it
// returns (Unix ms; 0 if the user stays online).
// KEYS: places:{user}, the user's presence, presence:due (optional, as
// for acquireScript). ARGV: conn, grace in ms, user.
var releaseScript = redis.NewScript(placesNow + `
local key = KEYS[1]
redis.call('ZREM', key, ARGV[1])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) == 0 and redis.call('HGET', KEYS[2], 'state') == 'on' then
  local deadline = now + tonumber(ARGV[2])
  redis.call('HSET', KEYS[2], 'state', 'leaving', 'until', deadline)
  if KEYS[3] then redis.call('ZADD', KEYS[3], deadline, ARGV[3]) end
  return deadline
end
return 0
`)

// CreateChannel implements Registry.
func (r *single) CreateChannel(ctx context.Context, channel, owner string, n Notice) error {
	nc, np := r.notice(n)
	v, err := r.run(ctx, createScript,
		[]string{r.key("channels"), r.key("owner"), r.key("owned:", owner)}, channel, owner, nc, np)
	if err == nil {
		err = resultError(v)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", channel, err)
	}
	return nil
}

// DestroyChannel implements Registry.
func (r *single) DestroyChannel(ctx context.Context, channel, by string, n Notice) ([]string, error) {
	nc, np := r.notice(n)
	v, err := r.run(ctx, destroyScript,
		[]string{r.key("channels"), r.key("owner"), r.key("members:", channel), r.logKey(channel, "log"),
			r.logKey(channel, "roster"), r.logKey(channel, "names")}, channel, by, r.prefix, nc, np)
	if err != nil {
		return nil, fmt.Errorf("destroy %s: %w", channel, err)
	}
	res, _ := v.([]any)
	if len(res) == 0 {
		return nil, fmt.Errorf("destroy %s: unexpected script result %v", channel, v)
	}
	if err := resultError(res[0]); err != nil {
		return nil, fmt.Errorf("destroy %s: %w", channel, err)
	}
	members := []string{}
	if len(res) > 1 {
		list, _ := res[1].([]any)
		for _, m := range list {
			if s, ok := m.(string); ok {
				members = append(members, s)
			}
		}
	}
	slices.Sort(members)
	return members, nil
}

// Join implements Registry.
func (r *single) Join(ctx context.Context, channel string, user Peer) (bool, error) {
	v, err := r.run(ctx, joinScript, r.membershipKeys(channel, user.ID), channel, user.ID, user.Username)
	if err == nil {
		err = resultError(v)
	}
	if err != nil {
		return false, fmt.Errorf("join %s: %w", channel, err)
	}
	return v.(int64) == resOK, nil
}

// membershipKeys are the keys of user's membership of channel, in the
// order joinScript and leaveScript take them.
func (r *single) membershipKeys(channel, user string) []string {
	return []string{r.key("channels"), r.key("members:", channel), r.key("joined:", user),
		r.logKey(channel, "roster"), r.logKey(channel, "names")}
}

// Leave implements Registry.
func (r *single) Leave(ctx context.Context, channel, user string, n Notice) error {
	nc, np := r.notice(n)
	v, err := r.run(ctx, leaveScript, append(r.membershipKeys(channel, user), r.userKey(user, "read")), channel, user, nc, np)
	if err == nil {
		err = resultError(v)
	}
	if err != nil {
		return fmt.Errorf("leave %s: %w", channel, err)
	}
	return nil
}

// CheckMember implements Registry.
func (r *single) CheckMember(ctx context.Context, channel, user string) error {
	v, err := r.run(ctx, checkScript, []string{r.key("channels"), r.key("members:", channel)}, channel, user)
	if err != nil {
		return fmt.Errorf("check %s: %w", channel, err)
	}
	return resultError(v)
}

// Channels implements Registry.
func (r *single) Channels(ctx context.Context) ([]string, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	out, err := r.client.SMembers(ctx, r.key("channels")).Result()
	if err != nil {
		return nil, fmt.Errorf("channels: %w", r.wrap(err))
	}
	slices.Sort(out)
	return out, nil
}

// Memberships implements Registry. Both sets are read in one transaction.
func (r *single) Memberships(ctx context.Context, user string) (joined, owned []string, err error) {
	if r.isClosed() {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var j, o *redis.StringSliceCmd
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		j = p.SMembers(ctx, r.key("joined:", user))
		o = p.SMembers(ctx, r.key("owned:", user))
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("memberships: %w", r.wrap(err))
	}
	joined, owned = j.Val(), o.Val()
	slices.Sort(joined)
	slices.Sort(owned)
	return joined, owned, nil
}

// Joined implements Registry with one pipeline of SMEMBERS.
func (r *single) Joined(ctx context.Context, users ...string) ([][]string, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if len(users) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmds := make([]*redis.StringSliceCmd, len(users))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range users {
			cmds[i] = p.SMembers(ctx, r.key("joined:", u))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("joined of %d users: %w", len(users), r.wrap(err))
	}
	out := make([][]string, len(users))
	for i, c := range cmds {
		out[i] = c.Val()
		slices.Sort(out[i])
	}
	return out, nil
}

// AcquirePlace implements Registry. Places lapse on Redis's clock.
func (r *single) AcquirePlace(ctx context.Context, user Peer, conn string, limit int, ttl time.Duration) (bool, error) {
	v, err := r.run(ctx, acquireScript, []string{r.key("places:", user.ID), r.userKey(user.ID, "presence"), r.key("presence:due")},
		conn, limit, ttlMillis(ttl), user.ID, user.Username)
	return acquired(v, err)
}

// acquired reads acquireScript's answer: whether the user came online.
func acquired(v any, err error) (bool, error) {
	if err != nil {
		return false, fmt.Errorf("acquire place: %w", err)
	}
	if res, ok := v.([]any); ok && len(res) == 2 {
		online, _ := res[1].(int64)
		return online == 1, nil
	}
	if err := resultError(v); err != nil {
		return false, fmt.Errorf("acquire place: %w", err)
	}
	return false, fmt.Errorf("acquire place: unexpected script result %v", v)
}

// RefreshPlaces implements Registry, in one script for all users.
func (r *single) RefreshPlaces(ctx context.Context, places map[string][]string, ttl time.Duration) error {
	if len(places) == 0 {
		return nil
	}
	keys := make([]string, 0, 1+len(places))
	keys = append(keys, r.key("presence:due"))
	args := []any{ttlMillis(ttl)}
	for user, conns := range places {
		keys = append(keys, r.key("places:", user))
		args = append(args, user, len(conns))
		for _, c := range conns {
			args = append(args, c)
		}
	}
	if _, err := r.run(ctx, refreshScript, keys, args...); err != nil {
		return fmt.Errorf("refresh places: %w", err)
	}
	return nil
}

// ReleasePlace implements Registry.
func (r *single) ReleasePlace(ctx context.Context, user, conn string, grace time.Duration) error {
	if _, err := r.run(ctx, releaseScript, []string{r.key("places:", user), r.userKey(user, "presence"), r.key("presence:due")},
		conn, ttlMillis(grace), user); err != nil {
		return fmt.Errorf("release place: %w", err)
	}
	return nil
}
