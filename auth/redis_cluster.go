package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/protocol"
)

// The hash-slot layout of the Redis store, for Redis Cluster, where a Lua
// script may touch the keys of one hash slot only. Keys, under the prefix:
//
//	{id:<provider>:<subject>} STRING the linked user's id: the truth of the
//	                          link, set once (SET NX) and never changed
//	{name:<name>}             STRING the name's claim: "?<id>" (pending)
//	                          until the user's hash bears the name, then
//	                          "<id>" (confirmed); set once (SET NX), never
//	                          handed to another user
//	{u:<id>}:user             HASH  id, username: the user; its username
//	                          is changed only by compare-and-set, and only
//	                          to a name whose claim is the user's
//	{s:<tokenHash>}           STRING the session as JSON, lapsing at its
//	                          expiry: the truth of a session (valid if and
//	                          only if it is there)
//	{u:<id>}:sessions         ZSET  the user's sessions by creation (Unix
//	                          µs, Redis's clock), derived, to count them at
//	                          login; may hold sessions that are gone
//	{u:<id>}:revoking         ZSET  sessions that a login took off the
//	                          index to revoke and may not have deleted
//	                          yet, with their scores on the index
//
// An operation that spans slots is a sequence of steps of one command or
// script each, ordered so that what a failure between two steps leaves is
// read correctly and is completed by the next operation on the same keys.
// Without a loss of data in Redis these hold at every moment:
//
//   - a link or a claim never changes hands, so one account is linked to
//     one user, and a name is claimed by one user;
//   - a user's hash bears a name only if the name's claim is the user's, so
//     two users never bear one name;
//   - a claim is confirmed only once its user's hash bears the name, so a
//     confirmed claim is a user by name, in one round trip;
//   - every session whose token was handed out is on its user's index
//     until a login takes it off to revoke it, so the cap counts it;
//   - a session that is on the index but gone is never counted: the login
//     looks at every listed session before it counts.
//
// docs/cluster.md, "auth on Redis Cluster", has the reasoning and each
// failure case.

// pendingMark starts the value of a claim that is not confirmed yet.
const pendingMark = "?"

func (r *Redis) nameKey(name string) string { return r.prefix + "{name:" + name + "}" }

func (r *Redis) linkKey(provider, subject string) string {
	return r.prefix + "{id:" + provider + ":" + subject + "}"
}

func (r *Redis) indexKey(userID string) string { return r.prefix + "{u:" + userID + "}:sessions" }

func (r *Redis) revokingKey(userID string) string { return r.prefix + "{u:" + userID + "}:revoking" }

// setNX stores value under key unless the key exists, and returns the
// value the key holds afterwards.
func (r *Redis) setNX(ctx context.Context, key, value string) (string, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	old, err := r.client.SetArgs(ctx, key, value, redis.SetArgs{Mode: "NX", Get: true}).Result()
	if errors.Is(err, redis.Nil) {
		return value, nil
	}
	if err != nil {
		return "", wrap(err)
	}
	return old, nil
}

// claim claims name for id unless another user's claim holds it, and
// returns the holder and whether its claim is confirmed.
func (r *Redis) claim(ctx context.Context, name, id string) (holder string, confirmed bool, err error) {
	v, err := r.setNX(ctx, r.nameKey(name), pendingMark+id)
	if err != nil {
		return "", false, err
	}
	holder, pending := strings.CutPrefix(v, pendingMark)
	return holder, !pending, nil
}

// confirmScript confirms the claim KEYS[1] of the user ARGV[1] if it is
// pending.
var confirmScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == '?' .. ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
`)

// confirm confirms id's claim of name. The caller has seen the user's hash
// bear the name: it bears it for good, since its claim is id's.
func (r *Redis) confirm(ctx context.Context, name, id string) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	return wrap(confirmScript.Run(ctx, r.client, []string{r.nameKey(name)}, id).Err())
}

// nameUserScript writes the user KEYS[1] (id ARGV[1]) with the name
// ARGV[3] if the hash is missing or bears ARGV[2], and returns the name
// the hash bears afterwards: a compare-and-set, so that of two steps
// racing to name one user, the first wins and the other learns its name.
var nameUserScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'username')
if not cur or cur == ARGV[2] then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'username', ARGV[3])
  return ARGV[3]
end
return cur
`)

