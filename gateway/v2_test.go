package gateway_test

// Protocol v2 on one node: history and seq (spec 5), members, presence
// and typing (spec 6), read markers (spec 7).

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/gateway"
)

// sendMsg sends a message with an id and returns the seq of its ack,
// leaving the frames that came meanwhile queued.
func (c *client) sendMsg(target, text, id string) float64 {
	c.t.Helper()
	c.send(`{"type":"message","target":"` + target + `","message":"` + text + `","id":"` + id + `"}`)
	for {
		for i, b := range c.pending {
			var m map[string]any
			if json.Unmarshal(b, &m) == nil && m["id"] == id {
				c.pending = append(c.pending[:i:i], c.pending[i+1:]...)
				if m["type"] != "ack" {
					c.t.Fatalf("%s: message %s answered %v", c.login.Username, id, m)
				}
				return m["seq"].(float64)
			}
		}
		c.pending = append(c.pending, c.readWire())
	}
}

// flush has from send the sessions to (all of one user) a private
// message and reads each up to it, dropping what came before: what any of
// them receives after is news.
func flush(t *testing.T, from *client, to ...*client) {
	t.Helper()
	text := fmt.Sprintf("flush-%d", time.Now().UnixNano())
	from.send(`{"type":"message","target":"@` + to[0].login.Username + `","message":"` + text + `","id":"` + text + `"}`)
	from.expectAck(text) // the frames before it stay queued, to be dropped now
	for _, c := range append(to, from) {
		for {
			if m := c.read(); m["type"] == "message" && m["message"] == text {
				break
			}
		}
		c.pending = nil
	}
}

// history asks for a target's history and returns the answer.
func (c *client) history(target, args, id string) map[string]any {
	c.t.Helper()
	c.send(`{"type":"command","action":"history","target":"` + target + `"` + args + `,"id":"` + id + `"}`)
	for {
		m := c.read()
		if m["id"] == id {
			return m
		}
	}
}

func texts(t *testing.T, h map[string]any) []string {
	t.Helper()
	var out []string
	for _, f := range h["messages"].([]any) {
		out = append(out, f.(map[string]any)["message"].(string))
	}
	return out
}

func TestHistory(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{RateLimit: 1000})
	alice, bob := n.user("alice"), n.user("bob")
	alice.do("create", "#h")
	alice.do("join", "#h")
	for i := 1; i <= 12; i++ {
		if seq := alice.sendMsg("#h", fmt.Sprint("m", i), fmt.Sprint("s", i)); seq != float64(i) {
			t.Fatalf("message %d acked with seq %v", i, seq)
		}
	}
	alice.pending = nil

	h := alice.history("#h", `,"limit":5`, "h1")
	if h["type"] != "history" || h["target"] != "#h" || h["first"] != 1.0 || h["more"] != true {
		t.Fatalf("newest five: %v", h)
	}
	if got := texts(t, h); !slices.Equal(got, []string{"m8", "m9", "m10", "m11", "m12"}) {
		t.Fatalf("newest five: %v", got)
	}
	frame := h["messages"].([]any)[0].(map[string]any)
	if frame["type"] != "message" || frame["seq"] != 8.0 || frame["username"] != "alice" || frame["ts"] == nil {
		t.Fatalf("a stored frame is not the live one: %v", frame)
	}
	if got := texts(t, alice.history("#H", `,"before":3`, "h2")); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("before 3: %v", got)
	}
	if got := texts(t, alice.history("#h", `,"after":10`, "h3")); !slices.Equal(got, []string{"m11", "m12"}) {
		t.Fatalf("after 10: %v", got)
	}
	// Without an id the reply comes all the same, without an id.
	alice.send(`{"type":"command","action":"history","target":"#h","limit":1}`)
	if m := alice.expect("history"); m["id"] != nil || len(m["messages"].([]any)) != 1 {
		t.Fatalf("history without id: %v", m)
	}

	flush(t, alice, bob)
	{ // errors
		for _, tc := range []struct{ frame, code string }{
			{`{"type":"command","action":"history","target":"#nope","id":"e"}`, "not_found"},
			{`{"type":"command","action":"history","target":"@nobody","id":"e"}`, "not_found"},
			{`{"type":"command","action":"history","target":"#h","id":"e"}`, "not_member"},
			{`{"type":"command","action":"history","target":"#h","before":5,"after":2,"id":"e"}`, "bad_request"},
			{`{"type":"command","action":"history","target":"#h","limit":201,"id":"e"}`, "bad_request"},
			{`{"type":"command","action":"history","target":"#h","before":0,"id":"e"}`, "bad_request"},
			{`{"type":"command","action":"history","target":"h","id":"e"}`, "invalid_target"},
		} {
			bob.send(tc.frame)
			bob.expectError(tc.code, "e")
		}
	}
	{ // private conversations
		bob.sendMsg("@alice", "hi alice", "p1")
		alice.sendMsg("@bob", "hi bob", "p2")
		for _, c := range []*client{alice, bob} {
			c.pending = nil
			peer := "@bob"
			if c == bob {
				peer = "@alice"
			}
			h := c.history(peer, "", "hp")
			// The flush above was their first message.
			if got := texts(t, h); len(got) != 3 || !slices.Equal(got[1:], []string{"hi alice", "hi bob"}) || h["target"] != peer {
				t.Fatalf("%s's history of %s: %v", c.login.Username, peer, h)
			}
		}
	}
}

