package pubsub

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimScript takes a pending entry for one repair: it sets the entry to
// new if it still holds old, so that the other nodes leave it alone for
// pendingAge. KEYS: pending. ARGV: field, old, new. Returns 1 if taken.
var claimScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// repairs settles, every repairsEvery, the creates and destroys that have
// been pending longer than pendingAge: their node died, or lost Redis,
// between the truth and the listing. Every node runs it; a claim gives
// each entry to one.
func (r *sharded) repairs(stop <-chan struct{}) {
	t := time.NewTicker(repairsEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if n, err := r.repairPending(context.Background(), pendingAge); err != nil {
			r.log.Debug("repair pending creates and destroys", "err", err)
		} else if n > 0 {
			r.log.Info("repaired creates and destroys that their nodes left pending", "entries", n)
		}
	}
}

// repairPending settles the pending entries older than age and returns
// how many it settled.
func (r *sharded) repairPending(ctx context.Context, age time.Duration) (int, error) {
	if r.isClosed() {
		return 0, ErrClosed
	}
	listing := r.listingKeys()
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	entries, err := r.client.HGetAll(rctx, listing[2]).Result()
	cancel()
	if err != nil {
		return 0, r.wrap(err)
	}
	settled := 0
	for field, value := range entries {
		channel, _, _ := strings.Cut(field, "\x00")
		parts := strings.SplitN(value, "\x00", 4)
		if len(parts) != 4 {
			continue
		}
		op, channelOfNotice, payload := parts[0], parts[2], []byte(parts[3])
		at, _ := strconv.ParseInt(parts[1], 10, 64)
		if time.Since(time.UnixMilli(at)) < age {
			continue
		}
		claimed := pendingValue(op, channelOfNotice, payload, nowMillis())
		if ok, err := r.run(ctx, claimScript, listing[2:], field, value, claimed); err != nil {
			return settled, err
		} else if ok != int64(1) {
			continue // another node took it, or its own node finished it
		}
		if err := r.settle(ctx, channel, op, field, claimed, channelOfNotice, payload); err != nil {
			return settled, err
		}
		settled++
	}
	return settled, nil
}

// settle finishes a create or destroy of channel from what the truth says
// now: the listing takes the channel's state (announcing it, if that
// changes the listing) and the pending entry goes.
func (r *sharded) settle(ctx context.Context, channel, op, field, value, noticeChannel string, payload []byte) error {
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	var m *redis.SliceCmd
	var g *redis.StringCmd
	_, err := r.client.Pipelined(rctx, func(p redis.Pipeliner) error {
		m = p.HMGet(rctx, r.metaKey(channel), "owner", "gen")
		g = p.Get(rctx, r.logKey(channel, "gen"))
		return nil
	})
	cancel()
	if err != nil && err != redis.Nil {
		return r.wrap(err)
	}
	meta, gen := m.Val(), g.Val()
	if len(meta) != 2 {
		return fmt.Errorf("the truth of %s: unexpected answer %v", channel, meta)
	}
	owner, _ := meta[0].(string)
	metaGen, _ := meta[1].(string)
	exists := owner != ""
	listing := r.listingKeys()
	clear := call{settleScript, listing, []any{channel, 0, op, field, value, "", ""}}
	var calls []call
	switch {
	case op == "create" && exists:
		calls = []call{
			{settleScript, listing, []any{channel, metaGen, op, field, value, noticeChannel, payload}},
			{indexSetScript, []string{r.userKey(owner, "owned")}, []any{channel, metaGen}},
		}
	case op == "destroy" && !exists && gen != "":
		calls = []call{{settleScript, listing, []any{channel, gen, op, field, value, noticeChannel, payload}}}
	default:
		// The create did not happen, or the destroy did not (or the
		// channel was created again since, which settles itself).
		calls = []call{clear}
	}
	if noticeChannel != "" && keySlot(noticeChannel) != keySlot(listing[0]) {
		calls[0].args[5] = ""
		cmds, err := r.runAll(ctx, calls)
		if err == nil {
			if changed, _ := cmds[0].Int(); changed == 1 {
				r.publishAfter(ctx, noticeChannel, payload)
			}
		}
		return err
	}
	_, err = r.runAll(ctx, calls)
	return err
}
