package chatclient_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/internal/chattest"
	"github.com/wirechat/chat/protocol"
)

// TestMethods runs every request of the client against real nodes, in
// memory and on Redis (the two users on two nodes of the Redis chat), and
// checks what each answers and what the other user sees.
func TestMethods(t *testing.T) {
	inEachChat(t, 2, func(t *testing.T, nodes []*chattest.Node) {
		urls := urlsOf(nodes...)
		ctx := ctxFor(t)
		alice := dial(t, "alice", urls[0])
		bob := dial(t, "bob", urls[len(urls)-1])
		if w := alice.Welcome(); w.Username != "alice" || w.Identifier == "" || w.Epoch == "" {
			t.Fatalf("welcome: %+v", w)
		}
		if c := alice.waitConnects(t, 1); len(c) != 1 || c[0].Reconnect || c[0].Welcome.Username != "alice" {
			t.Fatalf("the first update is not the first Connected: %+v", c)
		}

		if err := alice.Create(ctx, "#Lobby"); err != nil {
			t.Fatal(err)
		}
		bob.waitEvent(t, protocol.EventCreate, "#lobby")
		for _, u := range []*user{alice, bob} {
			if err := u.Join(ctx, "#lobby"); err != nil {
				t.Fatalf("%s join: %v", u.name, err)
			}
		}
		alice.waitEvent(t, protocol.EventJoin, "#lobby")

		// Messages: the ack's seq, and every member's copy.
		seq, err := alice.Send(ctx, "#lobby", "hello")
		if err != nil || seq != 1 {
			t.Fatalf("send: %d, %v", seq, err)
		}
		for _, u := range []*user{alice, bob} {
			m := u.waitMessages(t, "#lobby", 1)[0]
			if m.Text != "hello" || m.Seq != 1 || m.Username != "alice" || m.Identifier != alice.Welcome().Identifier {
				t.Fatalf("%s got %+v", u.name, m)
			}
			if _, err := m.Time(); err != nil {
				t.Fatalf("ts %q: %v", m.TS, err)
			}
		}

		// A private conversation is "@bob" for alice and "@alice" for
		// bob, with one numbering.
		if seq, err := bob.Send(ctx, "@alice", "psst"); err != nil || seq != 1 {
			t.Fatalf("private send: %d, %v", seq, err)
		}
		if m := alice.waitMessages(t, "@bob", 1)[0]; m.Text != "psst" || m.Seq != 1 {
			t.Fatalf("alice got %+v", m)
		}
		if m := bob.waitMessages(t, "@alice", 1)[0]; m.Text != "psst" || m.Target != "@alice" {
			t.Fatalf("bob's own copy: %+v", m)
		}

		// History: newest, before, after, limit, more, first.
		for i := 2; i <= 7; i++ {
			if _, err := bob.Send(ctx, "#lobby", fmt.Sprint("m", i)); err != nil {
				t.Fatal(err)
			}
		}
		h, err := alice.History(ctx, "#lobby", chatclient.HistoryQuery{Limit: 3})
		if err != nil || h.Target != "#lobby" || h.First != 1 || !h.More || seqs(h.Messages) != "5,6,7" {
			t.Fatalf("newest: %+v, %v", h, err)
		}
		h, err = alice.History(ctx, "#lobby", chatclient.HistoryQuery{Before: new(uint64(5)), Limit: 3})
		if err != nil || h.More != true || seqs(h.Messages) != "2,3,4" {
			t.Fatalf("before 5: %+v, %v", h, err)
		}
		h, err = alice.History(ctx, "#lobby", chatclient.HistoryQuery{After: new(uint64(0))})
		if err != nil || h.More || seqs(h.Messages) != "1,2,3,4,5,6,7" || h.Messages[0].Text != "hello" || h.Messages[0].Conversation != "#lobby" {
			t.Fatalf("after 0: %+v, %v", h, err)
		}
		h, err = alice.History(ctx, "@bob", chatclient.HistoryQuery{})
		if err != nil || seqs(h.Messages) != "1" || h.Messages[0].Conversation != "@bob" {
			t.Fatalf("conversation: %+v, %v", h, err)
		}

		// Leave: the others see it, and the channel is closed to the
		// leaver.
		if err := bob.Leave(ctx, "#lobby"); err != nil {
			t.Fatal(err)
		}
		alice.waitEvent(t, protocol.EventLeft, "#lobby")
		if _, err := bob.Send(ctx, "#lobby", "still here?"); !errors.Is(err, chatclient.ErrNotMember) {
			t.Fatalf("send after leave: %v", err)
		}

		// Destroy: everyone sees it.
		if err := alice.Destroy(ctx, "#lobby"); err != nil {
			t.Fatal(err)
		}
		bob.waitEvent(t, protocol.EventDestroy, "#lobby")

		// Each conversation came once and in order.
		checkSeqs(t, "alice", alice.messages("#lobby"), 1, nil)
		if n := len(alice.messages("#lobby")); n != 7 {
			t.Fatalf("alice got %d messages of #lobby, want 7", n)
		}

		// After Close, requests fail and Updates is closed.
		alice.Close()
		if err := alice.Join(ctx, "#x"); !errors.Is(err, chatclient.ErrClosed) {
			t.Fatalf("join after close: %v", err)
		}
		if err := alice.Err(); !errors.Is(err, chatclient.ErrClosed) {
			t.Fatalf("Err after close: %v", err)
		}
		alice.wait()
	})
}

func seqs(ms []chatclient.Message) string {
	var s []string
	for _, m := range ms {
		s = append(s, fmt.Sprint(m.Seq))
	}
	return strings.Join(s, ",")
}
