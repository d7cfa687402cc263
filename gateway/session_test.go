package gateway_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/pubsub"
)

func TestMultiSession(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	l := n.login("alice")
	a1, a2 := n.dial(l), n.dial(l)
	bob := n.user("bob")

	bob.do("create", "#team")
	for _, c := range []*client{a1, a2, bob} {
		c.expect("event")
	}
	a1.do("join", "#team")
	for _, c := range []*client{a1, a2} {
		if m := c.expect("event"); m["event"] != "join" {
			t.Fatalf("%v", m)
		}
	}
	bob.do("join", "#team")
	for _, c := range []*client{a1, a2, bob} {
		c.expect("event")
	}
	bob.send(`{"type":"message","target":"#team","message":"to all of alice"}`)
	for _, c := range []*client{a1, a2, bob} {
		if m := c.expect("message"); m["message"] != "to all of alice" {
			t.Fatal(m)
		}
	}
	bob.send(`{"type":"message","target":"@alice","message":"dm"}`)
	for _, c := range []*client{a1, a2, bob} {
		if m := c.expect("message"); m["target"] != "@alice" {
			t.Fatal(m)
		}
	}
	// A third session opened later is on the channel at once.
	a3 := n.dial(l)
	if fmt.Sprint(a3.welcome["joined"]) != "[#team]" {
		t.Fatalf("joined = %v", a3.welcome["joined"])
	}
	// Closing a connection is not leaving.
	a3.conn.Close(websocket.StatusNormalClosure, "")
	bob.send(`{"type":"message","target":"#team","message":"still there?"}`)
	for _, c := range []*client{a1, a2, bob} {
		c.expect("message")
	}
	// Leave reaches every session, and then none receives the channel.
	a2.do("leave", "#team")
	for _, c := range []*client{a1, a2, bob} {
		if m := c.expect("event"); m["event"] != "left" {
			t.Fatal(m)
		}
	}
	bob.send(`{"type":"message","target":"#team","message":"gone"}`)
	bob.expect("message")
	a1.quiet()
	a2.quiet()
	// Destroy reaches every session.
	a1.do("join", "#team")
	for _, c := range []*client{a1, a2, bob} {
		c.expect("event")
	}
	bob.do("destroy", "#team")
	for _, c := range []*client{a1, a2, bob} {
		if m := c.expect("event"); m["event"] != "destroy" {
			t.Fatal(m)
		}
	}
	a4 := n.dial(l)
	if fmt.Sprint(a4.welcome["joined"]) != "[]" {
		t.Fatalf("joined after destroy = %v", a4.welcome["joined"])
	}
}

func TestReconnectKeepsMemberships(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	alice := n.user("alice")
	alice.do("create", "#keep")
	alice.expect("event")
	alice.do("join", "#keep")
	alice.expect("event")
	alice.conn.Close(websocket.StatusNormalClosure, "bye")

	again := n.dial(alice.login)
	if fmt.Sprint(again.welcome["joined"]) != "[#keep]" {
		t.Fatalf("joined = %v", again.welcome["joined"])
	}
	again.send(`{"type":"message","target":"#keep","message":"back","id":"1"}`)
	again.expect("message")
	again.expectAck("1")
}

func TestSlowConsumer(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNodeWithMetrics(t, memoryBackend(), gateway.Config{SendQueue: 16, RateLimit: 10000, MaxMessageBytes: 12100, MaxFrameBytes: 13000}, reg)
	fast := n.user("fast")
	slow := n.user("slow")
	fast.do("create", "#busy")
	fast.expect("event")
	slow.expect("event")
	slow.do("join", "#busy")
	fast.do("join", "#busy")
	fast.expect("event")

	// slow stops reading. Its socket buffers fill, then its queue, and the
	// server closes it with 1008, while fast, which keeps up, receives every
	// message. Publishing stops once the server has closed slow, so that
	// slow, reading again, gets the close frame behind what was buffered.
	payload := strings.Repeat("x", 12000)
	for i := 0; counter(t, reg, "chat_slow_consumer_closes_total", "") == 0; i++ {
		if i == 5000 {
			t.Fatal("slow was not closed after 5000 messages of 12 kB")
		}
		fast.send(fmt.Sprintf(`{"type":"message","target":"#busy","message":"%d %s"}`, i, payload))
		m := fast.expect("message")
		if !strings.HasPrefix(m["message"].(string), fmt.Sprint(i)+" ") {
			t.Fatalf("fast got %.10v, want message %d", m["message"], i)
		}
	}
	slow.expectClose(websocket.StatusPolicyViolation)
}

