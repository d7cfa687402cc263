package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/rediserr"
	"github.com/wirechat/chat/protocol"
)

// Redis is a Store in Redis, shared by the nodes of a cluster. On a single
// Redis (a *redis.Client) its keys, under the prefix (docs/cluster.md),
// are:
//
//	user:{id}                    HASH  id, username
//	username:{name}              STRING the user's id
//	identity:{provider}:{subject} STRING the user's id
//	session:{tokenHash}          STRING the session as JSON; lapses at its expiry
//	sessions:{id}                ZSET  the user's session token hashes, by creation
//	                                   (Unix µs, Redis's clock); lapses with the last
//
// Creating a user is one Lua script, so two nodes never hand out the same
// username or link one identity twice. Creating a session is one too, so
// that two nodes logging one user in at once cannot both keep more than
// the user may hold.
//
// On Redis Cluster (any other client, a *redis.ClusterClient) a script may
// touch one hash slot only, so the keys carry hash tags and what spans
// several slots is done in steps, in an order that a failure between two
// of them cannot turn into a broken state: redis_cluster.go.
type Redis struct {
	client  redis.UniversalClient // immutable after NewRedis
	cluster bool                  // the hash-slot layout; immutable after NewRedis
	prefix  string
	timeout time.Duration
	now     func() time.Time
}

var _ Store = (*Redis)(nil)

// RedisOptions configure a Redis store. A zero field means its default.
type RedisOptions struct {
	// Prefix is put in front of every key. If empty, "chat:".
	Prefix string

	// Timeout bounds every command. If zero, 1 s.
	Timeout time.Duration
}

// NewRedis returns a store on client, which the caller keeps and closes:
// a *redis.Client keeps the keys above (the layout of deployed data), any
// other client, a *redis.ClusterClient for Redis Cluster 7.0 or later,
// gets the hash-slot layout of redis_cluster.go. The client should have
// ContextTimeoutEnabled set and no retries (pubsub.NewClient does both),
// and must read from primaries only (ClusterOptions.ReadOnly false): a
// replica may still hold a session that was revoked.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "chat:"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	_, single := client.(*redis.Client)
	return &Redis{client: client, cluster: !single, prefix: opts.Prefix, timeout: opts.Timeout, now: time.Now}
}

// userForNameScript returns {id, name} of the user named ARGV[2], creating
// it with id ARGV[3] if there is none. ARGV[1] is the prefix. The user
// hash may have outlived its name (a partial loss): ARGV[3] is derived
// from the name, so that user is this one, and is written again.
var userForNameScript = redis.NewScript(`
local p, name, id = ARGV[1], ARGV[2], ARGV[3]
local found = redis.call('GET', p .. 'username:' .. name)
if found then return {found, name} end
redis.call('SET', p .. 'username:' .. name, id)
redis.call('HSET', p .. 'user:' .. id, 'id', id, 'username', name)
return {id, name}
`)

// userForIdentityScript returns {id, name} of the user linked to the
// identity key KEYS[1], or else of the user ARGV[3] (the id derived from
// the account), linking it. A user that does not exist yet, or whose name
// another user holds now, is (re)created named after the sanitised login
// ARGV[2], or the first of login-2, login-3 … that is free (cut to ARGV[4]
// bytes as protocol.WithSuffix does). After a partial loss, what is left
// (the link, the user, its name) is reused.
var userForIdentityScript = redis.NewScript(`
local p, base, newid, maxlen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local linked = redis.call('GET', KEYS[1])
local id = linked or newid
local name = redis.call('HGET', p .. 'user:' .. id, 'username')
if name then
  local holder = redis.call('GET', p .. 'username:' .. name)
  if holder == id or not holder then
    if not holder then redis.call('SET', p .. 'username:' .. name, id) end
    if not linked then redis.call('SET', KEYS[1], id) end
    return {id, name}
  end
end
name = base
local n = 2
while redis.call('EXISTS', p .. 'username:' .. name) == 1 do
  local suffix = '-' .. n
  local b = base
  if #b + #suffix > maxlen then b = string.sub(b, 1, maxlen - #suffix) end
  name = b .. suffix
  n = n + 1
end
redis.call('SET', p .. 'username:' .. name, id)
redis.call('HSET', p .. 'user:' .. id, 'id', id, 'username', name)
if not linked then redis.call('SET', KEYS[1], id) end
return {id, name}
`)

