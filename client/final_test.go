package chatclient_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/internal/chattest"
)

// TestLogoutIsFinal: a logout closes the user's websockets with 1000; the
// client does not reconnect, says why, and fails requests.
func TestLogoutIsFinal(t *testing.T) {
	node := chattest.Start(t, chattest.Memory(), testConfig)
	ctx := ctxFor(t)
	l, err := chatclient.DevLogin(ctx, nil, node.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	opts := fastRetry("alice")
	opts.Username, opts.Token = "", l.Token
	alice := dialWith(t, opts, node.URL)

	if err := chatclient.Logout(ctx, nil, node.URL, l.Token); err != nil {
		t.Fatal(err)
	}
	var se *chatclient.StatusError
	if err := chatclient.Logout(ctx, nil, node.URL, l.Token); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("a second logout: %v", err)
	}
	select {
	case <-alice.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not end after the logout")
	}
	var ce *chatclient.CloseError
	if err := alice.Err(); !errors.Is(err, chatclient.ErrLoggedOut) || !errors.As(err, &ce) || ce.Code != 1000 {
		t.Fatalf("Err: %v", err)
	}
	if _, err := alice.Send(ctx, "@alice", "hello?"); !errors.Is(err, chatclient.ErrClosed) || !errors.Is(err, chatclient.ErrLoggedOut) {
		t.Fatalf("send after the logout: %v", err)
	}
	alice.wait() // Updates is closed once everything was taken
	all := alice.updates()
	last := all[len(all)-1].Disconnected
	if last == nil || !last.Final || !errors.Is(last.Err, chatclient.ErrLoggedOut) {
		t.Fatalf("the last update: %+v", all[len(all)-1])
	}
	if n := len(alice.connects()); n != 1 {
		t.Fatalf("%d connections: the client reconnected after a logout", n)
	}
}

// TestDialFailures: what Dial does with nodes that are down and
// credentials that are refused.
func TestDialFailures(t *testing.T) {
	node := chattest.Start(t, chattest.Memory(), testConfig)
	dead := chattest.NewProxy(t, "http://127.0.0.1:1") // accepts, then finds no node behind it
	ctx := ctxFor(t)

	t.Run("a refused token ends Dial at once", func(t *testing.T) {
		opts := fastRetry("")
		opts.Token = "not-a-token"
		start := time.Now()
		_, err := chatclient.Dial(ctx, []string{node.URL}, opts)
		var se *chatclient.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
			t.Fatalf("Dial with a bad token: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatalf("Dial waited for its context (%v)", time.Since(start))
		}
	})

	t.Run("the next URL when one is down", func(t *testing.T) {
		u := dial(t, "bob", dead.URL, node.URL)
		if c := u.waitConnects(t, 1); c[0].URL != node.URL {
			t.Fatalf("connected to %s", c[0].URL)
		}
	})

	t.Run("no node answers until the context ends", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := chatclient.Dial(dctx, []string{dead.URL}, fastRetry("carol"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial to no node: %v", err)
		}
	})

	t.Run("bad arguments", func(t *testing.T) {
		for _, urls := range [][]string{nil, {"ftp://x"}, {"http://"}} {
			if _, err := chatclient.Dial(ctx, urls, fastRetry("dave")); err == nil {
				t.Errorf("Dial(%q) worked", urls)
			}
		}
		if _, err := chatclient.Dial(ctx, []string{node.URL}, chatclient.Options{}); err == nil {
			t.Error("Dial without credentials worked")
		}
	})

	t.Run("ws URLs of /ws work too", func(t *testing.T) {
		u := dial(t, "erin", "ws"+node.URL[len("http"):]+"/ws")
		if c := u.waitConnects(t, 1); c[0].URL != node.URL {
			t.Fatalf("connected to %s", c[0].URL)
		}
	})
}

// TestDevLoginAgain: with dev login, a node that does not know the
// client's token (another chat, whose login store lost it) gets a new
// login instead of ending the client.
func TestDevLoginAgain(t *testing.T) {
	a := chattest.Start(t, chattest.Memory(), testConfig)
	b := chattest.Start(t, chattest.Memory(), testConfig) // a login store of its own
	alice := dial(t, "alice", a.URL, b.URL)
	a.Drain(t)
	if c := alice.waitConnects(t, 2)[1]; c.URL != b.URL || c.Welcome.Username != "alice" {
		t.Fatalf("reconnect: %+v", c)
	}
	if seq, err := alice.Send(ctxFor(t), "@alice", "here"); err != nil || seq != 1 {
		t.Fatalf("send on b: %d, %v", seq, err)
	}
}
