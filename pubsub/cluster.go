package pubsub

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/rediserr"
)

// The key layout of a Redis Cluster (docs/cluster.md tells the same story
// with its failure cases). Redis runs a script or a transaction only on
// keys of one hash slot, so every key carries the hash tag of what it
// belongs to, and a change that spans owners is steps, one slot each:
//
//	{c:<channel>}:meta    HASH   owner, gen: the channel exists while it does
//	{c:<channel>}:gen     STRING the channel's change counter; never deleted
//	{c:<channel>}:members HASH   uuid -> the gen of the member's join
//	{c:<channel>}:roster, :names, :seq, :log, :idem:<u>:<id>  as on a single Redis
//	{u:<uuid>}:joined     HASH   channel -> gen of the join, or p:<ms>: joining
//	{u:<uuid>}:owned      HASH   channel -> gen of the create, or p:<ms>: creating
//	{u:<uuid>}:places     ZSET   as places:<uuid> on a single Redis
//	{u:<uuid>}:presence, :read, :convs   as on a single Redis
//	{cluster}:channels    SET    the channels announced to exist
//	{cluster}:gens        HASH   channel -> the gen the listing last took
//	{cluster}:pending     HASH   "<channel>\0<nonce>" -> a create or destroy under way
//	{pdue:<n>}            ZSET   as presence:due, in 16 parts (n = CRC16(uuid) mod 16)
//	rate:<uuid>, throttle:<key>, epoch   one key each, as on a single Redis
//
// The channel's slot holds the truth: whether it exists, who owns it, who
// its members are. A message's membership check, its store and its
// publish are one script there, as on a single Redis, so no step ever
// lets a non-member's message through. What the user's slot and the
// listing hold is derived from the truth, and kept so that it can be
// repaired:
//
//   - A user's joined and owned indexes are written before the truth (a
//     pending entry, p:<ms>) and settled after it (the gen); a leave or a
//     destroy drops the entry after the truth, only if it is from before
//     (its gen is lower). So an index holds every membership the truth
//     holds, and maybe more: a reader checks each entry against the truth
//     (one script per channel, in the round trip that reads the newest
//     seqs anyway) and repairs what is stale, leaving a young pending
//     entry alone (a join under way).
//   - The listing takes a create or a destroy in the gen order of the
//     truth, with its notice in the same script, so that every node hears
//     of the change once the listing has it. A create or destroy is
//     recorded as pending before its truth step and cleared by the step
//     that settles the listing; a node that dies in between leaves the
//     record, and every node repairs records older than pendingAge from
//     the truth (repair.go). A create waits while a destroy of the same
//     channel is pending, so that a channel is never created again under
//     the sessions of the members of its last life.
//
// A private message is stored in the conversation's slot, then touches
// each user's conversations and is published on each user's topic, in
// the user's slot. A retry of the message (the same id) finds it stored
// and runs the second step again: a receiver that got it already drops
// the copy by its seq.
type sharded struct {
	*store
}

func newSharded(st *store) *sharded { return &sharded{store: st} }

// How old a pending create or destroy must be before any node repairs it
// (well past the deadline of the request that wrote it), and how often
// nodes look.
const (
	pendingAge   = 10 * time.Second
	repairsEvery = 5 * time.Second
)

// A pending entry that young is a join or create under way, not a leftover.
const youngPending = 30 * time.Second

func (r *sharded) metaKey(channel string) string    { return r.logKey(channel, "meta") }
func (r *sharded) membersKey(channel string) string { return r.logKey(channel, "members") }
func (r *sharded) globalKey(suffix string) string   { return r.prefix + "{cluster}:" + suffix }

// dueKey is the part of the presence index that holds user.
func (r *sharded) dueKey(user string) string {
	return r.prefix + "{pdue:" + strconv.Itoa(int(crc16(user)%dueParts)) + "}"
}

const dueParts = 16

// truthKeys are the keys of a channel that its truth scripts take, in
// their order.
func (r *sharded) truthKeys(channel string) []string {
	return []string{r.metaKey(channel), r.logKey(channel, "gen"), r.membersKey(channel),
		r.logKey(channel, "roster"), r.logKey(channel, "names"), r.logKey(channel, "log")}
}

// inSlot returns the pub/sub channel of n and whether it is in key's hash
// slot: a script there can publish it. A notice on another slot is
// published after the step (publishAfter).
func (r *sharded) inSlot(n Notice, key string) (string, bool) {
	if n.Topic == "" {
		return "", true
	}
	c := r.channelOf(n.Topic)
	return c, keySlot(c) == keySlot(key)
}

// publishAfter publishes a notice that its step could not: one of another
// hash slot. The change is made; a notice lost here is the same as one
// lost in delivery, which the gateway's resync makes up for.
func (r *sharded) publishAfter(ctx context.Context, channel string, payload []byte) {
	if channel == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()
	if err := r.client.SPublish(ctx, channel, payload).Err(); err != nil {
		r.log.Warn("publish a notice after its change", "channel", channel, "err", err)
	}
}

// shardedScript is a script of a single Redis with its publishes made
// sharded (SPUBLISH), for a cluster.
func shardedScript(src string) *redis.Script {
	return redis.NewScript(strings.ReplaceAll(src, "redis.call('PUBLISH'", "redis.call('SPUBLISH'"))
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// call is one script to run among others (store.runAll).
type call struct {
	s    *redis.Script
	keys []string
	args []any
}

// runAll runs calls in one pipeline (go-redis sends each primary its own)
// with EVALSHA; those a primary does not know (NOSCRIPT: it was a replica
// a moment ago) go again with EVAL, which NOSCRIPT shows did not run. It
// returns each call's result, and an error if Redis could not be reached.
func (r *store) runAll(ctx context.Context, calls []call) ([]*redis.Cmd, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	cmds := make([]*redis.Cmd, len(calls))
	if len(calls) == 0 {
		return cmds, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	pipe := r.client.Pipeline()
	for i, c := range calls {
		cmds[i] = c.s.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	pipe.Exec(ctx)
	var again []int
	for i, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe = r.client.Pipeline()
		for _, i := range again {
			cmds[i] = calls[i].s.Eval(ctx, pipe, calls[i].keys, calls[i].args...)
		}
		pipe.Exec(ctx)
	}
	for _, c := range cmds {
		// Redis's answer to one command concerns that command only.
		if err := c.Err(); err != nil && err != redis.Nil && rediserr.Unavailable(err) {
			return cmds, r.wrap(err)
		}
	}
	return cmds, nil
}

// background runs the repairs of the layout until stop closes.
func (r *sharded) background(stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Go(func() { r.repairs(stop) })
}
