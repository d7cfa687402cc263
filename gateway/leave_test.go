package gateway_test

// Leaves and joins against what a node missed: a leave waits for the gap
// repair of its channel (spec section 5: no gap while connected), and a
// join that a user already made is spread to the user's other nodes.

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
)

// stalledHistory is a backend whose history reads fail while stalled is
// set, as when Redis cannot be read: a gap repair keeps trying.
type stalledHistory struct {
	pubsub.Backend
	stalled *atomic.Bool
}

func (s stalledHistory) Range(ctx context.Context, log string, q pubsub.Query) (pubsub.Page, error) {
	if s.stalled.Load() {
		return pubsub.Page{}, pubsub.ErrUnavailable
	}
	return s.Backend.Range(ctx, log, q)
}

func (s stalledHistory) Last(ctx context.Context, logs ...string) ([]uint64, error) {
	if s.stalled.Load() {
		return nil, pubsub.ErrUnavailable
	}
	return s.Backend.Last(ctx, logs...)
}

// leaveWorld is two nodes, n0 on Redis directly and n1 through a proxy
// that the test stops to cut n1 off, with a channel #c of four members:
// sender on n0, the leaver with a session on each node, and stayer on n1.
type leaveWorld struct {
	n0, n1                   *node
	proxy                    *toxiproxy.Proxy
	reg1                     *prometheus.Registry
	sender, leaver0, leaver1 *client
	stayer                   *client
	stalled                  *atomic.Bool // n1's history reads fail while set
}

func startLeaveWorld(t *testing.T) *leaveWorld {
	t.Helper()
	url, prefix := redistest.URL(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := redistest.Proxy(t, opts.Addr)
	w := &leaveWorld{proxy: proxy, reg1: prometheus.NewRegistry(), stalled: new(atomic.Bool)}
	cfg := gateway.Config{RateLimit: 1000, NodeID: "n0"}
	w.n0 = startNode(t, redisBackend(t, url, prefix, ""), cfg)
	b1 := redisBackend(t, url, prefix, proxy.Listen)
	connect := b1.connect
	b1.connect = func(h pubsub.Handler) (pubsub.Backend, error) {
		b, err := connect(h)
		if err != nil {
			return nil, err
		}
		return stalledHistory{Backend: b, stalled: w.stalled}, nil
	}
	cfg.NodeID = "n1"
	w.n1 = startNodeWith(t, b1, cfg, nodeOptions{metrics: w.reg1})

	w.sender = w.n0.user("sender")
	l := w.n0.login("leaver")
	w.leaver0, w.leaver1 = w.n0.dial(l), w.n1.dial(l)
	w.stayer = w.n1.user("stayer")
	w.sender.do("create", "#c")
	for _, c := range []*client{w.sender, w.leaver0, w.stayer} {
		c.do("join", "#c")
	}
	flush(t, w.sender, w.leaver0, w.leaver1)
	flush(t, w.sender, w.stayer)
	// One message live to all: every node's stream of #c stands at 1.
	w.sender.sendMsg("#c", "m1", "m1")
	for _, c := range []*client{w.leaver0, w.leaver1, w.stayer} {
		receiveSeqs(t, c, "#c", 1, 10*time.Second)
	}
	return w
}

// cut takes n1 off Redis until it has noticed; then sender sends m2 to
// m4, which n1 misses.
func (w *leaveWorld) cut(t *testing.T) {
	t.Helper()
	w.proxy.Stop()
	eventually(t, 15*time.Second, "n1 not ready", func() bool { return !ready(t, w.n1) })
	for i := 2; i <= 4; i++ {
		w.sender.sendMsg("#c", fmt.Sprint("m", i), fmt.Sprint("m", i))
	}
}

// heal lets n1 reach Redis again.
func (w *leaveWorld) heal(t *testing.T) {
	t.Helper()
	if err := w.proxy.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "n1 ready again", func() bool { return ready(t, w.n1) })
}

// expectMissed checks that c receives m2 to m4, in order, each once: the
// messages n1 missed while it was cut off, stored while the leaver was a
// member.
func expectMissed(t *testing.T, c *client) {
	t.Helper()
	got := receiveSeqs(t, c, "#c", 3, 20*time.Second)
	if fmt.Sprint(got) != "[m2 m3 m4]" {
		t.Fatalf("%s got %v, want [m2 m3 m4]", c.login.Username, got)
	}
}

// afterwards checks that the leaver's session on n1 is off #c: a message
// sent now reaches the stayer, not the leaver.
func (w *leaveWorld) afterwards(t *testing.T) {
	t.Helper()
	w.sender.sendMsg("#c", "m5", "m5")
	for { // the sender's own copies, and the left event
		if m := w.sender.read(); m["type"] == "message" && m["message"] == "m5" {
			break
		}
	}
	if got := receiveSeqs(t, w.stayer, "#c", 1, 10*time.Second); got[0] != "m5" {
		t.Fatalf("stayer got %v after the leave, want m5", got)
	}
	sentinel(t, w.sender, w.leaver0, w.leaver1)
}