func TestOrdering(t *testing.T) {
	// The test reads bob's 500 messages before alice's echoes: alice's
	// queue must hold them all meanwhile.
	n := startNode(t, memoryBackend(), gateway.Config{RateLimit: 10000, SendQueue: 1024})
	alice, bob := n.user("alice"), n.user("bob")
	alice.do("create", "#order")
	bob.expect("event")
	alice.expect("event")
	alice.do("join", "#order")
	alice.expect("event")
	bob.do("join", "#order")
	bob.expect("event")
	alice.expect("event")

	const total = 500
	go func() {
		for i := range total {
			alice.send(fmt.Sprintf(`{"type":"message","target":"#order","message":"%d"}`, i))
		}
	}()
	for _, c := range []*client{bob, alice} {
		for i := range total {
			if m := c.expect("message"); m["message"] != fmt.Sprint(i) {
				t.Fatalf("%s: message %d is %v", c.login.Username, i, m["message"])
			}
		}
	}
}

func TestConnectionLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNodeWithMetrics(t, memoryBackend(), gateway.Config{MaxFrameBytes: 1024}, reg)
	cases := []struct {
		name  string
		typ   websocket.MessageType
		frame []byte
		code  websocket.StatusCode
	}{
		{"frame over the limit", websocket.MessageText, []byte(`{"type":"message","target":"#x","message":"` + strings.Repeat("a", 2000) + `"}`), websocket.StatusMessageTooBig},
		{"binary frame", websocket.MessageBinary, []byte(`{}`), websocket.StatusUnsupportedData},
		{"invalid UTF-8", websocket.MessageText, []byte("{\"type\":\"message\",\"target\":\"#x\",\"message\":\"\xff\xfe\"}"), websocket.StatusInvalidFramePayloadData},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := n.user("limits")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.conn.Write(ctx, tc.typ, tc.frame); err != nil {
				t.Fatal(err)
			}
			c.expectClose(tc.code)
		})
	}
	// Each close is counted under its code.
	eventually(t, 5*time.Second, "the closes to be counted", func() bool {
		return counter(t, reg, "chat_connections_closed_total", "1009") == 1 &&
			counter(t, reg, "chat_connections_closed_total", "1003") == 1 &&
			counter(t, reg, "chat_connections_closed_total", "1007") == 1
	})
	// A frame just under the limit is fine.
	c := n.user("limits")
	c.send(`{"type":"command","action":"join","target":"#x","id":"` + strings.Repeat("i", 64) + `"}`)
	c.expectError("not_found", strings.Repeat("i", 64))
}

func TestLogoutClosesOnlyThatSession(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	first := n.login("alice")
	second := n.login("alice")
	a1, a2 := n.dial(first), n.dial(second)

	req, _ := http.NewRequest("POST", n.http.URL+"/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+first.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %s", resp.Status)
	}
	a1.expectClose(websocket.StatusNormalClosure)
	a2.quiet() // the other login session is untouched
	req, _ = http.NewRequest("GET", n.http.URL+"/auth/me", nil)
	req.Header.Set("Authorization", "Bearer "+first.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("me after logout: %s", resp.Status)
	}
}

func TestShutdown(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	clients := []*client{n.user("alice"), n.user("bob"), n.user("alice")}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- n.gw.Shutdown(ctx)
	}()
	for _, c := range clients {
		c.expectClose(websocket.StatusGoingAway)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	resp, err := http.Get(n.http.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz after shutdown: %s", resp.Status)
	}
}