// nameUser gives the user id the name, whose claim is id's, if its hash
// is missing or bears was; then it confirms the claim of the name the hash
// bears, and returns the user.
func (r *Redis) nameUser(ctx context.Context, id, was, name string) (User, error) {
	sctx, cancel := r.ctx(ctx)
	got, err := nameUserScript.Run(sctx, r.client, []string{r.userKey(id)}, id, was, name).Text()
	cancel()
	if err != nil {
		return User{}, wrap(err)
	}
	if err := r.confirm(ctx, got, id); err != nil {
		return User{}, err
	}
	return User{ID: id, Username: got}, nil
}

// clusterUserByName is UserByName: a confirmed claim is the user; a
// pending one is the user only if the user's hash bears the name already
// (its creation stopped before the confirmation).
func (r *Redis) clusterUserByName(ctx context.Context, name string) (User, error) {
	sctx, cancel := r.ctx(ctx)
	v, err := r.client.Get(sctx, r.nameKey(name)).Result()
	cancel()
	if errors.Is(err, redis.Nil) {
		return User{}, ErrNoUser
	}
	if err != nil {
		return User{}, fmt.Errorf("user by name: %w", wrap(err))
	}
	id, pending := strings.CutPrefix(v, pendingMark)
	if !pending {
		return User{ID: id, Username: name}, nil
	}
	u, err := r.UserByID(ctx, id)
	if err != nil {
		return User{}, err
	}
	if u.Username != name {
		return User{}, ErrNoUser // a name claimed for a user that took another
	}
	return u, nil
}

// clusterUserForName is UserForName: the name's claim decides the user;
// a user whose creation stopped halfway is completed.
func (r *Redis) clusterUserForName(ctx context.Context, name, newID string) (User, error) {
	id, confirmed, err := r.claim(ctx, name, newID)
	if err != nil {
		return User{}, fmt.Errorf("user for name: %w", err)
	}
	if confirmed {
		return User{ID: id, Username: name}, nil
	}
	u, err := r.nameUser(ctx, id, "", name)
	if err != nil {
		return User{}, fmt.Errorf("user for name: %w", err)
	}
	return u, nil
}

// clusterUserForIdentity is UserForIdentity in steps: link the account
// (the link decides the user), then keep the name the user bears if its
// claim is the user's, else claim the first free name and give it to the
// user.
func (r *Redis) clusterUserForIdentity(ctx context.Context, provider, subject, login, newID string) (User, error) {
	id, err := r.setNX(ctx, r.linkKey(provider, subject), newID)
	if err != nil {
		return User{}, fmt.Errorf("user for identity: %w", err)
	}
	sctx, cancel := r.ctx(ctx)
	was, err := r.client.HGet(sctx, r.userKey(id), "username").Result()
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		return User{}, fmt.Errorf("user for identity: %w", wrap(err))
	}
	if was != "" {
		// Claimed again if the claim was lost; another user's after a
		// partial loss, and then this user is renamed.
		holder, confirmed, err := r.claim(ctx, was, id)
		if err != nil {
			return User{}, fmt.Errorf("user for identity: %w", err)
		}
		if holder == id {
			if !confirmed {
				if err := r.confirm(ctx, was, id); err != nil {
					return User{}, fmt.Errorf("user for identity: %w", err)
				}
			}
			return User{ID: id, Username: was}, nil
		}
	}
	name, err := r.pickName(ctx, protocol.SanitizeUsername(login), id)
	if err != nil {
		return User{}, fmt.Errorf("user for identity: %w", err)
	}
	u, err := r.nameUser(ctx, id, was, name)
	if err != nil {
		return User{}, fmt.Errorf("user for identity: %w", err)
	}
	return u, nil
}

// pickBatch is how many names pickName looks up in one round trip.
const pickBatch = 16

