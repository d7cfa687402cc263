package gateway_test

// Multi-node tests: several gateways share one Redis (a throwaway
// redis-server or CHAT_TEST_REDIS_URL, each test under a key prefix of its
// own), with clients on real websockets spread over them.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
)

// redisCluster returns a function that makes the backend of one more node
// of a cluster on a Redis of t's own prefix.
// The shared state is audited when t ends (after the nodes stop).
func redisCluster(t *testing.T) func() backend {
	url, prefix := redistest.URL(t)
	t.Cleanup(func() { audit(t, url, prefix) })
	return func() backend { return redisBackend(t, url, prefix, "") }
}

// redisBackend is the backend of a node on the Redis at url under prefix;
// if addr is set, the node reaches that Redis at addr instead (a proxy).
func redisBackend(t *testing.T, url, prefix, addr string) backend {
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "" {
		opts.Addr = addr
	}
	pubsub.TuneOptions(opts, 0)
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() }) // after the node, which is cleaned up first
	return backend{
		connect: func(h pubsub.Handler) (pubsub.Backend, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := pubsub.NewRedis(ctx, pubsub.RedisOptions{
				Client:  client,
				Prefix:  prefix,
				NodeID:  fmt.Sprintf("node-%p", h),
				Handler: h,
				Logger:  testLogger(t),
			})
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		store: auth.NewRedis(client, auth.RedisOptions{Prefix: prefix}),
	}
}

// startCluster starts n nodes that share one Redis.
func startCluster(t *testing.T, n int, cfg gateway.Config) []*node {
	t.Helper()
	return startNodes(t, n, cfg, redisCluster(t))
}

func startNodes(t *testing.T, n int, cfg gateway.Config, nextBackend func() backend) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		c := cfg
		c.NodeID = fmt.Sprint("n", i)
		nodes[i] = startNode(t, nextBackend(), c)
	}
	return nodes
}

// A fleet starts n nodes that share one backend.
type fleet func(t *testing.T, n int, cfg gateway.Config) []*node

// onEveryRedis runs test with nodes that share a single Redis, and with
// nodes that share a Redis Cluster (sharded pub/sub, the cluster's key
// layout).
func onEveryRedis(t *testing.T, test func(t *testing.T, start fleet)) {
	t.Run("redis", func(t *testing.T) { test(t, startCluster) })
	t.Run("redis-cluster", func(t *testing.T) { test(t, startRedisCluster) })
}

// sentinel proves that the sessions to (all of one user) received nothing
// else before it: from sends their user a private message and waits for
// the ack; the next frame of each must be it. Redis delivers to a node in
// the order in which it processed the publishes, so anything published
// before the sentinel would have come first.
func sentinel(t *testing.T, from *client, to ...*client) {
	t.Helper()
	text := fmt.Sprintf("sentinel-%d", time.Now().UnixNano())
	from.send(`{"type":"message","target":"@` + to[0].login.Username + `","message":"` + text + `","id":"` + text + `"}`)
	from.expectAck(text)
	if from.login.Identifier != to[0].login.Identifier {
		if m := from.expect("message"); m["message"] != text {
			from.t.Fatalf("%s: want its own copy of the sentinel, got %v", from.login.Username, m)
		}
	}
	for _, c := range to {
		if m := c.read(); m["type"] != "message" || m["message"] != text {
			c.t.Fatalf("%s: want nothing before the sentinel, got %v", c.login.Username, m)
		}
	}
}

func expectEvent(t *testing.T, c *client, event, identifier string) map[string]any {
	t.Helper()
	m := c.expect("event")
	if m["event"] != event || m["identifier"] != identifier {
		t.Fatalf("%s: want event %s of %s, got %v", c.login.Username, event, identifier, m)
	}
	return m
}

