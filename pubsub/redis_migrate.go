package pubsub

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Data written by earlier versions, brought up to date when a node starts.
//
// Version 1 kept a channel's members as a set of UUIDs only; members lists
// them by username from the channel's roster, which joins keep since
// version 2. The roster of each channel is filled once from its members
// and their usernames (auth's user:<uuid> hashes, under the same prefix).
// Every node that starts before the work is recorded as done does it; it
// is idempotent, so racing nodes agree.

// rosterScript fills a channel's roster and names from its members.
// KEYS: members:{channel}, roster, names. ARGV: prefix.
var rosterScript = redis.NewScript(`
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do
  if redis.call('HEXISTS', KEYS[3], id) == 0 then
    local name = redis.call('HGET', ARGV[1] .. 'user:' .. id, 'username')
    if name then
      redis.call('HSET', KEYS[3], id, name)
      redis.call('ZADD', KEYS[2], 0, name .. '\0' .. id)
    end
  end
end
return #ids
`)

// migrate brings data of earlier versions up to date.
func (r *Redis) migrate(ctx context.Context) error {
	done := r.key("migrated:v2-roster")
	if n, err := r.client.Exists(ctx, done).Result(); err != nil || n == 1 {
		return r.wrap(err)
	}
	iter := r.client.SScan(ctx, r.key("channels"), 0, "", 500).Iterator()
	channels := 0
	for iter.Next(ctx) {
		ch := iter.Val()
		keys := []string{r.key("members:", ch), r.logKey(ch, "roster"), r.logKey(ch, "names")}
		if err := rosterScript.Run(ctx, r.client, keys, r.prefix).Err(); err != nil {
			return fmt.Errorf("roster of %s: %w", ch, r.wrap(err))
		}
		channels++
	}
	if err := iter.Err(); err != nil {
		return r.wrap(err)
	}
	if channels > 0 {
		r.log.Info("filled the rosters of channels from version 1", "channels", channels)
	}
	return r.wrap(r.client.Set(ctx, done, 1, 0).Err())
}