func TestHealth(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(n.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
}

// TestManyClients: 16 clients each send 64 messages to one channel; every
// client must receive all 1024, each sender's in order.
func TestManyClients(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{RateLimit: 10000, SendQueue: 2048})
	const clients, each = 16, 64
	owner := n.user("owner")
	owner.do("create", "#many")
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = n.user(fmt.Sprintf("u%d", i))
		cs[i].do("join", "#many")
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for j := range each {
				frame := fmt.Sprintf(`{"type":"message","target":"#many","message":"%d:%d"}`, i, j)
				if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range cs {
		next := make([]int, clients)
		for got := 0; got < clients*each; {
			m := c.read()
			if m["type"] != "message" {
				continue // join events of later joiners
			}
			var from, seq int
			fmt.Sscanf(m["message"].(string), "%d:%d", &from, &seq)
			if seq != next[from] {
				t.Fatalf("%s: from u%d got %d, want %d", c.login.Username, from, seq, next[from])
			}
			next[from]++
			got++
		}
	}
}

func TestSessionExpiryCloses1008(t *testing.T) {
	n := startNodeWith(t, memoryBackend(), gateway.Config{}, nodeOptions{sessionTTL: 300 * time.Millisecond})
	c := n.user("brief")
	c.expectClose(websocket.StatusPolicyViolation)
}

// TestSessionExpiryWhilePinged: one timer serves a session's pings and its
// login's expiry; pinged every 50 ms, answering each, the session still
// closes with 1008 when its login expires, and not before.
func TestSessionExpiryWhilePinged(t *testing.T) {
	const ttl = 600 * time.Millisecond
	n := startNodeWith(t, memoryBackend(), gateway.Config{PingInterval: 50 * time.Millisecond}, nodeOptions{sessionTTL: ttl})
	start := time.Now()
	c := n.user("brief")
	c.expectClose(websocket.StatusPolicyViolation) // reading answers the pings
	if d := time.Since(start); d < ttl-50*time.Millisecond {
		t.Fatalf("closed after %v, before the login's expiry (%v)", d, ttl)
	}
}

// TestDeadPeerDropped: a peer that stops answering pings is dropped after
// one ping interval.
func TestDeadPeerDropped(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{PingInterval: 100 * time.Millisecond})
	c := n.user("ghost") // never reads again, so never answers a ping
	_ = c
	eventually(t, 10*time.Second, "the dead peer to be dropped", func() bool { return n.gw.Connections() == 0 })
}