// TestIdempotentSend: a retry of a message with the same id gets the
// first one's ack and seq and is delivered once.
func TestIdempotentSend(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	alice, bob := n.user("alice"), n.user("bob")
	alice.do("create", "#i")
	alice.do("join", "#i")
	bob.do("join", "#i")
	first := alice.sendMsg("#i", "once", "same")
	again := alice.sendMsg("#i", "once", "same")
	if first != again {
		t.Fatalf("retry acked with seq %v, the first with %v", again, first)
	}
	// From another connection of the same user, too (a reconnect).
	alice2 := n.dial(alice.login)
	if seq := alice2.sendMsg("#i", "once", "same"); seq != first {
		t.Fatalf("retry from another connection acked with %v, want %v", seq, first)
	}
	bob.pending = nil
	var got []string
	for len(got) < 2 {
		m := bob.read()
		if m["type"] == "message" {
			got = append(got, m["message"].(string))
		}
		if len(got) == 1 {
			alice.sendMsg("#i", "next", "other")
		}
	}
	if !slices.Equal(got, []string{"once", "next"}) {
		t.Fatalf("bob got %v, want the message once, then the next", got)
	}
}

// TestWelcomeV2: the welcome has the store's epoch, the newest seq of the
// user's channels and conversations, and its read markers.
func TestWelcomeV2(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	alice, bob := n.user("alice"), n.user("bob")
	for _, k := range []string{"latest", "read"} {
		if m, ok := alice.welcome[k].(map[string]any); !ok || len(m) != 0 {
			t.Fatalf("a new user's welcome %s: %#v, want {}", k, alice.welcome[k])
		}
	}
	epoch, _ := alice.welcome["epoch"].(string)
	if epoch == "" {
		t.Fatal("no epoch in the welcome")
	}
	alice.do("create", "#w")
	alice.do("join", "#w")
	alice.do("create", "#quiet")
	alice.do("join", "#quiet")
	alice.sendMsg("#w", "one", "1")
	alice.sendMsg("#w", "two", "2")
	bob.sendMsg("@alice", "hey", "3")
	alice.send(`{"type":"command","action":"read","target":"#w","seq":1,"id":"r"}`)
	alice.expectAck("r")
	again := n.dial(alice.login)
	latest, _ := json.Marshal(again.welcome["latest"])
	read, _ := json.Marshal(again.welcome["read"])
	if string(latest) != `{"#w":2,"@bob":1}` || string(read) != `{"#w":1}` || again.welcome["epoch"] != epoch {
		t.Fatalf("welcome latest %s read %s epoch %v", latest, read, again.welcome["epoch"])
	}
}

