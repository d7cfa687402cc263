package gateway_test

// Protocol v2 across nodes: gap-free delivery through pub/sub faults, a
// Redis that comes back empty, presence and read markers across nodes.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/redistest"
)

// startFaultPair starts two nodes on a Redis of the test's own: n0 reaches
// it directly, n1 through a proxy that the test can blackhole.
func startFaultPair(t *testing.T, cfg gateway.Config, reg1 prometheus.Registerer) (srv *redistest.Server, n0, n1 *node, hole func(on bool)) {
	t.Helper()
	srv = redistest.Start(t, redistest.Options{})
	proxy := redistest.Proxy(t, srv.Addr)
	cfg.NodeID = "n0"
	n0 = startNode(t, redisBackend(t, srv.URL, "gap:", ""), cfg)
	cfg.NodeID = "n1"
	n1 = startNodeWith(t, redisBackend(t, srv.URL, "gap:", proxy.Listen), cfg, nodeOptions{metrics: reg1})
	hole = func(on bool) { // may run on any goroutine
		for _, stream := range []string{"upstream", "downstream"} {
			var err error
			if on {
				_, err = proxy.Toxics.AddToxicJson(strings.NewReader(
					`{"name":"hole-` + stream + `","type":"timeout","stream":"` + stream + `","attributes":{"timeout":0}}`))
			} else {
				err = proxy.Toxics.RemoveToxic(context.Background(), "hole-"+stream)
			}
			if err != nil {
				t.Error(err)
			}
		}
	}
	return srv, n0, n1, hole
}

// receiveSeqs reads c's messages of target until it has want of them,
// checking that they come in increasing seq, each once, none missing
// after the first; it returns the texts.
func receiveSeqs(t *testing.T, c *client, target string, want int, d time.Duration) []string {
	t.Helper()
	var texts []string
	last := 0.0
	deadline := time.Now().Add(d)
	for len(texts) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s got %d of %d messages of %s", c.login.Username, len(texts), want, target)
		}
		m := c.readUntil(deadline)
		if m["type"] != "message" || m["target"] != target {
			continue
		}
		seq := m["seq"].(float64)
		if last != 0 && seq != last+1 {
			t.Fatalf("%s got seq %v after %v", c.login.Username, seq, last)
		}
		last = seq
		texts = append(texts, m["message"].(string))
	}
	return texts
}

// readUntil is read with a deadline of its own.
func (c *client) readUntil(deadline time.Time) map[string]any {
	c.t.Helper()
	if len(c.pending) > 0 {
		return c.read()
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		c.t.Fatalf("%s read: %v", c.login.Username, err)
	}
	c.pending = append(c.pending, b)
	return c.read()
}

// TestClusterGapRepair: while a sender on one node sends numbered
// messages, the receiving node's pub/sub connection is killed, and then
// its link to Redis goes silent for longer than its heartbeat allows:
// every receiver, on either node, gets every message once, in order.
func TestClusterGapRepair(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, n0, n1, hole := startFaultPair(t, gateway.Config{RateLimit: 1000}, reg)
	sender := n0.user("sender")
	near, far := n0.user("near"), n1.user("far")
	sender.do("create", "#gap")
	for _, c := range []*client{sender, near, far} {
		c.do("join", "#gap")
	}
	flush(t, sender, near)
	flush(t, sender, far)

	const total = 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() { // the faults, while the messages go out
		admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer admin.Close()
		<-time.After(300 * time.Millisecond)
		if _, err := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result(); err != nil {
			t.Error(err)
		}
		<-time.After(time.Second)
		hole(true)
		select {
		case <-time.After(5 * time.Second): // past the heartbeat: n1 rebuilds its pub/sub
		case <-stop:
		}
		hole(false)
	})
	// Each message is retried by id until acked; the receivers' frames
	// wait in their sockets meanwhile.
	for i := range total {
		id := fmt.Sprint("g", i)
		for try := 0; ; try++ {
			sender.send(`{"type":"message","target":"#gap","message":"` + fmt.Sprint(i) + `","id":"` + id + `"}`)
			if a := sender.answer(id); a["type"] == "ack" {
				break
			} else if try == 50 {
				t.Fatalf("message %d not acked after %d tries: %v", i, try, a)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []*client{near, far} {
		got := receiveSeqs(t, c, "#gap", total, 60*time.Second)
		for i, text := range got {
			if text != fmt.Sprint(i) {
				t.Fatalf("%s's message %d is %q", c.login.Username, i, text)
			}
		}
	}
	// The faults did cost the live path messages, which history filled.
	if n := counter(t, reg, "chat_gap_repaired_messages_total", ""); n == 0 {
		t.Fatal("n1 repaired no message: the faults lost nothing, the test proves nothing")
	} else {
		t.Logf("n1 repaired %v messages in %v repairs", n, counter(t, reg, "chat_gap_repairs_total", ""))
	}
}

// answer reads until the ack or error of request id, keeping the rest.
func (c *client) answer(id string) map[string]any {
	c.t.Helper()
	for {
		for i, b := range c.pending {
			var m map[string]any
			if json.Unmarshal(b, &m) == nil && m["id"] == id && (m["type"] == "ack" || m["type"] == "error") {
				c.pending = append(c.pending[:i:i], c.pending[i+1:]...)
				return m
			}
		}
		c.pending = append(c.pending, c.readWire())
	}
}

// TestClusterRedisComesBackEmpty: a Redis restarted without its data is a
// new history store: a new epoch in the next welcome, numbering from 1.
func TestClusterRedisComesBackEmpty(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{}) // no persistence
	n := startNode(t, redisBackend(t, srv.URL, "empty:", ""), gateway.Config{})
	alice := n.user("alice")
	alice.do("create", "#e")
	alice.do("join", "#e")
	alice.sendMsg("#e", "before", "1")
	epoch := alice.welcome["epoch"]

	srv.Kill(t)
	srv.Restart(t)
	eventually(t, 30*time.Second, "the node ready again", func() bool { return ready(t, n) })
	again := n.user("alice") // the login session was lost with the rest
	if again.welcome["epoch"] == epoch || again.welcome["epoch"] == "" {
		t.Fatalf("epoch %v after the data loss, was %v", again.welcome["epoch"], epoch)
	}
	again.do("create", "#e")
	again.do("join", "#e")
	if seq := again.sendMsg("#e", "after", "2"); seq != 1 {
		t.Fatalf("first message after the data loss got seq %v, want 1", seq)
	}
	if m := receiveSeqs(t, again, "#e", 1, 10*time.Second); m[0] != "after" {
		t.Fatalf("got %v", m)
	}
}

// TestClusterPresenceAndMarkers: presence events and read markers reach
// sessions on other nodes.
func TestClusterPresenceAndMarkers(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 2, gateway.Config{PresenceGrace: 300 * time.Millisecond})
		bob := nodes[1].user("bob")
		bob.do("create", "#p")
		bob.do("join", "#p")
		aliceLogin := nodes[0].login("alice")
		alice0 := nodes[0].dial(aliceLogin)
		alice0.do("join", "#p")
		alice1 := nodes[1].dial(aliceLogin)
		flush(t, bob, alice0, alice1)

		// A marker moved on one node reaches her session on the other.
		bob.sendMsg("#p", "read me", "m1")
		alice0.send(`{"type":"command","action":"read","target":"#p","seq":1,"id":"r"}`)
		if a := alice0.answer("r"); a["type"] != "ack" {
			t.Fatalf("read: %v", a)
		}
		for {
			if m := alice1.read(); m["type"] == "event" && m["event"] == "read" {
				if m["seq"] != 1.0 || m["target"] != "#p" {
					t.Fatalf("read event on the other node: %v", m)
				}
				break
			}
		}
		// Both her sessions close: bob, on the other node, hears her go
		// offline after the grace, and online when she is back.
		alice0.conn.CloseNow()
		alice1.conn.CloseNow()
		for {
			m := bob.read()
			if m["type"] == "event" && m["event"] == "offline" && m["username"] == "alice" {
				break
			}
		}
		nodes[0].dial(aliceLogin)
		for {
			m := bob.read()
			if m["type"] == "event" && m["event"] == "online" && m["username"] == "alice" {
				break
			}
		}
	})
}

