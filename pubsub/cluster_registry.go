package pubsub

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Scripts of the truth, in a channel's slot. KEYS (truthKeys): meta, gen,
// members, roster, names, log. Each change takes the next gen.

// createTruthScript. ARGV: owner. Returns {0, gen} or {1} (exists).
var createTruthScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
local g = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'gen', g)
return {0, g}
`)

// destroyTruthScript removes the channel, its members and its stored
// messages (not its seq: the numbering goes on). ARGV: by. Returns
// {0, gen, members}, {2} or {3}.
var destroyTruthScript = redis.NewScript(`
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return {2} end
if owner ~= ARGV[1] then return {3} end
local members = redis.call('HKEYS', KEYS[3])
local g = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return {0, g, members}
`)

// joinTruthScript. ARGV: user, username. Returns {0, gen} (joined),
// {6, gen of the join} (a member already) or {2}.
var joinTruthScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
local token = redis.call('HGET', KEYS[3], ARGV[1])
if token then return {6, tonumber(token)} end
local g = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], ARGV[1], g)
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], 0, ARGV[2] .. '\0' .. ARGV[1])
return {0, g}
`)

// leaveTruthScript. ARGV: user, the notice's channel (” for none) and
// payload. Returns {0, gen}, {2} or {4}.
var leaveTruthScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return {4} end
local g = redis.call('INCR', KEYS[2])
local name = redis.call('HGET', KEYS[5], ARGV[1])
if name then redis.call('ZREM', KEYS[4], name .. '\0' .. ARGV[1]) end
redis.call('HDEL', KEYS[5], ARGV[1])
if ARGV[2] ~= '' then redis.call('SPUBLISH', ARGV[2], ARGV[3]) end
return {0, g}
`)

// checkTruthScript. KEYS: meta, members. ARGV: user.
var checkTruthScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 4 end
return 0
`)

// clusterMembersScript is membersScript with the truth's existence.
// KEYS: meta, roster.
var clusterMembersScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end
local from = '-'
if ARGV[2] ~= '' then from = '(' .. ARGV[2] .. '\0\255' end
return redis.call('ZRANGEBYLEX', KEYS[2], from, '+', 'LIMIT', 0, tonumber(ARGV[3]) + 1)
`)

// Scripts of a user's indexes (joined, owned), in the user's slot. KEYS:
// the index, and for joined the user's read markers.

const nowLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// indexBeginScript records that a change of channel is under way: a
// pending entry, unless the index holds a settled one (which the change
// settles again). An absent entry means a new membership: its old read
// marker, if any, goes. ARGV: channel. Returns the entry written, or ”.
var indexBeginScript = redis.NewScript(nowLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, 2) ~= 'p:' then return '' end
if not cur and KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
local v = 'p:' .. now
redis.call('HSET', KEYS[1], ARGV[1], v)
return v
`)

// indexSetScript settles channel's entry at gen, unless it holds a later
// one. ARGV: channel, gen.
var indexSetScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
if not cur or cur < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
`)

// indexDropScript drops channel's entry if it is settled before gen (the
// gen of the leave or destroy), and then the read marker. ARGV: channel,
// gen.
var indexDropScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
if cur and cur < tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
end
return 0
`)

// indexFixScript repairs entries that the truth contradicts. ARGV:
// triples of channel, the entry as read, and the right entry (” to drop
// it); an entry changed since it was read, or a young pending one (a
// change under way), stays.
var indexFixScript = redis.NewScript(nowLua + `
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur == ARGV[i + 1] then
    if ARGV[i + 2] ~= '' then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    else
      local at = tonumber(string.match(cur, '^p:(%d+)$') or '')
      if not at or now - at >= tonumber(` + youngPendingMs + `) then
        redis.call('HDEL', KEYS[1], ARGV[i])
        if KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[i]) end
      end
    end
  end
end
return 0
`)

var youngPendingMs = fmt.Sprint(youngPending.Milliseconds())

// Scripts of the listing, in the {cluster} slot. KEYS: channels, gens,
// pending.

