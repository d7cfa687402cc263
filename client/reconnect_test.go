package chatclient_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/internal/chattest"
	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/protocol"
)

// numbered is the text of the sender's n-th message.
func numbered(n uint64) string { return fmt.Sprint("n", n) }

// sender keeps sending numbered messages to a channel, one after the other
// (each waits for its ack), until stop is closed; it counts them in sent,
// and says the total on the channel it returns.
func sender(ctx context.Context, t *testing.T, u *user, channel string, stop <-chan struct{}, sent *atomic.Uint64) <-chan uint64 {
	total := make(chan uint64, 1)
	go func() {
		var n uint64
		defer func() { total <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			seq, err := u.Send(ctx, channel, numbered(n+1))
			if err != nil {
				t.Errorf("sender: message %d: %v", n+1, err)
				return
			}
			n++
			if seq != n {
				t.Errorf("sender: message %d got seq %d", n, seq)
				return
			}
			sent.Store(n)
		}
	}()
	return total
}

// channelWith creates a channel and makes every user join it.
func channelWith(t *testing.T, channel string, users ...*user) {
	t.Helper()
	ctx := ctxFor(t)
	if err := users[0].Create(ctx, channel); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := u.Join(ctx, channel); err != nil {
			t.Fatalf("%s join %s: %v", u.name, channel, err)
		}
	}
}

// resumeWhileSending is the test of resume: a receiver whose node breaks
// (break_) while a sender keeps sending, and who can reach the other node
// only after the sender has sent 30 more messages, must get every message
// once and in order: those of its absence read back from history, the
// others live.
func resumeWhileSending(t *testing.T, first, second, senderURL string, break_ func()) {
	ctx := ctxFor(t)
	send := dial(t, "sender", senderURL)
	away := chattest.NewProxy(t, second)
	recv := dial(t, "receiver", first, away.URL)
	channelWith(t, "#stream", send, recv)

	stop := make(chan struct{})
	var sent atomic.Uint64
	total := sender(ctx, t, send, "#stream", stop, &sent)
	recv.waitMessages(t, "#stream", 50)
	away.Hold()
	break_()
	var before uint64
	eventually(t, "the disconnect", func() bool {
		for _, u := range recv.updates() {
			if u.Disconnected != nil {
				return true
			}
			if u.Message != nil && u.Message.Conversation == "#stream" {
				before = u.Message.Seq
			}
		}
		return false
	})
	// A request made while the client is away waits for the next
	// connection.
	back := make(chan error, 1)
	go func() {
		seq, err := recv.Send(ctx, "@sender", "back")
		if err == nil && seq != 1 {
			err = fmt.Errorf("seq %d", seq)
		}
		back <- err
	}()
	eventually(t, "30 messages sent while the receiver is away", func() bool { return sent.Load() >= before+30 })
	away.Release()
	recv.waitConnects(t, 2)
	if err := <-back; err != nil {
		t.Fatalf("send while away: %v", err)
	}
	c := recv.connects()[1]
	if !c.Reconnect || c.NewEpoch || c.URL != away.URL || c.Welcome.Latest["#stream"] < before+30 {
		t.Fatalf("the reconnect after seq %d: %+v", before, c)
	}
	// The sender goes on after the reconnect too.
	recv.waitMessages(t, "#stream", int(c.Welcome.Latest["#stream"])+50)
	close(stop)
	n := <-total
	if t.Failed() {
		return
	}
	ms := recv.waitMessages(t, "#stream", int(n))
	checkSeqs(t, "receiver", ms, 1, numbered)
	if len(ms) != int(n) {
		t.Fatalf("receiver got %d messages, %d were sent", len(ms), n)
	}
	var disconnects []chatclient.Disconnected
	for _, u := range recv.updates() {
		if u.Gap != nil {
			t.Fatalf("a gap: %+v", u.Gap)
		}
		if u.Disconnected != nil {
			disconnects = append(disconnects, *u.Disconnected)
		}
	}
	if len(disconnects) != 1 || disconnects[0].Final || disconnects[0].URL != first {
		t.Fatalf("disconnects: %+v", disconnects)
	}
	t.Logf("%d messages: %d before the break, %d while away", n, before, c.Welcome.Latest["#stream"]-before)
}

// TestResumeAfterDrain: the receiver's node shuts down (close 1001); the
// client reconnects to another node of the Redis chat and resumes.
func TestResumeAfterDrain(t *testing.T) {
	nodes, _ := backends[1].nodes(t, 3)
	resumeWhileSending(t, nodes[1].URL, nodes[2].URL, nodes[0].URL, func() { nodes[1].Drain(t) })
}

// TestResumeAfterKill: the receiver's node is a chatd process that dies
// (SIGKILL); the client reconnects to the other process and resumes.
func TestResumeAfterKill(t *testing.T) {
	url, prefix := redistest.URL(t)
	env := []string{"CHAT_REDIS_URL=" + url, "CHAT_REDIS_PREFIX=" + prefix, "CHAT_RATE_LIMIT=100000"}
	a := chattest.StartProcess(t, env...)
	b := chattest.StartProcess(t, env...)
	resumeWhileSending(t, a.URL, b.URL, b.URL, a.Kill)
}

