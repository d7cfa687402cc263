package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/chattest"
)

func TestMain(m *testing.M) { os.Exit(chattest.Main(m)) }

// startBot runs the bot against urls until the test ends.
func startBot(t *testing.T, urls ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-url", strings.Join(urls, ","), "-channel", "#Echo"}, "", logTo(t))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the bot ended with %v", err)
		}
	})
}

func logTo(t *testing.T) io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}

// person is a user who talks to the bot.
type person struct {
	c   *chatclient.Client
	ctx context.Context
}

func newPerson(t *testing.T, name string, urls ...string) *person {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	c, err := chatclient.Dial(ctx, urls, chatclient.Options{Username: name, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The bot creates the channel; the person joins once it exists.
	for {
		err := c.Join(ctx, "#echo")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("join #echo: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &person{c: c, ctx: ctx}
}

// say sends text and waits for the bot's answer: the next message of the
// channel from someone else must be exactly that.
func (p *person) say(t *testing.T, text, want string) {
	t.Helper()
	if _, err := p.c.Send(p.ctx, "#echo", text); err != nil {
		t.Fatal(err)
	}
	me := p.c.Welcome().Identifier
	for {
		select {
		case u := <-p.c.Updates():
			m := u.Message
			if m == nil || m.Conversation != "#echo" || m.Identifier == me {
				continue
			}
			if m.Text != want || m.Username != "echobot" {
				t.Fatalf("after %q the bot said %q (as %s), want %q", text, m.Text, m.Username, want)
			}
			return
		case <-p.ctx.Done():
			t.Fatalf("no answer to %q", text)
		}
	}
}

// TestEcho: the bot answers each message once, and not its own.
func TestEcho(t *testing.T) {
	node := chattest.Start(t, chattest.Memory(), gateway.Config{})
	startBot(t, node.URL)
	alice := newPerson(t, "alice", node.URL)
	alice.say(t, "hello", "echo: hello")
	alice.say(t, "and again", "echo: and again")
	long := strings.Repeat("é", 2048) // 4096 bytes: the echo must be cut
	alice.say(t, long, "echo: "+strings.Repeat("é", 2045))
}

// TestEchoAcrossDrain: the bot's node shuts down; the bot carries on from
// the other node of the chat by itself.
func TestEchoAcrossDrain(t *testing.T) {
	next := chattest.RedisCluster(t)
	a := chattest.Start(t, next(), gateway.Config{})
	b := chattest.Start(t, next(), gateway.Config{})
	startBot(t, a.URL, b.URL)
	bob := newPerson(t, "bob", b.URL)
	bob.say(t, "before", "echo: before")
	a.Drain(t)
	bob.say(t, "after", "echo: after")
}

func TestEchoText(t *testing.T) {
	for in, want := range map[string]string{
		"hi":                            "echo: hi",
		strings.Repeat("a", 4090):       "echo: " + strings.Repeat("a", 4090),
		strings.Repeat("a", 4091):       "echo: " + strings.Repeat("a", 4090),
		"a" + strings.Repeat("€", 1400): "echo: a" + strings.Repeat("€", 1363),
	} {
		if got := echo(in); got != want || len(got) > maxText {
			t.Errorf("echo of %d bytes: %d bytes, want %d", len(in), len(got), len(want))
		}
	}
}