// pickName returns the first of base, base-2, base-3 … whose claim is
// id's or is free (it claims that one for id). Claims never change hands,
// so every step that picks a name for one id with one base stops at the
// same name, and steps for different ids at different names.
func (r *Redis) pickName(ctx context.Context, base, id string) (string, error) {
	holder, _, err := r.claim(ctx, base, id) // the name is most often free
	if err != nil || holder == id {
		return base, err
	}
	for n := 2; ; n += pickBatch {
		names := make([]string, pickBatch)
		keys := make([]string, pickBatch)
		for i := range names {
			names[i] = protocol.WithSuffix(base, n+i)
			keys[i] = r.nameKey(names[i])
		}
		held, err := r.getAll(ctx, keys)
		if err != nil {
			return "", err
		}
		for i, name := range names {
			switch held[i] {
			case id, pendingMark + id:
				return name, nil
			case "":
				holder, _, err := r.claim(ctx, name, id)
				if err != nil || holder == id {
					return name, err
				}
			}
		}
	}
}

// getAll reads string keys in one pipeline; "" stands for a missing key.
func (r *Redis) getAll(ctx context.Context, keys []string) ([]string, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	cmds := make([]*redis.StringCmd, len(keys))
	r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	out := make([]string, len(keys))
	for i, c := range cmds {
		v, err := c.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, wrap(err)
		}
		out[i] = v
	}
	return out, nil
}

// indexSessionScript puts the session ARGV[1] on its user's index KEYS[1],
// scored by Redis's clock, and takes off the index and off the revoking
// set KEYS[2] the sessions ARGV[4…] that are gone. If ARGV[2] > 0 and the
// index then lists more sessions than that, it moves the oldest but the
// new one to the revoking set and returns them, oldest first. Both keys
// lapse with the longest session: ARGV[3] (Unix ms) or later.
//
// On a slot being migrated, Redis fails a script at the first command on
// a key that is missing by then (already moved, or emptied by the script
// itself), keeping what the script did before. So this one touches no key
// that it may have emptied, and adds the sessions to revoke to the
// revoking set before it takes them off the index: whatever line it stops
// at, a session is listed on one of the two or gone.
var indexSessionScript = redis.NewScript(`
local hash, keep, at = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local gone = {}
for i = 4, #ARGV do gone[ARGV[i]] = true end
gone[hash] = nil
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])), hash)
local listed = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local live = {}
for i = 1, #listed, 2 do
  if not gone[listed[i]] then live[#live + 1] = i end
end
local victims = {}
local over = #live - keep
for _, i in ipairs(live) do
  if keep <= 0 or over <= 0 then break end
  if listed[i] ~= hash then
    victims[#victims + 1] = i
    over = over - 1
  end
end
local revoking = redis.call('ZCARD', KEYS[2])
for _, i in ipairs(victims) do
  redis.call('ZADD', KEYS[2], listed[i + 1], listed[i])
end
revoking = revoking + #victims
local out = {}
for _, i in ipairs(victims) do
  redis.call('ZREM', KEYS[1], listed[i])
  out[#out + 1] = listed[i]
end
gone[hash] = true -- off the revoking set if a retried login put it back
for h in pairs(gone) do
  if h ~= hash then redis.call('ZREM', KEYS[1], h) end
  if revoking > 0 then revoking = revoking - redis.call('ZREM', KEYS[2], h) end
end
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, k in ipairs(KEYS) do
  if i == 1 or revoking > 0 then
    local left = redis.call('PTTL', k)
    if left == -1 or now + left < at then
      redis.call('PEXPIREAT', k, at)
    end
  end
end
return out
`)

// clusterCreateSession is CreateSession in steps: store the session, then
// count the user's sessions on the index and revoke those over keep. b is
// the session as stored.
func (r *Redis) clusterCreateSession(ctx context.Context, tokenHash string, s Session, b []byte, keep int) ([]Session, error) {
	sctx, cancel := r.ctx(ctx)
	err := r.client.Do(sctx, "SET", r.sessionKey(tokenHash), b, "PXAT", s.Expires.UnixMilli()).Err()
	cancel()
	if err != nil {
		// The SET may run all the same, its reply lost (a write held past
		// the deadline runs when Redis goes on): delete what it may store,
		// or a valid session would be left off the user's index.
		r.dropSession(ctx, tokenHash)
		return nil, fmt.Errorf("create session: %w", wrap(err))
	}
	revoked, err := r.capSessions(ctx, tokenHash, s.UserID, s.Expires, max(keep, 0))
	if err != nil {
		r.dropSession(ctx, tokenHash)
		return revoked, fmt.Errorf("create session: %w", err)
	}
	return revoked, nil
}