// TestDrainToAnotherChat: nodes in memory are a chat each; a client whose
// node drains goes to the next, whose welcome has another epoch, and
// carries on there from scratch.
func TestDrainToAnotherChat(t *testing.T) {
	nodes, _ := backends[0].nodes(t, 2)
	ctx := ctxFor(t)
	alice := dial(t, "alice", urlsOf(nodes...)...)
	channelWith(t, "#first", alice)
	if _, err := alice.Send(ctx, "#first", "one"); err != nil {
		t.Fatal(err)
	}
	nodes[0].Drain(t)
	alice.waitConnects(t, 2)
	c := alice.connects()[1]
	if !c.Reconnect || !c.NewEpoch || c.URL != nodes[1].URL || len(c.Welcome.Joined) != 0 {
		t.Fatalf("reconnect to another chat: %+v", c)
	}
	var d *chatclient.Disconnected
	for _, u := range alice.updates() {
		if u.Disconnected != nil {
			d = u.Disconnected
		}
	}
	if d == nil || d.Final || websocket.CloseStatus(d.Err) != websocket.StatusGoingAway {
		t.Fatalf("disconnected: %+v", d)
	}
	channelWith(t, "#first", alice)
	if seq, err := alice.Send(ctx, "#first", "one again"); err != nil || seq != 1 {
		t.Fatalf("send in the new chat: %d, %v", seq, err)
	}
	if ms := alice.waitMessages(t, "#first", 2); ms[1].Text != "one again" || ms[1].Seq != 1 {
		t.Fatalf("messages: %+v", ms)
	}
}

// TestLostAck: a message reaches the node, and its ack is lost with the
// connection. The client sends it again on the next connection with the
// same id: Send returns the first one's seq, the message is stored and
// delivered once, and the sender's own stream has it once (read back from
// history, since its live copy was lost too). A create whose answer is
// lost fails with ErrInterrupted (it took effect, which the client cannot
// know); a join whose answer is lost is sent again and succeeds.
func TestLostAck(t *testing.T) {
	inEachChat(t, 2, func(t *testing.T, nodes []*chattest.Node) {
		ctx := ctxFor(t)
		proxy := chattest.NewProxy(t, nodes[0].URL)
		alice := dial(t, "alice", proxy.URL)
		bob := dial(t, "bob", nodes[len(nodes)-1].URL)
		channelWith(t, "#l", alice, bob)
		if seq, err := alice.Send(ctx, "#l", "first"); err != nil || seq != 1 {
			t.Fatalf("first: %d, %v", seq, err)
		}

		// lose sends a request whose answer the proxy loses, and
		// returns its result once the connection was cut.
		cuts := 0
		lose := func(do func() error, arrived func() bool) error {
			t.Helper()
			eventually(t, "alice connected", func() bool { return len(alice.connects()) == cuts+1 })
			cuts++
			proxy.Blackhole()
			done := make(chan error, 1)
			go func() { done <- do() }()
			eventually(t, "the request to take effect", arrived)
			proxy.Cut()
			return <-done
		}

		var seq uint64
		err := lose(func() error {
			var err error
			seq, err = alice.Send(ctx, "#l", "once")
			return err
		}, func() bool { return len(bob.messages("#l")) == 2 })
		if err != nil || seq != 2 {
			t.Fatalf("the message whose ack was lost: %d, %v; want seq 2", seq, err)
		}
		if s, err := bob.Send(ctx, "#l", "after"); err != nil || s != 3 {
			t.Fatalf("the next message has seq %d (%v), want 3: the retry was stored again", s, err)
		}
		for _, u := range []*user{alice, bob} {
			ms := u.waitMessages(t, "#l", 3)
			checkSeqs(t, u.name, ms, 1, nil)
			if len(ms) != 3 || ms[1].Text != "once" || ms[2].Text != "after" {
				t.Fatalf("%s got %+v", u.name, ms)
			}
		}

		err = lose(func() error { return alice.Create(ctx, "#made") },
			func() bool { return len(bob.events(protocol.EventCreate)) == 2 })
		if !errors.Is(err, chatclient.ErrInterrupted) {
			t.Fatalf("create whose answer was lost: %v, want ErrInterrupted", err)
		}
		if err := bob.Join(ctx, "#made"); err != nil { // to see alice join
			t.Fatal(err)
		}
		err = lose(func() error { return alice.Join(ctx, "#made") },
			func() bool { return joined(bob, "#made", alice) })
		if err != nil {
			t.Fatalf("join whose answer was lost: %v", err)
		}
		if n := len(alice.connects()); n != 4 {
			t.Fatalf("alice connected %d times, want 4", n)
		}
	})
}

// joined reports whether u saw who join channel.
func joined(u *user, channel string, who *user) bool {
	for _, e := range u.events(protocol.EventJoin) {
		if e.Target == channel && e.Identifier == who.Welcome().Identifier {
			return true
		}
	}
	return false
}