// TestClusterRules walks every row of spec 3.3 with the clients spread
// over three nodes: alice has a session on n0 and one on n1, bob is on n1,
// carol on n2.
func TestClusterRules(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 3, gateway.Config{})
		aliceLogin := nodes[0].login("alice")
		alice0 := nodes[0].dial(aliceLogin)
		alice1 := nodes[1].dial(aliceLogin)
		bob := nodes[1].user("bob")
		carol := nodes[2].user("carol")
		everyone := []*client{alice0, alice1, bob, carol}
		aliceID := aliceLogin.Identifier

		t.Run("create is seen by every client on every node", func(t *testing.T) {
			alice0.do("create", "#go")
			for _, c := range everyone {
				expectEvent(t, c, "create", "#go")
			}
			carol.send(`{"type":"command","action":"create","target":"#go","id":"c"}`)
			carol.expectError("already_exists", "c")
		})
		t.Run("join reaches every session of every member", func(t *testing.T) {
			bob.do("join", "#go")
			expectEvent(t, bob, "join", bob.login.Identifier)
			alice0.do("join", "#go")
			for _, c := range []*client{alice0, alice1, bob} {
				if m := expectEvent(t, c, "join", aliceID); m["target"] != "#go" || m["username"] != "alice" {
					t.Fatalf("%s: %v", c.login.Username, m)
				}
			}
			sentinel(t, bob, carol) // not a member: heard nothing
		})
		t.Run("message reaches every session of every member", func(t *testing.T) {
			bob.send(`{"type":"message","target":"#go","message":"hello","id":"m1"}`)
			bob.expectAck("m1")
			for _, c := range []*client{alice0, alice1, bob} {
				if m := c.expect("message"); m["message"] != "hello" || m["username"] != "bob" || m["target"] != "#go" {
					t.Fatalf("%s: %v", c.login.Username, m)
				}
			}
			sentinel(t, bob, carol)
			// A message sent on n1 by alice's second session reaches her first.
			alice1.send(`{"type":"message","target":"#go","message":"from n1","id":"m2"}`)
			alice1.expectAck("m2")
			for _, c := range []*client{alice0, alice1, bob} {
				if m := c.expect("message"); m["message"] != "from n1" {
					t.Fatalf("%s: %v", c.login.Username, m)
				}
			}
		})
		t.Run("private message reaches every session of both", func(t *testing.T) {
			carol.send(`{"type":"message","target":"@alice","message":"psst","id":"p"}`)
			carol.expectAck("p")
			for _, c := range []*client{alice0, alice1, carol} {
				if m := c.expect("message"); m["target"] != "@alice" || m["message"] != "psst" || m["username"] != "carol" {
					t.Fatalf("%s: %v", c.login.Username, m)
				}
			}
			sentinel(t, carol, bob)
			alice1.send(`{"type":"message","target":"@alice","message":"note to self","id":"s"}`)
			alice1.expectAck("s")
			for _, c := range []*client{alice0, alice1} {
				if m := c.expect("message"); m["message"] != "note to self" {
					t.Fatalf("%s: %v", c.login.Username, m)
				}
			}
			sentinel(t, carol, alice0, alice1) // once each, not twice
		})
		t.Run("leave reaches the remaining members and every session of the leaver", func(t *testing.T) {
			alice1.do("leave", "#go")
			for _, c := range []*client{alice0, alice1, bob} {
				if m := expectEvent(t, c, "left", aliceID); m["target"] != "#go" {
					t.Fatalf("%s: %v", c.login.Username, m)
				}
			}
			bob.send(`{"type":"message","target":"#go","message":"after","id":"a"}`)
			bob.expectAck("a")
			bob.expect("message")
			sentinel(t, bob, alice0, alice1) // no longer receives the channel, on any node
			alice0.send(`{"type":"command","action":"leave","target":"#go","id":"l"}`)
			alice0.expectError("not_member", "l")
		})
		t.Run("destroy only by the owner, seen by every client on every node", func(t *testing.T) {
			bob.send(`{"type":"command","action":"destroy","target":"#go","id":"x"}`)
			bob.expectError("forbidden", "x")
			alice1.do("destroy", "#go")
			for _, c := range everyone {
				expectEvent(t, c, "destroy", "#go")
			}
			bob.send(`{"type":"message","target":"#go","message":"gone?","id":"g"}`)
			bob.expectError("not_found", "g")
		})
		t.Run("a session opened on another node sees the state", func(t *testing.T) {
			alice0.do("create", "#kept")
			for _, c := range everyone {
				expectEvent(t, c, "create", "#kept")
			}
			carol.do("join", "#kept")
			expectEvent(t, carol, "join", carol.login.Identifier)
			carol2 := nodes[0].dial(carol.login)
			if got := fmt.Sprint(carol2.welcome["channels"], carol2.welcome["joined"]); got != "[#kept] [#kept]" {
				t.Fatalf("welcome on another node: channels and joined %s", got)
			}
		})
	})
}