// TestPingsSpread: connections opened together are not pinged together.
// Each one's first ping comes within one interval, at its own moment, so
// a node's pings stay a steady trickle after a reconnect storm; and a peer
// that answers is pinged again and kept.
func TestPingsSpread(t *testing.T) {
	const interval, conns = time.Second, 20
	n := startNode(t, memoryBackend(), gateway.Config{PingInterval: interval})
	opened := time.Now()
	first := make(chan time.Duration, conns)
	for i := range conns {
		c := dialStrict(t, n, n.login(fmt.Sprint("pinged", i)))
		var once sync.Once
		c.SetPingHandler(func(data string) error {
			once.Do(func() { first <- time.Since(opened) })
			return c.WriteControl(gorilla.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		go func() { // reading is what answers pings
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for range conns {
		select {
		case d := <-first:
			lo, hi = min(lo, d), max(hi, d)
		case <-time.After(5 * interval):
			t.Fatal("a connection was not pinged within its first interval")
		}
	}
	// 20 moments drawn at random from one interval span less than a
	// quarter of it with a probability of about 1e-10.
	if hi-lo < interval/4 {
		t.Fatalf("first pings came within %v of each other (from %v to %v after the opening): together, not spread", hi-lo, lo, hi)
	}
	t.Logf("first pings from %v to %v after the opening", lo, hi)
	// Peers that answer stay, ping after ping.
	time.Sleep(3 * interval)
	if got := n.gw.Connections(); got != conns {
		t.Fatalf("%d of %d connections left after three intervals of answered pings", got, conns)
	}
}

// TestMissedLogoutNoticeStillCloses: a node that missed the logout notice
// (here: nobody publishes it) closes the websocket on its next check of
// the login sessions, with 1000.
func TestMissedLogoutNoticeStillCloses(t *testing.T) {
	n := startNodeWith(t, memoryBackend(), gateway.Config{PlaceTTL: 300 * time.Millisecond}, nodeOptions{noNotice: true})

	gone, kept := n.login("alice"), n.login("alice")
	c, other := n.dial(gone), n.dial(kept)
	req, _ := http.NewRequest("POST", n.http.URL+"/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+gone.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.expectClose(websocket.StatusNormalClosure)
	other.quiet() // the other login of the same user stays open
}

// chatFrame is a message frame to alice, as the gateway would fan it out.
func chatFrame(i int) []byte {
	return fmt.Appendf(nil, `{"type":"message","target":"@alice","from":"bob","message":"m%d"}`, i)
}

// TestWriteDelayBatchesConnectionThatFallsBehind: with Config.WriteDelay,
// a connection whose frames come in faster than they could each be written
// on their own (here: bursts of eight, as a node short of CPU sees them)
// is paused between writes, and the bursts queued meanwhile share a write.
func TestWriteDelayBatchesConnectionThatFallsBehind(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNodeWithMetrics(t, memoryBackend(), gateway.Config{WriteDelay: 200 * time.Millisecond}, reg)
	alice := n.user("alice")
	writes := func() float64 { return counter(t, reg, "chat_socket_writes_total", "") }
	// The counter moves just after a write returns: wait for the welcome's.
	eventually(t, 5*time.Second, "the welcome's write", func() bool { return writes() == 1 })
	before := writes()

	// A burst every 5 ms for 300 ms: without the delay each burst has at
	// least one write of its own (60). With it, the writer knows the
	// connection is busy after about sixteen writes, and a pause of 200 ms
	// then gathers what is left in one or two.
	const bursts, size = 60, 8
	for b := range bursts {
		time.Sleep(5 * time.Millisecond)
		frames := make([][]byte, size)
		for i := range frames {
			frames[i] = chatFrame(b*size + i)
		}
		if got := n.gw.QueueFrames("alice", frames...); got != 1 {
			t.Fatalf("queued for %d sessions, want 1", got)
		}
	}
	for i := range bursts * size {
		if m := alice.expect("message"); m["message"] != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %v, want m%d", m, i)
		}
	}
	got := writes() - before
	t.Logf("%v writes, %d pauses for %d bursts of %d frames", got, n.gw.Pauses("alice"), bursts, size)
	if got >= bursts*3/4 {
		t.Fatalf("%v writes for %d bursts, want fewer than %d: the delay did not batch", got, bursts, bursts*3/4)
	}
}

// TestWriteDelayLeavesBusyConnectionThatKeepsUp: a connection that gets a
// frame every 10 ms (busy: far more than two per delay) but whose writer has
// written each one long before the next comes is not behind, and its frames
// are never held back. Only a stall of the machine of 130 ms or so, which
// would bunch a dozen frames into one write, could make it look behind.
func TestWriteDelayLeavesBusyConnectionThatKeepsUp(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{WriteDelay: 200 * time.Millisecond})
	alice := n.user("alice")
	const frames = 60
	for i := range frames {
		time.Sleep(10 * time.Millisecond)
		n.gw.QueueFrames("alice", chatFrame(i))
	}
	for i := range frames {
		if m := alice.expect("message"); m["message"] != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %v, want m%d", m, i)
		}
	}
	// Paused when busy, it would have paused after the sixteenth write or
	// so, and every 200 ms from then on.
	if p := n.gw.Pauses("alice"); p != 0 {
		t.Fatalf("%d pauses: a connection that keeps up was held back", p)
	}
}

// TestWriteDelayDoesNotCountReplies: a client that sends 100 messages a
// second gets an ack and a copy of each, 200 frames a second, but only the
// copies count towards the write delay: after a burst of events (as when
// it joins a channel) it does not stay paused, holding its copies back,
// for as long as it keeps sending. Counted with the acks, each pause
// gathered four frames, which looked behind, and it paused on.
func TestWriteDelayDoesNotCountReplies(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNodeWithMetrics(t, memoryBackend(), gateway.Config{WriteDelay: 20 * time.Millisecond, RateLimit: 1000}, reg)
	alice, bob := n.user("alice"), n.user("bob")
	writes := func() float64 { return counter(t, reg, "chat_socket_writes_total", "") }

	const burst = 64 // four writes of sixteen: behind, not a burst
	for i := range 4 {
		frames := make([][]byte, burst/4)
		for j := range frames {
			frames[j] = fmt.Appendf(nil, `{"type":"joined","channel":"#c","user":"u%d"}`, i*len(frames)+j)
		}
		n.gw.QueueFrames("bob", frames...)
		time.Sleep(time.Millisecond)
	}
	for range burst {
		bob.expect("joined")
	}
	eventually(t, 5*time.Second, "the burst's writes", func() bool { return writes() >= 3 })
	before := writes()

	// 1.5 s at 100 messages a second. Without pauses: a write per frame
	// to alice (150) and one or two per message to bob (150-300). Paused
	// on, bob's writes would be one per 20 ms (75).
	const msgs = 150
	for i := range msgs {
		time.Sleep(10 * time.Millisecond)
		bob.send(fmt.Sprintf(`{"type":"message","target":"@alice","message":"m%d","id":"i%d"}`, i, i))
	}
	for i := range msgs {
		if m := alice.expect("message"); m["message"] != fmt.Sprintf("m%d", i) {
			t.Fatalf("alice got %v, want m%d", m, i)
		}
	}
	for i := range msgs {
		id := fmt.Sprintf("i%d", i)
		bob.expectAck(id)
		if m := bob.expect("message"); m["message"] != fmt.Sprintf("m%d", i) {
			t.Fatalf("bob got %v, want m%d", m, i)
		}
	}
	// Counting its acks, bob paused about every 20 ms from early on (some
	// 75 times); now a stall of the machine may cost a pause or two.
	p := n.gw.Pauses("bob")
	t.Logf("bob: %d pauses, %v writes in all for %d messages", p, writes()-before, msgs)
	if p >= 15 {
		t.Fatalf("bob paused %d times: his copies were held back", p)
	}
}

// TestWriteDelayHoldsBackNothingOnQuietConnection: a connection that gets
// frames now and then (an ack and the sender's copy of a private message,
// together) is not busy, and the delay never holds its frames back.
func TestWriteDelayHoldsBackNothingOnQuietConnection(t *testing.T) {
	const delay = gateway.MaxWriteDelay
	n := startNode(t, memoryBackend(), gateway.Config{WriteDelay: delay})
	alice, bob := n.user("alice"), n.user("bob")
	start := time.Now()
	for i := range 3 {
		id := fmt.Sprintf("p%d", i)
		bob.send(`{"type":"message","target":"@alice","message":"hi","id":"` + id + `"}`)
		bob.expectAck(id)
		bob.expect("message")
		alice.expect("message")
	}
	if took := time.Since(start); took >= delay/2 {
		t.Fatalf("three exchanges took %v: the write delay (%v) held back a quiet connection's frames", took, delay)
	}
}

// TestWriteDelayNeverOverflowsTheQueue: a stream into a busy connection
// ends the writer's pause once the queue is half full, so a client that
// keeps reading is not closed as a slow consumer because of the delay,
// even when the delay is far longer than the stream takes to fill the
// queue.
func TestWriteDelayNeverOverflowsTheQueue(t *testing.T) {
	const queue, burst = 256, 1000
	n := startNode(t, memoryBackend(), gateway.Config{WriteDelay: gateway.MaxWriteDelay, SendQueue: queue, RateLimit: 10000})
	alice, bob := n.user("alice"), n.user("bob")
	var wg sync.WaitGroup
	for _, c := range []*client{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range burst {
				if m := c.read(); m["type"] != "message" || m["message"] != fmt.Sprintf("m%d", i) {
					t.Errorf("%s: frame %d is %v", c.login.Username, i, m)
					return
				}
			}
		}()
	}
	// Ten every 10 ms, about 1000 a second however coarse the sleeps: the
	// clients keep up with that, but a pause of a whole delay would let
	// the queue's 256 frames pile up several times over.
	for i := range burst {
		if i%10 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		bob.send(fmt.Sprintf(`{"type":"message","target":"@alice","message":"m%d"}`, i))
	}
	wg.Wait()
}

// TestWriteDelayOutOfRange: New refuses a write delay below zero or above
// MaxWriteDelay, before it connects anything.
func TestWriteDelayOutOfRange(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, gateway.MaxWriteDelay + time.Millisecond} {
		deps := gateway.Deps{Connect: func(pubsub.Handler) (pubsub.Backend, error) {
			t.Fatalf("write delay %v: New connected the backend", d)
			return nil, nil
		}}
		if gw, err := gateway.New(context.Background(), gateway.Config{WriteDelay: d}, deps, testLogger(t)); err == nil {
			gw.Shutdown(context.Background())
			t.Errorf("write delay %v accepted", d)
		}
	}
}

// TestRepliesSlowTheReaderDown: a client that reads what it is sent is
// never closed as slow, however fast it sends requests: the server stops
// reading from it while its replies fill the queue (spec 9), and keeps
// 1008 for clients that do not read (TestSlowConsumer).
func TestRepliesSlowTheReaderDown(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{RateLimit: 1e6})
	alice := n.user("alice")
	const total = 5000
	done := make(chan error, 1)
	go func() {
		for i := range total {
			frame := fmt.Sprintf(`{"type":"command","action":"leave","target":"#nope","id":"%d"}`, i)
			if err := alice.conn.Write(context.Background(), websocket.MessageText, []byte(frame)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range total {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, b, err := alice.conn.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d replies: %v", i, err)
		}
		if !strings.Contains(string(b), `"id":"`+fmt.Sprint(i)+`"`) {
			t.Fatalf("reply %d: %s", i, b)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMessageHops: a message through a node times every hop that node
// sees (chat_message_hop_seconds), for chatbench's hop report.
func TestMessageHops(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNodeWithMetrics(t, memoryBackend(), gateway.Config{}, reg)
	alice, bob := n.user("alice"), n.user("bob")
	alice.do("create", "#hops")
	alice.do("join", "#hops")
	bob.do("join", "#hops")
	alice.sendMsg("#hops", "timed", "m1")
	for {
		if m := bob.read(); m["type"] == "message" && m["message"] == "timed" {
			break
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "chat_message_hop_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
		}
	}
	for _, hop := range []string{"handle", "store", "deliver", "writer", "write"} {
		if counts[hop] == 0 {
			t.Errorf("hop %s was never timed: %v", hop, counts)
		}
	}
}