func TestMembers(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	owner := n.user("owner")
	owner.do("create", "#m")
	var names []string
	for i := range 5 {
		c := n.user(fmt.Sprint("m", 4-i))
		c.do("join", "#m")
		names = append([]string{c.login.Username}, names...)
	}
	offline := n.login("zed")
	zed := n.dial(offline)
	zed.do("join", "#m")
	zed.conn.Close(websocket.StatusNormalClosure, "")
	names = append(names, "zed")

	members := func(args, id string) map[string]any {
		owner.send(`{"type":"command","action":"members","target":"#M"` + args + `,"id":"` + id + `"}`)
		for {
			if m := owner.read(); m["id"] == id {
				return m
			}
		}
	}
	var got []string
	after := ""
	for page := 0; ; page++ {
		m := members(`,"limit":2`+after, fmt.Sprint("p", page))
		if m["type"] != "members" || m["target"] != "#m" {
			t.Fatalf("members: %v", m)
		}
		list := m["members"].([]any)
		for _, e := range list {
			e := e.(map[string]any)
			got = append(got, e["username"].(string))
			if e["online"] != true || e["identifier"] == "" {
				t.Fatalf("member %v: want online (zed is in his grace) with an identifier", e)
			}
		}
		if m["more"] != true {
			break
		}
		after = `,"after":"` + list[len(list)-1].(map[string]any)["username"].(string) + `"`
	}
	if !slices.Equal(got, names) {
		t.Fatalf("members %v, want %v", got, names)
	}
	for _, tc := range []struct{ frame, code string }{
		{`{"type":"command","action":"members","target":"#nope","id":"e"}`, "not_found"},
		{`{"type":"command","action":"members","target":"@owner","id":"e"}`, "invalid_target"},
		{`{"type":"command","action":"members","target":"#m","limit":0,"id":"e"}`, "bad_request"},
		{`{"type":"command","action":"members","target":"#m","limit":1001,"id":"e"}`, "bad_request"},
	} {
		owner.send(tc.frame)
		owner.expectError(tc.code, "e")
	}
}

// TestPresence: members of a user's channels hear it come online and, a
// grace after its last websocket closed, go offline; a reconnect within
// the grace sends nothing; a channel above the size limit hears nothing;
// the user's own sessions hear nothing.
func TestPresence(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{PresenceGrace: 500 * time.Millisecond, PresenceMaxMembers: 3})
	bob := n.user("bob")
	bob.do("create", "#small")
	bob.do("join", "#small")
	bob.do("create", "#big")
	bob.do("join", "#big")
	for _, name := range []string{"x", "y"} {
		n.user(name).do("join", "#big") // #big: bob, x, y and alice: 4, above 3
	}
	aliceLogin := n.login("alice")
	alice := n.dial(aliceLogin)
	alice.do("join", "#small")
	alice.do("join", "#big")
	alice.conn.Close(websocket.StatusNormalClosure, "")

	// alice comes back after her grace: offline, then online.
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 1 && time.Now().Before(deadline) {
		if m := bob.read(); m["type"] == "event" && (m["event"] == "online" || m["event"] == "offline") {
			got = append(got, fmt.Sprint(m["event"], " ", m["username"], " ", m["target"]))
		}
	}
	if !slices.Equal(got, []string{"offline alice #small"}) {
		t.Fatalf("bob heard %v, want alice offline in #small only", got)
	}
	alice = n.dial(aliceLogin)
	if m := expectEvent(t, bob, "online", aliceLogin.Identifier); m["target"] != "#small" || m["username"] != "alice" {
		t.Fatalf("online event %v", m)
	}
	// Reconnecting within the grace: nothing.
	alice2 := n.dial(aliceLogin)
	alice.conn.Close(websocket.StatusNormalClosure, "")
	alice2.conn.Close(websocket.StatusNormalClosure, "")
	alice3 := n.dial(aliceLogin)
	// Nothing may come: wait past the grace and a sweep, then prove it.
	time.Sleep(2 * time.Second)
	sentinel(t, alice3, bob)
	alice3.quiet() // her own sessions hear nothing of her
}