// TestRateLimitAfterAStall: a client sending at three quarters of its
// rate limit through a Redis pause of five seconds is not refused when
// the backlog is handled at once afterwards: requests that waited on the
// backend are not charged (issue 17).
func TestRateLimitAfterAStall(t *testing.T) {
	_, _, n1, hole := startFaultPair(t, gateway.Config{}, nil) // 20 a second, burst 40
	alice := n1.user("alice")
	const sent = 120 // 15 a second for 8 s
	go func() {
		for i := range sent {
			alice.conn.Write(context.Background(), websocket.MessageText,
				[]byte(fmt.Sprintf(`{"type":"command","action":"leave","target":"#nope","id":"%d"}`, i)))
			time.Sleep(time.Second / 15)
		}
	}()
	time.Sleep(time.Second)
	hole(true)
	time.Sleep(5 * time.Second)
	hole(false)
	codes := map[string]int{}
	for range sent {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, b, err := alice.conn.Read(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		codes[fmt.Sprint(m["code"])]++
	}
	t.Logf("answers by code: %v", codes)
	if codes["rate_limited"] > 0 {
		t.Fatalf("%d requests refused as over the rate limit after the pause", codes["rate_limited"])
	}
}

// TestPrivateMessagesBothWays: pairs of users on two nodes write to each
// other at once, without waiting for acks. Each of them must see every
// message of the conversation, its own and the other's, once, in seq
// order. On Redis Cluster the copies of a private message are published
// by a script per user, so a user topic can carry seq 2 before seq 1:
// the node must put them back in order, even for a conversation's first
// messages (hence many new conversations).
func TestPrivateMessagesBothWays(t *testing.T) {
	onEveryRedis(t, func(t *testing.T, start fleet) {
		nodes := start(t, 2, gateway.Config{RateLimit: 1e6})
		const pairs, n = 8, 25
		var users [][2]*client
		for p := range pairs {
			users = append(users, [2]*client{nodes[0].user(fmt.Sprint("alice", p)), nodes[1].user(fmt.Sprint("bob", p))})
		}
		for _, u := range users {
			a, b := u[0], u[1]
			for i := range n {
				a.send(fmt.Sprintf(`{"type":"message","target":"@%s","message":"a%d","id":"a%d"}`, b.login.Username, i, i))
				b.send(fmt.Sprintf(`{"type":"message","target":"@%s","message":"b%d","id":"b%d"}`, a.login.Username, i, i))
			}
		}
		for _, u := range users {
			for _, c := range u {
				var seqs []uint64
				for len(seqs) < 2*n {
					m := c.read()
					if m["type"] != "message" {
						continue
					}
					seq, _ := m["seq"].(float64)
					seqs = append(seqs, uint64(seq))
				}
				for i, seq := range seqs {
					if seq != uint64(i+1) {
						t.Fatalf("%s: the conversation's messages came as seqs %v, want 1 to %d in order", c.login.Username, seqs, 2*n)
					}
				}
			}
		}
	})
}