// dropSession deletes the session of a token that will not be handed out,
// rather than leave it valid. The DEL is sent after the steps that may
// store it, so Redis runs it after them even if it held them; if it fails
// too, nobody holds the token and the session lapses at its expiry.
func (r *Redis) dropSession(ctx context.Context, tokenHash string) {
	dctx, cancel := r.ctx(context.WithoutCancel(ctx))
	r.client.Del(dctx, r.sessionKey(tokenHash))
	cancel()
}

// capSessions puts the new session tokenHash on its user's index and
// revokes the user's oldest sessions over keep. It returns the sessions it
// revoked, also on an error: first those that an earlier login took off
// the index and did not delete, then its own, oldest first.
func (r *Redis) capSessions(ctx context.Context, tokenHash, userID string, expires time.Time, keep int) ([]Session, error) {
	index, revoking := r.indexKey(userID), r.revokingKey(userID)
	sctx, cancel := r.ctx(ctx)
	var listed *redis.StringSliceCmd
	var left *redis.StringSliceCmd
	_, err := r.client.Pipelined(sctx, func(p redis.Pipeliner) error {
		listed = p.ZRange(sctx, index, 0, -1)
		left = p.ZRange(sctx, revoking, 0, -1)
		return nil
	})
	cancel()
	if err != nil {
		return nil, wrap(err)
	}
	// A session listed on the index but no longer stored is gone for
	// good (tokens are never reused, and a session is stored before it is
	// listed): it does not count. Those left on the revoking set are
	// revoked now.
	var check, take []string
	for _, h := range listed.Val() {
		if h != tokenHash {
			check = append(check, h)
		}
	}
	for _, h := range left.Val() {
		if h != tokenHash {
			take = append(take, h)
		}
	}
	gone, revoked, err := r.probe(ctx, check, take)
	if err != nil {
		return revoked, err
	}
	args := append([]any{tokenHash, keep, expires.UnixMilli()}, gone...)
	sctx, cancel = r.ctx(ctx)
	victims, err := indexSessionScript.Run(sctx, r.client, []string{index, revoking}, args...).StringSlice()
	cancel()
	if err != nil {
		return revoked, wrap(err)
	}
	_, more, err := r.probe(ctx, nil, victims)
	revoked = append(revoked, more...)
	if err != nil || len(victims) == 0 {
		return revoked, err
	}
	// Deleted: off the revoking set. If this fails, the next login finds
	// them deleted already.
	sctx, cancel = r.ctx(ctx)
	defer cancel()
	r.client.ZRem(sctx, revoking, victims)
	return revoked, nil
}

// probe checks in one pipeline which of the sessions check are no longer
// stored and deletes the sessions take (GETDEL: of two nodes deleting one,
// one gets it). It returns the hashes of check that are gone with those
// of take, and the sessions it deleted, in take's order; on an error, the
// sessions it deleted all the same.
func (r *Redis) probe(ctx context.Context, check, take []string) (gone []any, deleted []Session, err error) {
	if len(check)+len(take) == 0 {
		return nil, nil, nil
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	exists := make([]*redis.IntCmd, len(check))
	taken := make([]*redis.StringCmd, len(take))
	r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range check {
			exists[i] = p.Exists(ctx, r.sessionKey(h))
		}
		for i, h := range take {
			taken[i] = p.GetDel(ctx, r.sessionKey(h))
		}
		return nil
	})
	for _, c := range taken {
		b, cerr := c.Bytes()
		if cerr == nil {
			var s Session
			if s, cerr = decodeSession(b); cerr == nil {
				deleted = append(deleted, s)
			}
		}
		if cerr != nil && !errors.Is(cerr, redis.Nil) && err == nil {
			err = wrap(cerr)
		}
	}
	for i, c := range exists {
		n, cerr := c.Result()
		if cerr != nil {
			if err == nil {
				err = wrap(cerr)
			}
			continue
		}
		if n == 0 {
			gone = append(gone, check[i])
		}
	}
	for _, h := range take {
		gone = append(gone, h)
	}
	return gone, deleted, err
}

// unindexSession takes a deleted session off its user's index. If that
// fails, the session stays listed, gone, until the user's next login drops
// it: it is never counted, so the failure is not the caller's.
func (r *Redis) unindexSession(ctx context.Context, userID, tokenHash string) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	r.client.ZRem(ctx, r.indexKey(userID), tokenHash)
}