// beginCreateScript records a create as pending, unless a destroy of the
// channel is pending. ARGV: channel, field, value. Returns 1, or 0.
var beginCreateScript = redis.NewScript(`
local prefix = ARGV[1] .. '\0'
for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
  if string.sub(f, 1, #prefix) == prefix and string.sub(redis.call('HGET', KEYS[3], f) or '', 1, 8) == 'destroy\0' then
    return 0
  end
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return 1
`)

// settleScript has the listing take a create or destroy of gen, if it has
// taken none later, and publishes the notice if the listing changed;
// then clears the pending field, if it still holds value. ARGV: channel,
// gen, op (create, destroy), field (” for none), value, notice channel
// (” for none), payload. Returns 1 if the listing changed.
var settleScript = redis.NewScript(`
local changed = 0
local g = tonumber(ARGV[2])
if g > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[1], g)
  if ARGV[3] == 'create' then changed = redis.call('SADD', KEYS[1], ARGV[1])
  else changed = redis.call('SREM', KEYS[1], ARGV[1]) end
  if changed == 1 and ARGV[6] ~= '' then redis.call('SPUBLISH', ARGV[6], ARGV[7]) end
end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[3], ARGV[4]) == ARGV[5] then
  redis.call('HDEL', KEYS[3], ARGV[4])
end
return changed
`)

// listingKeys are the keys the listing's scripts take, in their order.
func (r *sharded) listingKeys() []string {
	return []string{r.globalKey("channels"), r.globalKey("gens"), r.globalKey("pending")}
}

// pendingValue is a pending entry: op, when (Unix ms, this node's clock),
// the notice's channel and payload, NUL-separated (a payload may hold
// anything but NUL: wire frames are JSON).
func pendingValue(op, channel string, payload []byte, at int64) string {
	return op + "\x00" + fmt.Sprint(at) + "\x00" + channel + "\x00" + string(payload)
}

// result splits a truth script's answer: its code and the rest.
func result(v any) (int64, []any) {
	res, _ := v.([]any)
	if len(res) == 0 {
		return -1, nil
	}
	code, _ := res[0].(int64)
	return code, res[1:]
}