func (r *Redis) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// userKey is the key of the user's hash in either layout.
func (r *Redis) userKey(id string) string {
	if r.cluster {
		return r.prefix + "{u:" + id + "}:user"
	}
	return r.prefix + "user:" + id
}

// sessionKey is the key of a login session in either layout.
func (r *Redis) sessionKey(tokenHash string) string {
	if r.cluster {
		return r.prefix + "{s:" + tokenHash + "}"
	}
	return r.prefix + "session:" + tokenHash
}

// UserByName implements Store.
func (r *Redis) UserByName(ctx context.Context, username string) (User, error) {
	if r.cluster {
		return r.clusterUserByName(ctx, username)
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	id, err := r.client.Get(ctx, r.prefix+"username:"+username).Result()
	if errors.Is(err, redis.Nil) {
		return User{}, ErrNoUser
	}
	if err != nil {
		return User{}, fmt.Errorf("user by name: %w", wrap(err))
	}
	return User{ID: id, Username: username}, nil
}

// UserByID implements Store.
func (r *Redis) UserByID(ctx context.Context, id string) (User, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	name, err := r.client.HGet(ctx, r.userKey(id), "username").Result()
	if errors.Is(err, redis.Nil) {
		return User{}, ErrNoUser
	}
	if err != nil {
		return User{}, fmt.Errorf("user by id: %w", wrap(err))
	}
	return User{ID: id, Username: name}, nil
}

// UserForName implements Store.
func (r *Redis) UserForName(ctx context.Context, username, newID string) (User, error) {
	if r.cluster {
		return r.clusterUserForName(ctx, username, newID)
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	v, err := userForNameScript.Run(ctx, r.client, nil, r.prefix, username, newID).StringSlice()
	if err != nil {
		return User{}, fmt.Errorf("user for name: %w", wrap(err))
	}
	return pair(v)
}

// UserForIdentity implements Store.
func (r *Redis) UserForIdentity(ctx context.Context, provider, subject, login, newID string) (User, error) {
	if r.cluster {
		return r.clusterUserForIdentity(ctx, provider, subject, login, newID)
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	key := r.prefix + "identity:" + provider + ":" + subject
	v, err := userForIdentityScript.Run(ctx, r.client, []string{key},
		r.prefix, protocol.SanitizeUsername(login), newID, protocol.MaxUsernameLen).StringSlice()
	if err != nil {
		return User{}, fmt.Errorf("user for identity: %w", wrap(err))
	}
	return pair(v)
}

func pair(v []string) (User, error) {
	if len(v) != 2 {
		return User{}, fmt.Errorf("auth: unexpected script result %q", v)
	}
	return User{ID: v[0], Username: v[1]}, nil
}

// storedSession is a Session as JSON in Redis.
type storedSession struct {
	ID       string    `json:"id"`
	UserID   string    `json:"user_id"`
	Username string    `json:"username"`
	Provider string    `json:"provider"`
	Expires  time.Time `json:"expires"`
}

// createSessionScript stores the session ARGV[3] (JSON) under KEYS[1]
// until ARGV[4] (Unix ms) and adds its token hash ARGV[2] to the user's
// index KEYS[2], scored by Redis's clock. It drops from the index the
// hashes whose session is gone (logged out or lapsed) and, if ARGV[5] > 0
// and more than that many are left, deletes the oldest sessions but the
// new one and returns them (JSON), oldest first. The index lapses with
// the last of its sessions. ARGV[1] is the prefix of session keys.
var createSessionScript = redis.NewScript(`
local sp, hash, keep = ARGV[1], ARGV[2], tonumber(ARGV[5])
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[4])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), hash)
local live, ttl = {}, {}
for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local left = redis.call('PTTL', sp .. h)
  if left < 0 then
    redis.call('ZREM', KEYS[2], h)
  else
    live[#live + 1] = h
    ttl[h] = left
  end
end
local revoked = {}
local over = #live - keep
for _, h in ipairs(live) do
  if keep <= 0 or over <= 0 then break end
  if h ~= hash then
    revoked[#revoked + 1] = redis.call('GETDEL', sp .. h)
    redis.call('ZREM', KEYS[2], h)
    ttl[h] = nil
    over = over - 1
  end
end
local longest = 0
for _, left in pairs(ttl) do
  if left > longest then longest = left end
end
redis.call('PEXPIRE', KEYS[2], math.max(longest, 1))
return revoked
`)

// CreateSession implements Store: the key lapses at s.Expires.
func (r *Redis) CreateSession(ctx context.Context, tokenHash string, s Session, keep int) ([]Session, error) {
	if !s.Expires.After(r.now()) {
		return nil, nil // lapsed already: nothing to keep
	}
	b, err := json.Marshal(storedSession{ID: s.ID, UserID: s.UserID, Username: s.Username, Provider: s.Provider, Expires: s.Expires})
	if err != nil {
		return nil, err
	}
	if r.cluster {
		return r.clusterCreateSession(ctx, tokenHash, s, b, keep)
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	keys := []string{r.prefix + "session:" + tokenHash, r.prefix + "sessions:" + s.UserID}
	old, err := createSessionScript.Run(ctx, r.client, keys,
		r.prefix+"session:", tokenHash, b, s.Expires.UnixMilli(), max(keep, 0)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("create session: %w", wrap(err))
	}
	revoked := make([]Session, 0, len(old))
	for _, b := range old {
		s, err := decodeSession([]byte(b))
		if err != nil {
			return revoked, err
		}
		revoked = append(revoked, s)
	}
	return revoked, nil
}

// Session implements Store.
func (r *Redis) Session(ctx context.Context, tokenHash string) (Session, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	b, err := r.client.Get(ctx, r.sessionKey(tokenHash)).Bytes()
	if err != nil {
		return Session{}, sessionError(err)
	}
	s, err := decodeSession(b)
	if err != nil {
		return Session{}, err
	}
	// Redis lapses the key itself; this covers a clock ahead of Redis's.
	if !s.Expires.After(r.now()) {
		return Session{}, ErrNoSession
	}
	return s, nil
}

// liveBatch is how many sessions LiveSessions asks Redis about in one
// pipeline: a node's whole crowd at once would be one long reply that
// holds up everyone else's commands on the connection.
const liveBatch = 1000

// LiveSessions implements Store: pipelined GETs, liveBatch at a time. On
// Redis Cluster the client splits each pipeline by node.
func (r *Redis) LiveSessions(ctx context.Context, tokenHashes []string) ([]bool, error) {
	live := make([]bool, 0, len(tokenHashes))
	keys := make([]string, 0, min(len(tokenHashes), liveBatch))
	now := r.now()
	for batch := range slices.Chunk(tokenHashes, liveBatch) {
		keys = keys[:0]
		for _, h := range batch {
			keys = append(keys, r.sessionKey(h))
		}
		stored, err := r.getAll(ctx, keys)
		if err != nil {
			return nil, fmt.Errorf("sessions: %w", err)
		}
		for _, b := range stored {
			if b == "" {
				live = append(live, false)
				continue
			}
			s, err := decodeSession([]byte(b))
			if err != nil {
				return nil, err
			}
			// Redis lapses the key itself; this covers a clock ahead of Redis's.
			live = append(live, s.Expires.After(now))
		}
	}
	return live, nil
}

// DeleteSession implements Store: GETDEL, so that of two nodes revoking one
// session, one gets it.
func (r *Redis) DeleteSession(ctx context.Context, tokenHash string) (Session, error) {
	s, err := r.getDelSession(ctx, tokenHash)
	if err != nil || !r.cluster {
		return s, err
	}
	r.unindexSession(ctx, s.UserID, tokenHash)
	return s, nil
}

func (r *Redis) getDelSession(ctx context.Context, tokenHash string) (Session, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	b, err := r.client.GetDel(ctx, r.sessionKey(tokenHash)).Bytes()
	if err != nil {
		return Session{}, sessionError(err)
	}
	return decodeSession(b)
}

func sessionError(err error) error {
	if errors.Is(err, redis.Nil) {
		return ErrNoSession
	}
	return fmt.Errorf("session: %w", wrap(err))
}

func decodeSession(b []byte) (Session, error) {
	var s storedSession
	if err := json.Unmarshal(b, &s); err != nil {
		return Session{}, fmt.Errorf("auth: stored session: %w", err)
	}
	return Session{ID: s.ID, UserID: s.UserID, Username: s.Username, Provider: s.Provider, Expires: s.Expires}, nil
}

// wrap marks a failure to reach Redis in time as ErrUnavailable; an error
// that Redis itself returned is passed on.
func wrap(err error) error {
	if !rediserr.Unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