// TestClusterCreateRace: users on two nodes create the same channel at
// once; exactly one gets the ack, the other already_exists.
func TestClusterCreateRace(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 2, gateway.Config{RateLimit: 1000})
		a, b := nodes[0].user("alice"), nodes[1].user("bob")
		for round := range 100 {
			ch := fmt.Sprint("#race", round)
			for _, c := range []*client{a, b} {
				c.send(`{"type":"command","action":"create","target":"` + ch + `","id":"` + ch + `"}`)
			}
			wins := 0
			for _, c := range []*client{a, b} {
				// Each sees its answer and exactly one create event, in
				// either order.
				answered, created := false, false
				for !answered || !created {
					m := c.read()
					switch {
					case m["type"] == "ack" && m["id"] == ch:
						answered = true
						wins++
					case m["type"] == "error" && m["id"] == ch:
						if m["code"] != "already_exists" {
							t.Fatalf("round %d: %v", round, m)
						}
						answered = true
					case m["type"] == "event" && m["event"] == "create" && m["identifier"] == ch && !created:
						created = true
					default:
						t.Fatalf("round %d: %s got %v", round, c.login.Username, m)
					}
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d creates succeeded, want 1", round, wins)
			}
		}
	})
}

// TestClusterJoinThenPublish: a user joins on one node and, the moment the
// ack arrives, a member on another node sends a message: the joiner gets
// it, every round. Between rounds the joiner leaves, so that its node
// unsubscribes from the channel and subscribes again each time.
func TestClusterJoinThenPublish(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 2, gateway.Config{RateLimit: 1e6})
		owner := nodes[1].user("owner")
		joiner := nodes[0].user("joiner")
		owner.do("create", "#jp")
		expectEvent(t, owner, "create", "#jp")
		expectEvent(t, joiner, "create", "#jp")
		owner.do("join", "#jp")
		expectEvent(t, owner, "join", owner.login.Identifier)
		const rounds = 2000
		for round := range rounds {
			joiner.do("join", "#jp")
			text := fmt.Sprint("at once ", round)
			owner.send(`{"type":"message","target":"#jp","message":"` + text + `"}`)
			for _, c := range []*client{joiner, owner} {
				expectEvent(t, c, "join", joiner.login.Identifier)
				if m := c.expect("message"); m["message"] != text {
					t.Fatalf("round %d: %s got %v", round, c.login.Username, m)
				}
			}
			joiner.do("leave", "#jp")
			for _, c := range []*client{joiner, owner} {
				expectEvent(t, c, "left", joiner.login.Identifier)
			}
		}
	})
}

// TestClusterReconnectElsewhere: a client that loses its node reconnects
// to another and finds its memberships, and its traffic, intact.
func TestClusterReconnectElsewhere(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 3, gateway.Config{})
		bob := nodes[2].user("bob")
		aliceLogin := nodes[0].login("alice")
		alice := nodes[0].dial(aliceLogin)
		alice.do("create", "#home")
		expectEvent(t, alice, "create", "#home")
		expectEvent(t, bob, "create", "#home")
		alice.do("join", "#home")
		expectEvent(t, alice, "join", aliceLogin.Identifier)
		bob.do("join", "#home")
		expectEvent(t, bob, "join", bob.login.Identifier)
		expectEvent(t, alice, "join", bob.login.Identifier)

		stopped := make(chan struct{})
		go func() { nodes[0].stop(); close(stopped) }() // alice's node goes away
		alice.expectClose(1001)
		<-stopped

		again := nodes[1].dial(aliceLogin) // same token, another node
		for k, want := range map[string]string{"channels": "[#home]", "joined": "[#home]", "owned": "[#home]"} {
			if got := fmt.Sprint(again.welcome[k]); got != want {
				t.Fatalf("welcome %s = %s, want %s", k, got, want)
			}
		}
		bob.send(`{"type":"message","target":"#home","message":"welcome back","id":"w"}`)
		bob.expectAck("w")
		if m := again.expect("message"); m["message"] != "welcome back" {
			t.Fatalf("got %v", m)
		}
		bob.expect("message")
	})
}