// CreateChannel implements Registry in three steps: the pending record
// and the owner's pending entry; the truth; the listing with the notice
// (in the {cluster} slot, where the gateway's notice goes) and the
// owner's entry. Once the truth is written the create happened: a failure
// after it is the repairs' to finish, and the create succeeds.
func (r *sharded) CreateChannel(ctx context.Context, channel, owner string, n Notice) error {
	listing := r.listingKeys()
	nc, inSlot := r.inSlot(n, listing[0])
	field := channel + "\x00" + randomHex(8)
	value := pendingValue("create", nc, n.Payload, nowMillis())
	owned := r.userKey(owner, "owned")
	cmds, err := r.runAll(ctx, []call{
		{beginCreateScript, listing, []any{channel, field, value}},
		{indexBeginScript, []string{owned}, []any{channel}},
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", channel, err)
	}
	entry, _ := cmds[1].Text()
	if began, _ := cmds[0].Int(); began != 1 {
		r.abortEntry(ctx, owned, channel, entry)
		return fmt.Errorf("create %s: %w: its last destroy is being completed", channel, ErrUnavailable)
	}
	v, err := r.run(ctx, createTruthScript, r.truthKeys(channel)[:2], owner)
	if err != nil {
		// Maybe it ran: the pending record stays for the repairs.
		return fmt.Errorf("create %s: %w", channel, err)
	}
	code, rest := result(v)
	if code == resExists {
		r.runAll(ctx, []call{{settleScript, listing, []any{channel, 0, "create", field, value, "", ""}}})
		r.abortEntry(ctx, owned, channel, entry)
		return fmt.Errorf("create %s: %w", channel, ErrExists)
	}
	if code != resOK || len(rest) != 1 {
		return fmt.Errorf("create %s: unexpected script result %v", channel, v)
	}
	gen := rest[0]
	inNotice := nc
	if !inSlot {
		inNotice = ""
	}
	cmds, err = r.runAll(ctx, []call{
		{settleScript, listing, []any{channel, gen, "create", field, value, inNotice, n.Payload}},
		{indexSetScript, []string{owned}, []any{channel, gen}},
	})
	if err != nil {
		r.log.Warn("create: the channel exists, its listing is left to the repairs", "channel", channel, "err", err)
		return nil
	}
	if changed, _ := cmds[0].Int(); changed == 1 && !inSlot {
		r.publishAfter(ctx, nc, n.Payload)
	}
	return nil
}

// abortEntry drops a pending entry written for a change that did not
// happen, if it is still the one written.
func (r *sharded) abortEntry(ctx context.Context, index, channel, entry string) {
	if entry == "" {
		return
	}
	if _, err := r.run(context.WithoutCancel(ctx), indexFixScript, []string{index}, channel, entry, ""); err != nil {
		r.log.Debug("drop a pending entry", "index", index, "channel", channel, "err", err)
	}
}

// DestroyChannel implements Registry in three steps: the pending record;
// the truth (the channel, its members and its messages go); the listing
// with the notice, and each member's and the owner's entry.
func (r *sharded) DestroyChannel(ctx context.Context, channel, by string, n Notice) ([]string, error) {
	listing := r.listingKeys()
	nc, inSlot := r.inSlot(n, listing[0])
	field := channel + "\x00" + randomHex(8)
	value := pendingValue("destroy", nc, n.Payload, nowMillis())
	if _, err := r.runAll(ctx, []call{{hsetScript, listing[2:], []any{field, value}}}); err != nil {
		return nil, fmt.Errorf("destroy %s: %w", channel, err)
	}
	v, err := r.run(ctx, destroyTruthScript, r.truthKeys(channel), by)
	if err != nil {
		return nil, fmt.Errorf("destroy %s: %w", channel, err)
	}
	code, rest := result(v)
	if code != resOK {
		r.runAll(ctx, []call{{settleScript, listing, []any{channel, 0, "destroy", field, value, "", ""}}})
		if err := resultError(code); err != nil {
			return nil, fmt.Errorf("destroy %s: %w", channel, err)
		}
		return nil, fmt.Errorf("destroy %s: unexpected script result %v", channel, v)
	}
	if len(rest) != 2 {
		return nil, fmt.Errorf("destroy %s: unexpected script result %v", channel, v)
	}
	gen := rest[0]
	members := []string{}
	list, _ := rest[1].([]any)
	for _, m := range list {
		if s, ok := m.(string); ok {
			members = append(members, s)
		}
	}
	slices.Sort(members)
	inNotice := nc
	if !inSlot {
		inNotice = ""
	}
	calls := []call{
		{settleScript, listing, []any{channel, gen, "destroy", field, value, inNotice, n.Payload}},
		{indexDropScript, []string{r.userKey(by, "owned")}, []any{channel, gen}},
	}
	for _, m := range members {
		calls = append(calls, call{indexDropScript, []string{r.userKey(m, "joined"), r.userKey(m, "read")}, []any{channel, gen}})
	}
	cmds, err := r.runAll(ctx, calls)
	if err != nil {
		r.log.Warn("destroy: the channel is gone, its listing and indexes are left to the repairs", "channel", channel, "err", err)
		return members, nil
	}
	if changed, _ := cmds[0].Int(); changed == 1 && !inSlot {
		r.publishAfter(ctx, nc, n.Payload)
	}
	return members, nil
}

// hsetScript sets a field of a hash: HSET through runAll. KEYS: the hash.
// ARGV: field, value.
var hsetScript = redis.NewScript(`return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])`)

// Join implements Registry in three steps: the user's pending entry, the
// truth, the user's entry settled.
func (r *sharded) Join(ctx context.Context, channel string, user Peer) (bool, error) {
	index := []string{r.userKey(user.ID, "joined"), r.userKey(user.ID, "read")}
	entry, err := r.run(ctx, indexBeginScript, index, channel)
	if err != nil {
		return false, fmt.Errorf("join %s: %w", channel, err)
	}
	v, err := r.run(ctx, joinTruthScript, r.truthKeys(channel)[:5], user.ID, user.Username)
	if err != nil {
		return false, fmt.Errorf("join %s: %w", channel, err)
	}
	code, rest := result(v)
	if code == resNotFound {
		e, _ := entry.(string)
		r.abortEntry(ctx, index[0], channel, e)
		return false, fmt.Errorf("join %s: %w", channel, ErrNotFound)
	}
	if code != resOK && code != resAlready || len(rest) != 1 {
		return false, fmt.Errorf("join %s: unexpected script result %v", channel, v)
	}
	if _, err := r.run(ctx, indexSetScript, index[:1], channel, rest[0]); err != nil {
		r.log.Warn("join: a member, its index is left to be repaired when read", "channel", channel, "user", user.ID, "err", err)
	}
	return code == resOK, nil
}

// Leave implements Registry: the truth, with the notice (the gateway's
// goes on the channel's topic, in its slot), then the user's entry.
func (r *sharded) Leave(ctx context.Context, channel, user string, n Notice) error {
	keys := r.truthKeys(channel)[:5]
	nc, inSlot := r.inSlot(n, keys[0])
	inNotice := nc
	if !inSlot {
		inNotice = ""
	}
	v, err := r.run(ctx, leaveTruthScript, keys, user, inNotice, n.Payload)
	if err != nil {
		return fmt.Errorf("leave %s: %w", channel, err)
	}
	code, rest := result(v)
	if code != resOK {
		if err := resultError(code); err != nil {
			return fmt.Errorf("leave %s: %w", channel, err)
		}
		return fmt.Errorf("leave %s: unexpected script result %v", channel, v)
	}
	if !inSlot {
		r.publishAfter(ctx, nc, n.Payload)
	}
	if len(rest) == 1 {
		if _, err := r.run(ctx, indexDropScript, []string{r.userKey(user, "joined"), r.userKey(user, "read")}, channel, rest[0]); err != nil {
			r.log.Warn("leave: done, the user's index is left to be repaired when read", "channel", channel, "user", user, "err", err)
		}
	}
	return nil
}

// CheckMember implements Registry from the truth.
func (r *sharded) CheckMember(ctx context.Context, channel, user string) error {
	v, err := r.run(ctx, checkTruthScript, []string{r.metaKey(channel), r.membersKey(channel)}, user)
	if err != nil {
		return fmt.Errorf("check %s: %w", channel, err)
	}
	return resultError(v)
}

// Channels implements Registry from the listing.
func (r *sharded) Channels(ctx context.Context) ([]string, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	out, err := r.client.SMembers(ctx, r.globalKey("channels")).Result()
	if err != nil {
		return nil, fmt.Errorf("channels: %w", r.wrap(err))
	}
	slices.Sort(out)
	return out, nil
}

// Sizes implements Registry with one pipeline of HLEN.
func (r *sharded) Sizes(ctx context.Context, channels ...string) ([]int, error) {
	return r.sizes(ctx, channels, func(ctx context.Context, p redis.Pipeliner, ch string) *redis.IntCmd {
		return p.HLen(ctx, r.membersKey(ch))
	})
}

// Members implements Registry.
func (r *sharded) Members(ctx context.Context, channel, after string, limit int) ([]Member, bool, error) {
	return r.members(ctx, clusterMembersScript, []string{r.metaKey(channel), r.logKey(channel, "roster")}, channel, after, limit)
}

var shardedMarkReadScript = shardedScript(markReadLua)

// MarkRead implements Registry, in the user's slot.
func (r *sharded) MarkRead(ctx context.Context, user, log string, seq uint64, n Notice) (bool, error) {
	nc, inSlot := r.inSlot(n, r.userKey(user, "read"))
	if inSlot {
		return r.markRead(ctx, shardedMarkReadScript, user, log, seq, n)
	}
	moved, err := r.markRead(ctx, shardedMarkReadScript, user, log, seq, Notice{})
	if moved {
		r.publishAfter(ctx, nc, n.Payload)
	}
	return moved, err
}