// TestTyping: the other members of a channel (the peer of a conversation)
// hear a user type, at most once every 3 s; the typist's own sessions do
// not; typing is checked as a message is.
func TestTyping(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	aliceLogin := n.login("alice")
	alice, alice2 := n.dial(aliceLogin), n.dial(aliceLogin)
	bob, carol := n.user("bob"), n.user("carol")
	alice.do("create", "#t")
	for _, c := range []*client{alice, bob} {
		c.do("join", "#t")
	}
	flush(t, carol, alice, alice2)
	flush(t, carol, bob)
	alice.do("typing", "#t")
	if m := expectEvent(t, bob, "typing", aliceLogin.Identifier); m["target"] != "#t" || m["username"] != "alice" {
		t.Fatalf("typing event %v", m)
	}
	alice.do("typing", "#t") // within 3 s: acked, dropped
	sentinel(t, carol, bob)
	alice2.quiet()

	alice.do("typing", "@bob")
	if m := expectEvent(t, bob, "typing", aliceLogin.Identifier); m["target"] != "@bob" {
		t.Fatalf("private typing event %v", m)
	}
	alice2.quiet()
	for _, tc := range []struct{ frame, code string }{
		{`{"type":"command","action":"typing","target":"#t","id":"e"}`, "not_member"},
		{`{"type":"command","action":"typing","target":"#nope","id":"e"}`, "not_found"},
		{`{"type":"command","action":"typing","target":"@nobody","id":"e"}`, "not_found"},
	} {
		carol.send(tc.frame)
		carol.expectError(tc.code, "e")
	}
}

// TestReadMarkers: the marker moves up only, every session of the user
// hears when it does, and the spec's errors come in the spec's order.
func TestReadMarkers(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	aliceLogin := n.login("alice")
	alice, alice2 := n.dial(aliceLogin), n.dial(aliceLogin)
	bob := n.user("bob")
	alice.do("create", "#r")
	alice.do("join", "#r")
	for i := range 5 {
		alice.sendMsg("#r", "x", fmt.Sprint(i))
	}
	flush(t, bob, alice, alice2)
	alice.send(`{"type":"command","action":"read","target":"#r","seq":3,"id":"r1"}`)
	alice.expectAck("r1")
	for _, c := range []*client{alice, alice2} {
		if m := expectEvent(t, c, "read", aliceLogin.Identifier); m["seq"] != 3.0 || m["target"] != "#r" {
			t.Fatalf("read event %v", m)
		}
	}
	alice.send(`{"type":"command","action":"read","target":"#r","seq":2,"id":"r2"}`)
	alice.expectAck("r2") // lower: acked, nothing moves
	alice2.quiet()
	for _, tc := range []struct {
		who         *client
		frame, code string
	}{
		{alice, `{"type":"command","action":"read","target":"#r","seq":6,"id":"e"}`, "bad_request"},
		{alice, `{"type":"command","action":"read","target":"#r","id":"e"}`, "bad_request"},
		{bob, `{"type":"command","action":"read","target":"#r","seq":1,"id":"e"}`, "not_member"},
		{bob, `{"type":"command","action":"read","target":"#r","seq":9,"id":"e"}`, "bad_request"},
		{bob, `{"type":"command","action":"read","target":"#nope","seq":1,"id":"e"}`, "not_found"},
		{bob, `{"type":"command","action":"read","target":"@nobody","seq":1,"id":"e"}`, "not_found"},
	} {
		tc.who.send(tc.frame)
		tc.who.expectError(tc.code, "e")
	}
	// Leaving drops the marker.
	alice.do("leave", "#r")
	alice.do("join", "#r")
	again := n.dial(aliceLogin)
	if read, _ := json.Marshal(again.welcome["read"]); string(read) != `{}` {
		t.Fatalf("read markers after leaving and joining again: %s", read)
	}
}