// TestClusterLeaveMissedWaitsForRepair: a node cut off from Redis misses
// messages and then the !left notice of a leave made on another node.
// When it is back, its resync finds the membership gone; the leaver's
// session there still gets the messages stored before the leave (which
// the resync's repair reads from history) before it is taken off the
// channel.
func TestClusterLeaveMissedWaitsForRepair(t *testing.T) {
	w := startLeaveWorld(t)
	w.cut(t)
	w.leaver0.do("leave", "#c") // on n0, which is fine: acked; n1 misses the notice
	expectMissed(t, w.leaver0)  // n0 delivered m2..m4 live before the leave
	expectEvent(t, w.leaver0, "left", w.leaver0.login.Identifier)
	w.heal(t)

	expectMissed(t, w.stayer)
	expectMissed(t, w.leaver1)
	eventually(t, 10*time.Second, "n1's resync to succeed", func() bool {
		return counter(t, w.reg1, "chat_resyncs_total", "ok") >= 1
	})
	w.afterwards(t)
	if n := counter(t, w.reg1, "chat_gap_repaired_messages_total", ""); n < 3 {
		t.Fatalf("n1 repaired %v messages, want the 3 it missed", n)
	}
}

// TestClusterLeaveNoticeWaitsForRepair: a node that missed messages while
// cut off from Redis is back, but cannot read history yet, so its repair
// of the channel keeps trying; meanwhile the leaver leaves on another
// node, and the !left notice comes live. The leaver's session on the node
// gets the messages stored before the leave once the repair has them, then
// the left event, and only then is taken off the channel.
func TestClusterLeaveNoticeWaitsForRepair(t *testing.T) {
	w := startLeaveWorld(t)
	repairs := counter(t, w.reg1, "chat_gap_repairs_total", "")
	w.cut(t)
	w.stalled.Store(true)
	w.heal(t)
	eventually(t, 10*time.Second, "n1 to start repairing #c", func() bool {
		return counter(t, w.reg1, "chat_gap_repairs_total", "") > repairs
	})

	w.leaver0.do("leave", "#c")
	expectMissed(t, w.leaver0)
	expectEvent(t, w.leaver0, "left", w.leaver0.login.Identifier)
	// The notice reaches n1 while its repair still fails, and waits
	// there: a private message published after it (in a conversation new
	// to n1, which has nothing to repair) reaches the stayer.
	w.n0.user("witness").sendMsg("@stayer", "after the leave", "w")
	keepUntil(t, w.stayer, "after the leave")
	w.stalled.Store(false)

	for _, c := range []*client{w.leaver1, w.stayer} {
		expectMissed(t, c)
		expectEvent(t, c, "left", w.leaver0.login.Identifier)
	}
	w.afterwards(t)
}

// TestClusterJoinAgainSpreads: a join that ran in Redis but whose answer
// was lost (made here straight in the registry) leaves the user a member
// whose sessions on other nodes never heard of it. The retry, answered as
// a join of a channel one is in (an ack, and no join event), tells them.
func TestClusterJoinAgainSpreads(t *testing.T) {
	nextBackend := redisCluster(t)
	nodes := make([]*node, 2)
	for i := range nodes {
		nodes[i] = startNode(t, nextBackend(), gateway.Config{NodeID: fmt.Sprint("n", i)})
	}
	bob := nodes[0].user("bob")
	l := nodes[0].login("alice")
	alice0, alice1 := nodes[0].dial(l), nodes[1].dial(l)
	bob.do("create", "#c")
	bob.do("join", "#c")
	flush(t, bob, alice0, alice1)

	// The lost first attempt.
	reg, err := nextBackend().connect(func(string, []byte) {})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if added, err := reg.Join(t.Context(), "#c", pubsub.Peer{ID: l.Identifier, Username: l.Username}); err != nil || !added {
		t.Fatalf("join in the registry: added %v, %v", added, err)
	}

	alice0.do("join", "#c") // the retry
	bob.send(`{"type":"message","target":"#c","message":"hello","id":"h"}`)
	bob.expectAck("h")
	for _, c := range []*client{bob, alice0, alice1} { // no join event first
		if m := c.expect("message"); m["message"] != "hello" {
			t.Fatalf("%s got %v, want the message", c.login.Username, m)
		}
	}
	sentinel(t, bob, alice0, alice1)
}

// keepUntil reads c until the message text has come, and keeps what came
// before it to be read next.
func keepUntil(t *testing.T, c *client, text string) {
	t.Helper()
	var kept [][]byte
	for {
		b := c.readRaw()
		var m map[string]any
		if json.Unmarshal(b, &m) == nil && m["type"] == "message" && m["message"] == text {
			c.pending = append(kept, c.pending...)
			return
		}
		kept = append(kept, b)
	}
}
