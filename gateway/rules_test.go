package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/gateway"
)

func TestWelcome(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	alice := n.user("alice")
	if alice.welcome["identifier"] != alice.login.Identifier || alice.welcome["username"] != "alice" {
		t.Fatalf("welcome names the wrong user: %v", alice.welcome)
	}
	for _, k := range []string{"channels", "joined", "owned"} {
		if l, ok := alice.welcome[k].([]any); !ok || len(l) != 0 {
			t.Fatalf("welcome %s: want [], got %#v", k, alice.welcome[k])
		}
	}
	alice.do("create", "#main")
	alice.expect("event")
	alice.do("create", "#random")
	alice.expect("event")
	alice.do("join", "#main")
	alice.expect("event")

	again := n.dial(alice.login)
	want := map[string]string{"channels": "[#main #random]", "joined": "[#main]", "owned": "[#main #random]"}
	for k, v := range want {
		if got := fmt.Sprint(again.welcome[k]); got != v {
			t.Errorf("welcome %s = %s, want %s", k, got, v)
		}
	}
}

// TestSeedFrames checks the exact JSON of the original protocol's events and
// messages.
func TestSeedFrames(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	alice := n.user("alice")
	bob := n.user("bob")

	alice.send(`{"type":"command","action":"create","target":"#main"}`)
	alice.expectJSON(`{"type":"event","emitter":"channel","identifier":"#main","event":"create"}`)
	bob.expectJSON(`{"type":"event","emitter":"channel","identifier":"#main","event":"create"}`)

	bob.send(`{"type":"command","action":"join","target":"#main"}`)
	bob.expectJSON(`{"type":"event","emitter":"participant","identifier":"` + bob.login.Identifier + `","event":"join","target":"#main","username":"bob"}`)

	alice.do("join", "#main")
	join := `{"type":"event","emitter":"participant","identifier":"` + alice.login.Identifier + `","event":"join","target":"#main","username":"alice"}`
	alice.expectJSON(join)
	bob.expectJSON(join)

	alice.send(`{"type":"message","target":"#main","message":"Hello guys!"}`)
	for _, c := range []*client{alice, bob} {
		raw := c.readRaw()
		var m map[string]any
		json.Unmarshal(raw, &m)
		ts, _ := m["ts"].(string)
		if len(ts) != len("2026-11-26T08:40:05.123Z") || !strings.HasSuffix(ts, "Z") {
			t.Fatalf("ts %q is not RFC 3339 UTC with milliseconds", ts)
		}
		// v2: the message carries its seq (spec 5), last.
		want := `{"type":"message","emitter":"participant","target":"#main","identifier":"` + alice.login.Identifier +
			`","username":"alice","message":"Hello guys!","ts":"` + ts + `","seq":1}`
		if string(raw) != want {
			t.Fatalf("%s:\n got %s\nwant %s", c.login.Username, raw, want)
		}
	}

	alice.send(`{"type":"message","target":"@bob","message":"hi"}`)
	for _, c := range []*client{bob, alice} {
		raw := string(c.readRaw())
		prefix := `{"type":"message","emitter":"participant","target":"@bob","identifier":"` + alice.login.Identifier + `","username":"alice","message":"hi","ts":"`
		if !strings.HasPrefix(raw, prefix) {
			t.Fatalf("%s got %s", c.login.Username, raw)
		}
	}

	alice.send(`{"type":"command","action":"leave","target":"#main"}`)
	left := `{"type":"event","emitter":"participant","identifier":"` + alice.login.Identifier + `","event":"left","target":"#main","username":"alice"}`
	alice.expectJSON(left)
	bob.expectJSON(left)

	alice.send(`{"type":"command","action":"destroy","target":"#main"}`)
	alice.expectJSON(`{"type":"event","emitter":"channel","identifier":"#main","event":"destroy"}`)
	bob.expectJSON(`{"type":"event","emitter":"channel","identifier":"#main","event":"destroy"}`)
}

