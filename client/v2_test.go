package chatclient_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/chattest"
	"github.com/wirechat/chat/protocol"
)

// TestMembersTypingRead runs the requests of spec sections 6 and 7,
// members, typing and read, against real nodes, in memory and across two
// nodes on Redis, with what the other users see.
func TestMembersTypingRead(t *testing.T) {
	inEachChat(t, 2, func(t *testing.T, nodes []*chattest.Node) {
		ctx := ctxFor(t)
		alice := dial(t, "alice", nodes[0].URL)
		alice2 := dial(t, "alice", nodes[len(nodes)-1].URL) // her other device
		bob := dial(t, "bob", nodes[len(nodes)-1].URL)
		carol := dial(t, "carol", nodes[0].URL)
		channelWith(t, "#team", alice, bob, carol)

		// Members: pages by username, everyone online.
		var names []string
		q := chatclient.MembersQuery{Limit: 2}
		for {
			page, err := bob.Members(ctx, "#Team", q)
			if err != nil {
				t.Fatal(err)
			}
			if page.Target != "#team" {
				t.Fatalf("members of %q", page.Target)
			}
			for _, m := range page.Members {
				if !m.Online || m.Identifier == "" {
					t.Fatalf("member %+v", m)
				}
				names = append(names, m.Username)
			}
			if !page.More {
				break
			}
			q.After = names[len(names)-1]
		}
		if fmt.Sprint(names) != "[alice bob carol]" {
			t.Fatalf("members: %v", names)
		}

		// Typing: the other members hear it, the typist's own
		// sessions do not; a second within 3 s is acked and dropped.
		if err := alice.Typing(ctx, "#team"); err != nil {
			t.Fatal(err)
		}
		if err := alice.Typing(ctx, "#team"); err != nil {
			t.Fatal(err)
		}
		for _, u := range []*user{bob, carol} {
			ev := u.waitEvent(t, protocol.EventTyping, "#team")
			if ev.Username != "alice" || ev.Identifier != alice.Welcome().Identifier {
				t.Fatalf("%s heard %+v", u.name, ev)
			}
		}
		if err := alice.Typing(ctx, "@bob"); err != nil {
			t.Fatal(err)
		}
		bob.waitEvent(t, protocol.EventTyping, "@bob")

		// Read: the marker moves up only, and every session of the
		// user hears it.
		for i := range 5 {
			if _, err := bob.Send(ctx, "#team", fmt.Sprint("news ", i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := alice.Read(ctx, "#team", 3); err != nil {
			t.Fatal(err)
		}
		for _, u := range []*user{alice, alice2} {
			if ev := u.waitEvent(t, protocol.EventRead, "#team"); ev.Seq != 3 {
				t.Fatalf("%s: read event %+v", u.name, ev)
			}
		}
		if err := alice.Read(ctx, "#team", 2); err != nil { // lower: acked, nothing moves
			t.Fatal(err)
		}
		if err := alice.Read(ctx, "#team", 5); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the second read event", func() bool { return len(alice2.events(protocol.EventRead)) == 2 })
		if evs := alice2.events(protocol.EventRead); evs[1].Seq != 5 {
			t.Fatalf("read events: %+v", evs)
		}
		// A new connection's welcome has the marker.
		again := dial(t, "alice", nodes[0].URL)
		if w := again.Welcome(); w.Read["#team"] != 5 || w.Latest["#team"] != 5 {
			t.Fatalf("welcome after read: latest %v, read %v", w.Latest, w.Read)
		}

		// The errors of sections 6 and 7.
		for _, tc := range []struct {
			code protocol.Code
			err  error
		}{
			{protocol.CodeNotFound, func() error { _, err := bob.Members(ctx, "#nope", chatclient.MembersQuery{}); return err }()},
			{protocol.CodeInvalidTarget, func() error { _, err := bob.Members(ctx, "@alice", chatclient.MembersQuery{}); return err }()},
			{protocol.CodeBadRequest, func() error { _, err := bob.Members(ctx, "#team", chatclient.MembersQuery{Limit: 1001}); return err }()},
			{protocol.CodeNotMember, func() error {
				if err := carol.Leave(ctx, "#team"); err != nil {
					return err
				}
				return carol.Typing(ctx, "#team")
			}()},
			{protocol.CodeNotFound, carol.Typing(ctx, "@nobody")},
			{protocol.CodeBadRequest, alice.Read(ctx, "#team", 99)},
			{protocol.CodeNotMember, carol.Read(ctx, "#team", 1)},
			{protocol.CodeNotFound, carol.Read(ctx, "#nope", 1)},
		} {
			checkCode(t, tc.err, tc.code)
		}
	})
}

// TestPresence: the members of a user's channel hear it go offline a
// grace after its client closed, and online when it comes back; members
// shows the same.
func TestPresence(t *testing.T) {
	node := chattest.Start(t, chattest.Memory(), gateway.Config{RateLimit: 100000, PresenceGrace: 200 * time.Millisecond})
	ctx := ctxFor(t)
	alice := dial(t, "alice", node.URL)
	bob := dial(t, "bob", node.URL)
	channelWith(t, "#p", alice, bob)
	bobID := bob.Welcome().Identifier

	bob.Close()
	ev := alice.waitEvent(t, protocol.EventOffline, "#p")
	if ev.Identifier != bobID || ev.Username != "bob" {
		t.Fatalf("offline event %+v", ev)
	}
	if page, err := alice.Members(ctx, "#p", chatclient.MembersQuery{}); err != nil || !onlineIs(page, "bob", false) {
		t.Fatalf("members with bob offline: %+v, %v", page, err)
	}
	dial(t, "bob", node.URL)
	if ev := alice.waitEvent(t, protocol.EventOnline, "#p"); ev.Identifier != bobID {
		t.Fatalf("online event %+v", ev)
	}
	if page, err := alice.Members(ctx, "#p", chatclient.MembersQuery{}); err != nil || !onlineIs(page, "bob", true) {
		t.Fatalf("members with bob back: %+v, %v", page, err)
	}
	if err := bob.Typing(ctx, "#p"); !errors.Is(err, chatclient.ErrClosed) {
		t.Fatalf("typing on a closed client: %v", err)
	}
}

func onlineIs(page *chatclient.Members, name string, online bool) bool {
	for _, m := range page.Members {
		if m.Username == name {
			return m.Online == online
		}
	}
	return false
}