// TestClusterFanOut: a few hundred clients over two nodes in one channel;
// every message reaches every client exactly once, in each sender's order.
func TestClusterFanOut(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 2, gateway.Config{SendQueue: 4096, RateLimit: 1000})
		const clients, senders, each = 300, 6, 30
		owner := nodes[0].user("owner")
		owner.do("create", "#fan")
		expectEvent(t, owner, "create", "#fan")

		type tally struct {
			mu   sync.Mutex
			seen map[string]int // sender -> next seq
			n    int
			err  error
		}
		tallies := make([]*tally, clients)
		cs := make([]*client, clients)
		var wg sync.WaitGroup
		done := make(chan struct{})
		for i := range clients {
			c := nodes[i%2].user(fmt.Sprint("fan", i))
			c.do("join", "#fan")
			cs[i] = c
			tl := &tally{seen: make(map[string]int)}
			tallies[i] = tl
			pending := c.pending
			c.pending = nil
			wg.Go(func() {
				frames := make(chan []byte)
				go func() { // reads the socket; stops when the test closes it
					defer close(frames)
					for _, b := range pending {
						frames <- b
					}
					for {
						_, b, err := c.conn.Read(context.Background())
						if err != nil {
							return
						}
						select {
						case frames <- b:
						case <-done:
							return
						}
					}
				}()
				for b := range frames {
					var m map[string]any
					if err := json.Unmarshal(b, &m); err != nil || m["type"] != "message" {
						continue // join events of later joiners
					}
					var sender string
					var seq int
					fmt.Sscanf(m["message"].(string), "%s %d", &sender, &seq)
					tl.mu.Lock()
					if seq != tl.seen[sender] && tl.err == nil {
						tl.err = fmt.Errorf("from %s got %d, want %d", sender, seq, tl.seen[sender])
					}
					tl.seen[sender] = seq + 1
					tl.n++
					full := tl.n == senders*each
					tl.mu.Unlock()
					if full {
						return
					}
				}
			})
		}
		var sw sync.WaitGroup
		for s := range senders {
			c := nodes[s%2].user(fmt.Sprint("sender", s))
			c.do("join", "#fan")
			sw.Go(func() {
				for i := range each {
					c.send(fmt.Sprintf(`{"type":"message","target":"#fan","message":"%s %d"}`, c.login.Username, i))
				}
			})
		}
		sw.Wait()
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(60 * time.Second):
			for i, tl := range tallies {
				tl.mu.Lock()
				if tl.n != senders*each {
					t.Errorf("client %d (node %d) got %d of %d messages", i, i%2, tl.n, senders*each)
				}
				tl.mu.Unlock()
			}
			close(done)
			t.FailNow()
		}
		close(done)
		for i, tl := range tallies {
			if tl.err != nil {
				t.Errorf("client %d: %v", i, tl.err)
			}
			if tl.n != senders*each {
				t.Errorf("client %d got %d messages, want %d", i, tl.n, senders*each)
			}
		}
	})
}

// TestClusterJoinReachesOtherSessions: when a user joins on one node, its
// session on another node, where nobody else is in the channel, starts
// receiving the channel at once: the join event, and a message sent by
// another member right after the ack.
func TestClusterJoinReachesOtherSessions(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 3, gateway.Config{RateLimit: 1000})
		aliceLogin := nodes[0].login("alice")
		alice0, alice1 := nodes[0].dial(aliceLogin), nodes[1].dial(aliceLogin)
		bob := nodes[2].user("bob")
		for round := range 100 {
			ch := fmt.Sprint("#other", round)
			bob.do("create", ch)
			for _, c := range []*client{alice0, alice1, bob} {
				expectEvent(t, c, "create", ch)
			}
			bob.do("join", ch)
			expectEvent(t, bob, "join", bob.login.Identifier)

			alice0.do("join", ch)
			text := fmt.Sprint("right after ", round)
			bob.send(`{"type":"message","target":"` + ch + `","message":"` + text + `"}`)
			for _, c := range []*client{alice0, alice1, bob} {
				expectEvent(t, c, "join", aliceLogin.Identifier)
				if m := c.expect("message"); m["message"] != text {
					t.Fatalf("round %d: %s got %v", round, c.login.Username, m)
				}
			}
			bob.do("destroy", ch)
			for _, c := range []*client{alice0, alice1, bob} {
				expectEvent(t, c, "destroy", ch)
			}
		}
	})
}

// TestClusterMissedChannelEvents: channels created and destroyed while a
// node was cut off from Redis are told to the node's clients, once each,
// when it is back.
func TestClusterMissedChannelEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	n0, n1, proxy := startCutPair(t, gateway.Config{}, reg)
	bob := n0.user("bob")
	alice := n1.user("alice")
	bob.do("create", "#old")
	expectEvent(t, bob, "create", "#old")
	expectEvent(t, alice, "create", "#old")

	proxy.Stop()
	eventually(t, 15*time.Second, "n1 not ready", func() bool { return !ready(t, n1) })
	bob.do("create", "#new")
	expectEvent(t, bob, "create", "#new")
	bob.do("destroy", "#old")
	expectEvent(t, bob, "destroy", "#old")
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "n1 ready again", func() bool { return ready(t, n1) })

	var got []string
	for range 2 {
		m := alice.expect("event")
		got = append(got, fmt.Sprint(m["event"], " ", m["identifier"]))
	}
	slices.Sort(got)
	if want := []string{"create #new", "destroy #old"}; !slices.Equal(got, want) {
		t.Fatalf("alice was told %q after the outage, want %q", got, want)
	}
	sentinel(t, bob, alice)
	// The resync counts itself once all its steps are done, after the
	// events went out.
	eventually(t, 5*time.Second, "chat_resyncs_total{result=ok} to count the resync", func() bool {
		return counter(t, reg, "chat_resyncs_total", "ok") >= 1
	})
	if n := counter(t, reg, "chat_resync_events_total", ""); n != 2 {
		t.Errorf("chat_resync_events_total = %v, want 2", n)
	}
}

