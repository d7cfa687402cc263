package pubsub

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence on a cluster: a user's places and presence are in its slot, as
// on a single Redis; the index of when to look at whom (due) is in
// dueParts parts of its own slots. The index may say too early, never too
// late: a user's entry is put in (or made earlier) before its presence
// changes, and moved later or dropped only by the sweep, and only if it is
// still what the sweep read. A look that comes early finds the user's
// places alive and sets the entry to when they lapse.

// refreshOneScript sets a user's places to lapse ttl from now. KEYS:
// places. ARGV: ttl in ms, then the conns.
var refreshOneScript = redis.NewScript(placesNow + `
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
local key = KEYS[1]
` + placesExpire + `
return 0
`)

// dueScript moves a user's entry in a part of the due index to next (0:
// drops it), if it still is at seen. KEYS: the part. ARGV: user, seen,
// next.
var dueScript = redis.NewScript(`
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '0' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
`)

func (r *sharded) placeKeys(user string) []string {
	return []string{r.userKey(user, "places"), r.userKey(user, "presence")}
}

// earlier makes user's entry in the due index at most at (Unix ms).
func (r *sharded) earlier(ctx context.Context, user string, at int64) error {
	if r.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.wrap(r.client.ZAddLT(ctx, r.dueKey(user), redis.Z{Score: float64(at), Member: user}).Err())
}

// AcquirePlace implements Registry: the due entry first, then the place.
func (r *sharded) AcquirePlace(ctx context.Context, user Peer, conn string, limit int, ttl time.Duration) (bool, error) {
	if err := r.earlier(ctx, user.ID, nowMillis()+ttl.Milliseconds()); err != nil {
		return false, fmt.Errorf("acquire place: %w", err)
	}
	return acquired(r.run(ctx, acquireScript, r.placeKeys(user.ID), conn, limit, ttlMillis(ttl), user.ID, user.Username))
}

// RefreshPlaces implements Registry: one script per user, in one
// pipeline. The due index is left alone: a look that comes before the
// places lapse moves it.
func (r *sharded) RefreshPlaces(ctx context.Context, places map[string][]string, ttl time.Duration) error {
	calls := make([]call, 0, len(places))
	for user, conns := range places {
		args := make([]any, 0, 1+len(conns))
		args = append(args, ttlMillis(ttl))
		for _, c := range conns {
			args = append(args, c)
		}
		calls = append(calls, call{refreshOneScript, r.placeKeys(user)[:1], args})
	}
	if _, err := r.runAll(ctx, calls); err != nil {
		return fmt.Errorf("refresh places: %w", err)
	}
	return nil
}

// ReleasePlace implements Registry: the place, then, if the user is
// leaving, its due entry made as early as its grace's end.
func (r *sharded) ReleasePlace(ctx context.Context, user, conn string, grace time.Duration) error {
	v, err := r.run(ctx, releaseScript, r.placeKeys(user), conn, ttlMillis(grace), user)
	if err != nil {
		return fmt.Errorf("release place: %w", err)
	}
	if deadline, _ := v.(int64); deadline > 0 {
		if err := r.earlier(ctx, user, deadline); err != nil {
			return fmt.Errorf("release place: %w", err)
		}
	}
	return nil
}

// SweepPresence implements Registry: the due users of every part of the
// index in one round trip, their presence in another, their entries in a
// third.
func (r *sharded) SweepPresence(ctx context.Context, limit int) ([]Peer, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	parts := make([]*redis.ZSliceCmd, dueParts)
	// The ones whose time has come by this node's clock: Redis's decides
	// in the script.
	now := strconv.FormatInt(nowMillis(), 10)
	_, err := r.client.Pipelined(rctx, func(p redis.Pipeliner) error {
		for i := range parts {
			parts[i] = p.ZRangeArgsWithScores(rctx, redis.ZRangeArgs{
				Key: r.prefix + "{pdue:" + strconv.Itoa(i) + "}", ByScore: true, Start: "-inf", Stop: now, Count: int64(limit),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("presence due: %w", r.wrap(err))
	}
	type due struct {
		user string
		seen float64
	}
	var dues []due
	for _, p := range parts {
		for _, z := range p.Val() {
			if len(dues) < limit {
				user, _ := z.Member.(string)
				dues = append(dues, due{user, z.Score})
			}
		}
	}
	looks := make([]call, len(dues))
	for i, d := range dues {
		looks[i] = call{sweepScript, r.placeKeys(d.user), []any{d.user}}
	}
	cmds, err := r.runAll(ctx, looks)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	var gone []Peer
	moves := make([]call, 0, len(dues))
	for i, d := range dues {
		name, next, offline := sweptUser(cmds[i].Val())
		if cmds[i].Err() != nil {
			continue
		}
		if offline {
			gone = append(gone, Peer{ID: d.user, Username: name})
		}
		moves = append(moves, call{dueScript, []string{r.dueKey(d.user)}, []any{d.user, strconv.FormatFloat(d.seen, 'f', -1, 64), next}})
	}
	if _, err := r.runAll(ctx, moves); err != nil {
		// The entries stay: the next sweep looks again, and finds the
		// users it announced offline gone.
		r.log.Debug("presence due", "err", err)
	}
	return gone, nil
}
