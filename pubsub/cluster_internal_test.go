package pubsub

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/redistest"
)

// openCluster opens a backend on the test binary's shared Redis Cluster
// under a prefix of t's own, delivering to h.
func openCluster(t testing.TB, prefix string, h Handler) (*Redis, *sharded) {
	t.Helper()
	url, p := redistest.ClusterURL(t)
	if prefix == "" {
		prefix = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := NewRedis(ctx, RedisOptions{URL: url, Prefix: prefix, NodeID: t.Name(), Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, r.keyspace.(*sharded)
}

// recorder keeps what a handler received.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) handle(topic string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, topic+" "+string(payload))
}

func (r *recorder) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		ok := slices.Contains(r.got, want)
		r.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%q never arrived; got %q", want, r.got)
}

func mustAudit(t *testing.T, r *Redis) {
	t.Helper()
	problems, err := r.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error("audit: " + p)
	}
}

// A node that dies between the truth of a create or destroy and its
// listing leaves a pending entry; the repairs of any node finish the
// change from the truth, with its notice.
func TestClusterRepairsPending(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	r, k := openCluster(t, "", rec.handle)
	if err := r.Subscribe(ctx, "cluster"); err != nil {
		t.Fatal(err)
	}
	// The first steps of a create of #half, as CreateChannel takes them,
	// and no more.
	listing := k.listingKeys()
	field, value := "#half\x00dead", pendingValue("create", k.channelOf("cluster"), []byte("created #half"), nowMillis()-int64(time.Minute/time.Millisecond))
	if _, err := k.run(ctx, beginCreateScript, listing, "#half", field, value); err != nil {
		t.Fatal(err)
	}
	if _, err := k.run(ctx, createTruthScript, k.truthKeys("#half")[:2], "alice"); err != nil {
		t.Fatal(err)
	}
	if chs, _ := r.Channels(ctx); slices.Contains(chs, "#half") {
		t.Fatal("#half is listed before its create is settled")
	}
	if n, err := k.repairPending(ctx, pendingAge); err != nil || n != 1 {
		t.Fatalf("repaired %d, %v; want 1", n, err)
	}
	rec.wait(t, "cluster created #half")
	if chs, _ := r.Channels(ctx); !slices.Contains(chs, "#half") {
		t.Fatal("#half is not listed after the repair")
	}
	if _, owned, _ := r.Memberships(ctx, "alice"); !slices.Equal(owned, []string{"#half"}) {
		t.Fatalf("alice owns %q after the repair, want [#half]", owned)
	}
	mustAudit(t, r)

	// A destroy that stopped after its truth: the channel is gone, the
	// listing still has it until the repair.
	if _, err := r.Join(ctx, "#half", Peer{ID: "bob", Username: "bob"}); err != nil {
		t.Fatal(err)
	}
	field, value = "#half\x00dead2", pendingValue("destroy", k.channelOf("cluster"), []byte("destroyed #half"), nowMillis()-int64(time.Minute/time.Millisecond))
	if _, err := k.run(ctx, hsetScript, listing[2:], field, value); err != nil {
		t.Fatal(err)
	}
	if _, err := k.run(ctx, destroyTruthScript, k.truthKeys("#half"), "alice"); err != nil {
		t.Fatal(err)
	}
	// A create of the same name waits until the destroy is settled.
	if err := r.CreateChannel(ctx, "#half", "carol", Notice{}); err == nil {
		t.Fatal("#half created again while its destroy is pending")
	}
	if n, err := k.repairPending(ctx, pendingAge); err != nil || n != 1 {
		t.Fatalf("repaired %d, %v; want 1", n, err)
	}
	rec.wait(t, "cluster destroyed #half")
	// bob's index still names #half: a reader finds it stale and drops it.
	if joined, _, _ := r.Memberships(ctx, "bob"); len(joined) != 0 {
		t.Fatalf("bob is a member of %q after the destroy", joined)
	}
	mustAudit(t, r)
	if err := r.CreateChannel(ctx, "#half", "carol", Notice{}); err != nil {
		t.Fatalf("create again after the repair: %v", err)
	}
}

// A leave whose second step (the user's index) did not run: the truth
// says not a member, and readers say so too and repair the index; a join
// whose last step did not run: readers say a member.
func TestClusterIndexesRepairedByReaders(t *testing.T) {
	ctx := context.Background()
	r, k := openCluster(t, "", nil)
	if err := r.CreateChannel(ctx, "#idx", "alice", Notice{}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "carol"} {
		if _, err := r.Join(ctx, "#idx", Peer{ID: u, Username: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.run(ctx, leaveTruthScript, k.truthKeys("#idx")[:5], "bob", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := k.run(ctx, indexBeginScript, []string{k.userKey("dave", "joined"), k.userKey("dave", "read")}, "#idx"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.run(ctx, joinTruthScript, k.truthKeys("#idx")[:5], "dave", "dave"); err != nil {
		t.Fatal(err)
	}
	joined, err := r.Joined(ctx, "bob", "carol", "dave")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{}, {"#idx"}, {"#idx"}}
	for i := range want {
		if !slices.Equal(joined[i], want[i]) {
			t.Fatalf("joined: %q, want %q", joined, want)
		}
	}
	if v, err := k.client.HGet(ctx, k.userKey("bob", "joined"), "#idx").Result(); err != redis.Nil {
		t.Fatalf("bob's index still holds #idx (%q, %v) after a reader saw it", v, err)
	}
	mustAudit(t, r)
}

// BenchmarkClusterWait measures what WAIT 1 after the message script
// (every message on a replica before the ack) costs: one message at a
// time, and 32 senders at once.
func BenchmarkClusterWait(b *testing.B) {
	r, k := openCluster(b, "", nil)
	ctx := context.Background()
	if err := r.CreateChannel(ctx, "#w", "u", Notice{}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Join(ctx, "#w", Peer{ID: "u", Username: "u"}); err != nil {
		b.Fatal(err)
	}
	node, err := k.client.(*redis.ClusterClient).MasterForKey(ctx, k.metaKey("#w"))
	if err != nil {
		b.Fatal(err)
	}
	m := Message{From: "u", Head: []byte(`{"type":"message","target":"#w","message":"hello, world"`), Topics: []string{"c:#w"}, Prefix: []byte("!msg #w ")}
	keys := []string{k.metaKey("#w"), k.membersKey("#w"), k.logKey("#w", "seq"), k.logKey("#w", "log")}
	args := append(append(append([]any{m.From}, k.storeArgs(m)...), m.Prefix), k.channelOf("c:#w"))
	send := func(wait bool) error {
		pipe := node.Pipeline()
		clusterPublishMessageScript.EvalSha(ctx, pipe, keys, args...)
		if wait {
			pipe.Do(ctx, "WAIT", 1, 1000)
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			return err
		}
		if wait {
			if n, _ := cmds[1].(*redis.Cmd).Int(); n < 1 {
				b.Fatalf("WAIT answered %d replicas", n)
			}
		}
		return nil
	}
	clusterPublishMessageScript.Load(ctx, node)
	for _, wait := range []bool{false, true} {
		name := "script"
		if wait {
			name = "script+WAIT1"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := send(wait); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parallel32", func(b *testing.B) {
			b.SetParallelism(16) // 2 cores: 32 goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := send(wait); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