// startCutPair starts two nodes of a cluster: n0 reaches Redis directly,
// n1 through proxy, which a test stops to cut n1 alone off. n1's metrics
// go to reg1, if set.
func startCutPair(t *testing.T, cfg gateway.Config, reg1 prometheus.Registerer) (n0, n1 *node, proxy *toxiproxy.Proxy) {
	t.Helper()
	url, prefix := redistest.URL(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy = redistest.Proxy(t, opts.Addr)
	cfg.NodeID = "n0"
	n0 = startNode(t, redisBackend(t, url, prefix, ""), cfg)
	cfg.NodeID = "n1"
	n1 = startNodeWith(t, redisBackend(t, url, prefix, proxy.Listen), cfg, nodeOptions{metrics: reg1})
	return n0, n1, proxy
}

// ready reports whether n's /readyz answers 200.
func ready(t *testing.T, n *node) bool {
	resp, err := http.Get(n.http.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestClusterRateLimitAcrossNodes: a user with sessions on two nodes has
// one rate limit, not one per node (spec 3.3); alone on a node again, the
// user is limited by that node's bucket only.
func TestClusterRateLimitAcrossNodes(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		// A burst of one and a token every 50 s: nothing refills meanwhile.
		// Places refresh (and the nodes count a shared user's nodes) every
		// 200 ms.
		cfg := gateway.Config{RateLimit: 0.02, PlaceTTL: 600 * time.Millisecond}
		nodes := start(t, 2, cfg)
		l := nodes[0].login("alice")
		on0 := nodes[0].dial(l)
		on1 := nodes[1].dial(l) // n1 counts n0; n0 hears n1's !here
		if !nodes[1].gw.Shared("alice") {
			t.Fatal("n1 does not count alice as shared after attaching her second node")
		}
		eventually(t, 5*time.Second, "n0 to count alice as shared", func() bool { return nodes[0].gw.Shared("alice") })

		// Requests that change nothing: allowed, they fail with not_found.
		on1.send(`{"type":"command","action":"leave","target":"#nope","id":"1"}`)
		on1.expectError("not_found", "1")
		on0.send(`{"type":"command","action":"leave","target":"#nope","id":"2"}`)
		on0.expectError("rate_limited", "2") // n0's own bucket is still full
		on1.send(`{"type":"command","action":"leave","target":"#nope","id":"3"}`)
		on1.expectError("rate_limited", "3")

		on1.conn.Close(websocket.StatusNormalClosure, "bye")
		eventually(t, 10*time.Second, "n0 to count alice as local again", func() bool { return !nodes[0].gw.Shared("alice") })
		on0.send(`{"type":"command","action":"leave","target":"#nope","id":"4"}`)
		on0.expectError("not_found", "4") // the refused request took no token
		on0.send(`{"type":"command","action":"leave","target":"#nope","id":"5"}`)
		on0.expectError("rate_limited", "5")
	})
}

// TestClusterRateLimitAfterOutage: a node that found a user local while
// the user's other node was cut off (that node could not be counted) hears
// of the user again when the other node is back.
func TestClusterRateLimitAfterOutage(t *testing.T) {
	// Shared users are counted every 200 ms.
	n0, n1, proxy := startCutPair(t, gateway.Config{PlaceTTL: 600 * time.Millisecond}, nil)
	l := n0.login("alice")
	n0.dial(l)
	n1.dial(l)
	eventually(t, 5*time.Second, "n0 to count alice as shared", func() bool { return n0.gw.Shared("alice") })

	proxy.Stop()
	eventually(t, 15*time.Second, "n0 to count alice as local while n1 is cut off", func() bool { return !n0.gw.Shared("alice") })
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "n0 to count alice as shared again", func() bool { return n0.gw.Shared("alice") })
}