func TestRules(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	alice := n.user("alice")
	bob := n.user("bob")
	carol := n.user("carol")

	t.Run("create is seen by everyone, creator does not join", func(t *testing.T) {
		alice.do("create", "#Go")
		for _, c := range []*client{alice, bob, carol} {
			if m := c.expect("event"); m["identifier"] != "#go" || m["event"] != "create" {
				t.Fatalf("%s: %v", c.login.Username, m)
			}
		}
		alice.send(`{"type":"message","target":"#go","message":"x","id":"m"}`)
		alice.expectError("not_member", "m")
	})
	t.Run("create of an existing channel", func(t *testing.T) {
		bob.send(`{"type":"command","action":"create","target":"#GO","id":"c"}`)
		bob.expectError("already_exists", "c")
		alice.quiet()
	})
	t.Run("join reaches every member, joiner included", func(t *testing.T) {
		bob.do("join", "#go")
		if m := bob.expect("event"); m["event"] != "join" || m["identifier"] != bob.login.Identifier {
			t.Fatal(m)
		}
		alice.quiet() // not a member: hears nothing
		carol.do("join", "#go")
		for _, c := range []*client{bob, carol} {
			if m := c.expect("event"); m["event"] != "join" || m["username"] != "carol" {
				t.Fatalf("%s: %v", c.login.Username, m)
			}
		}
	})
	t.Run("join twice succeeds and sends nothing", func(t *testing.T) {
		carol.do("join", "#go")
		carol.quiet()
		bob.quiet()
	})
	t.Run("message reaches every member, sender included", func(t *testing.T) {
		bob.send(`{"type":"message","target":"#Go","message":"hello","id":"1"}`)
		bob.expectAck("1")
		for _, c := range []*client{bob, carol} {
			m := c.expect("message")
			if m["target"] != "#go" || m["message"] != "hello" || m["username"] != "bob" {
				t.Fatalf("%s: %v", c.login.Username, m)
			}
		}
		alice.quiet()
	})
	t.Run("leave reaches remaining members and the leaver", func(t *testing.T) {
		carol.do("leave", "#go")
		for _, c := range []*client{carol, bob} {
			if m := c.expect("event"); m["event"] != "left" || m["username"] != "carol" {
				t.Fatalf("%s: %v", c.login.Username, m)
			}
		}
		bob.send(`{"type":"message","target":"#go","message":"after"}`)
		bob.expect("message")
		carol.quiet() // no longer receives the channel
		carol.send(`{"type":"command","action":"leave","target":"#go","id":"l"}`)
		carol.expectError("not_member", "l")
	})
	t.Run("private message to every session of both, once", func(t *testing.T) {
		carol.send(`{"type":"message","target":"@Bob","message":"psst","id":"p"}`)
		carol.expectAck("p")
		for _, c := range []*client{bob, carol} {
			if m := c.expect("message"); m["target"] != "@bob" || m["message"] != "psst" {
				t.Fatalf("%s: %v", c.login.Username, m)
			}
		}
		alice.quiet()
		carol.send(`{"type":"message","target":"@carol","message":"note to self"}`)
		carol.expect("message")
		carol.quiet()
	})
	t.Run("private message to an offline user", func(t *testing.T) {
		n.login("dave")
		alice.send(`{"type":"message","target":"@dave","message":"see you","id":"d"}`)
		alice.expect("message")
		alice.expectAck("d")
	})
	t.Run("destroy only by the owner, seen by everyone", func(t *testing.T) {
		bob.send(`{"type":"command","action":"destroy","target":"#go","id":"x"}`)
		bob.expectError("forbidden", "x")
		alice.do("destroy", "#go")
		for _, c := range []*client{alice, bob, carol} {
			if m := c.expect("event"); m["event"] != "destroy" || m["identifier"] != "#go" {
				t.Fatalf("%s: %v", c.login.Username, m)
			}
		}
		bob.send(`{"type":"message","target":"#go","message":"gone?","id":"g"}`)
		bob.expectError("not_found", "g")
	})
}

func TestErrors(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{MaxMessageBytes: 10})
	alice := n.user("alice")
	alice.do("create", "#here")
	alice.expect("event")

	cases := []struct {
		name, frame, code, id string
	}{
		{"not json", `hello`, "bad_request", ""},
		{"not an object", `["type"]`, "bad_request", ""},
		{"unknown type", `{"type":"shout","target":"#here","id":"1"}`, "bad_request", "1"},
		{"unknown action", `{"type":"command","action":"kick","target":"#here","id":"2"}`, "bad_request", "2"},
		{"missing target", `{"type":"command","action":"join","id":"3"}`, "bad_request", "3"},
		{"target not a string", `{"type":"command","action":"join","target":7,"id":"4"}`, "bad_request", "4"},
		{"missing message", `{"type":"message","target":"#here","id":"5"}`, "bad_request", "5"},
		{"id not a string", `{"type":"command","action":"join","target":"#here","id":5}`, "bad_request", ""},
		{"id too long", `{"type":"command","action":"join","target":"#here","id":"` + strings.Repeat("x", 65) + `"}`, "bad_request", ""},
		{"bad channel name", `{"type":"command","action":"join","target":"#no spaces","id":"6"}`, "invalid_target", "6"},
		{"channel name too long", `{"type":"command","action":"create","target":"#` + strings.Repeat("a", 65) + `","id":"7"}`, "invalid_target", "7"},
		{"user where a channel is needed", `{"type":"command","action":"join","target":"@alice","id":"8"}`, "invalid_target", "8"},
		{"no sigil", `{"type":"message","target":"here","message":"x","id":"9"}`, "invalid_target", "9"},
		{"bad user name", `{"type":"message","target":"@al!ce","message":"x","id":"10"}`, "invalid_target", "10"},
		{"invalid target beats invalid text", `{"type":"message","target":"#a b","message":"","id":"11"}`, "invalid_target", "11"},
		{"empty text", `{"type":"message","target":"#here","message":"","id":"12"}`, "invalid_message", "12"},
		{"white space only", `{"type":"message","target":"#here","message":" \t\u00a0\u2003","id":"13"}`, "invalid_message", "13"},
		{"text too long", `{"type":"message","target":"#here","message":"12345678901","id":"14"}`, "invalid_message", "14"},
		{"unknown channel", `{"type":"command","action":"join","target":"#nope","id":"15"}`, "not_found", "15"},
		{"message to unknown channel is not_found, not not_member", `{"type":"message","target":"#nope","message":"x","id":"16"}`, "not_found", "16"},
		{"unknown user", `{"type":"message","target":"@nobody","message":"x","id":"17"}`, "not_found", "17"},
		{"leave unknown channel", `{"type":"command","action":"leave","target":"#nope","id":"18"}`, "not_found", "18"},
		{"destroy unknown channel", `{"type":"command","action":"destroy","target":"#nope","id":"19"}`, "not_found", "19"},
		{"already exists", `{"type":"command","action":"create","target":"#HERE","id":"20"}`, "already_exists", "20"},
		{"not a member", `{"type":"message","target":"#here","message":"x","id":"21"}`, "not_member", "21"},
		{"leave without membership", `{"type":"command","action":"leave","target":"#here","id":"22"}`, "not_member", "22"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			alice.send(tc.frame)
			e := alice.expectError(tc.code, tc.id)
			if msg, _ := e["message"].(string); msg == "" {
				t.Fatalf("error without a message: %v", e)
			}
		})
	}
	t.Run("unknown fields are ignored and errors change nothing", func(t *testing.T) {
		alice.send(`{"type":"command","action":"join","target":"#here","id":"ok","extra":{"a":[1,2]}}`)
		alice.expect("event")
		alice.expectAck("ok")
		n.dial(alice.login) // the connection survived every error above
	})
}

func TestForbiddenByOwnerOnly(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{})
	alice, bob := n.user("alice"), n.user("bob")
	alice.do("create", "#mine")
	alice.expect("event")
	bob.expect("event")
	bob.send(`{"type":"command","action":"destroy","target":"#mine","id":"d"}`)
	bob.expectError("forbidden", "d")
	bob.do("join", "#mine") // still there
	bob.expect("event")
}

func TestRateLimit(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{RateLimit: 1}) // burst 2
	alice := n.user("alice")
	for i := range 2 {
		alice.send(fmt.Sprintf(`{"type":"command","action":"join","target":"#none","id":"%d"}`, i))
		alice.expectError("not_found", fmt.Sprint(i))
	}
	alice.send(`{"type":"command","action":"create","target":"#limited","id":"over"}`)
	alice.expectError("rate_limited", "over")
	// The refused create had no effect: once the limit refills, it succeeds.
	eventually(t, 5e9, "the limit to refill", func() bool {
		alice.send(`{"type":"command","action":"create","target":"#limited","id":"again"}`)
		m := alice.read()
		return m["type"] == "event"
	})
	alice.expectAck("again")
}

func TestUpgradeRefusals(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{MaxSessionsPerUser: 2, AllowedOrigins: []string{"*.friend.example"}})
	status := func(header http.Header) int {
		req, _ := http.NewRequest("GET", n.http.URL+"/ws", nil)
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	l := n.login("alice")
	bearer := http.Header{"Authorization": {"Bearer " + l.Token}}
	if got := status(nil); got != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", got)
	}
	if got := status(http.Header{"Authorization": {"Bearer nonsense"}}); got != http.StatusUnauthorized {
		t.Errorf("bad token: %d, want 401", got)
	}
	if got := status(http.Header{"Authorization": bearer["Authorization"], "Origin": {"https://evil.example"}}); got != http.StatusForbidden {
		t.Errorf("foreign origin: %d, want 403", got)
	}
	if got := status(http.Header{"Cookie": {"chat_session=" + l.Token}, "Origin": {"https://app.friend.example"}}); got != http.StatusSwitchingProtocols {
		t.Errorf("allowed origin with cookie: %d, want 101", got)
	}
	// Fill both places (the upgrades above free theirs within moments),
	// then one more is refused until one closes.
	var open []*client
	eventually(t, 5*time.Second, "two places", func() bool {
		if c := n.tryDial(l); c != nil {
			open = append(open, c)
		}
		return len(open) == 2
	})
	if got := status(bearer); got != http.StatusTooManyRequests {
		t.Errorf("third session: %d, want 429", got)
	}
	open[0].conn.Close(websocket.StatusNormalClosure, "")
	eventually(t, 5*time.Second, "a freed place", func() bool {
		c := n.tryDial(l)
		return c != nil
	})
}

func TestNodeConnectionLimit(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{MaxConnections: 1})
	n.user("alice")
	l := n.login("bob")
	req, _ := http.NewRequest("GET", n.http.URL+"/ws", nil)
	req.Header.Set("Authorization", "Bearer "+l.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over the node limit: %d, want 503", resp.StatusCode)
	}
}
