package chatclient_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/chattest"
)

// TestMain starts the node that the examples talk to, runs the tests, and
// fails the package if a client goroutine outlives them.
func TestMain(m *testing.M) {
	n, err := chattest.StartNode(chattest.Memory(), gateway.Config{RateLimit: 1000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverURL = n.URL
	code := chattest.Main(m)
	n.Stop()
	if code == 0 {
		if leak := chattest.Leaked("wirechat/chat/client.", 5*time.Second); leak != "" {
			fmt.Fprintln(os.Stderr, "goroutine leak:\n"+leak)
			code = 1
		}
	}
	os.Exit(code)
}

// serverURL is the base URL of a chat node with dev login on: in the
// examples, the server that the reader runs (here, one that TestMain
// started).
var serverURL string

// testConfig is the gateway configuration of the tests' nodes: a rate
// limit that senders sending as fast as acks come back stay under.
var testConfig = gateway.Config{RateLimit: 100000}

// backends are the two kinds of chat the tests run against: nodes in one
// process's memory (each node its own chat; a token made on one works on
// all), and nodes on one Redis (one chat).
var backends = []struct {
	name string
	// nodes starts n nodes; oneChat says whether they share the chat.
	nodes func(t *testing.T, n int) (nodes []*chattest.Node, oneChat bool)
}{
	{"memory", func(t *testing.T, n int) ([]*chattest.Node, bool) {
		first := chattest.Memory()
		var nodes []*chattest.Node
		for range n {
			b := chattest.Memory()
			b.Store = first.Store
			nodes = append(nodes, chattest.Start(t, b, testConfig))
		}
		return nodes, n == 1
	}},
	{"redis", func(t *testing.T, n int) ([]*chattest.Node, bool) {
		next := chattest.RedisCluster(t)
		var nodes []*chattest.Node
		for range n {
			nodes = append(nodes, chattest.Start(t, next(), testConfig))
		}
		return nodes, true
	}},
}

// inEachChat runs f in a subtest for each backend, with n nodes of one
// chat on Redis, and one node in memory (where each node is a chat).
func inEachChat(t *testing.T, n int, f func(t *testing.T, nodes []*chattest.Node)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			nodes, oneChat := b.nodes(t, n)
			if !oneChat {
				nodes = nodes[:1]
			}
			f(t, nodes)
		})
	}
}

// urlsOf returns the nodes' base URLs.
func urlsOf(nodes ...*chattest.Node) []string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL)
	}
	return urls
}

// ctxFor is a context for one test's requests, bounded so that a hang
// fails instead of blocking the run.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fastRetry are options that reconnect fast, for tests.
func fastRetry(name string) chatclient.Options {
	return chatclient.Options{
		Username:   name,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Logger:     chattest.Logger().With("client", name),
	}
}

// user is a test's client and everything it received.
type user struct {
	*chatclient.Client
	*recorder
	name string
}

// dial connects name to the nodes at urls, with dev login.
func dial(t *testing.T, name string, urls ...string) *user {
	t.Helper()
	return dialWith(t, fastRetry(name), urls...)
}

func dialWith(t *testing.T, opts chatclient.Options, urls ...string) *user {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := chatclient.Dial(ctx, urls, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", opts.Username, err)
	}
	r := record(c)
	t.Cleanup(r.wait) // after Close, which ends its loop
	t.Cleanup(func() { c.Close() })
	return &user{Client: c, recorder: r, name: opts.Username}
}

// recorder keeps every Update of a client.
type recorder struct {
	mu   sync.Mutex
	all  []chatclient.Update // guarded by mu
	done chan struct{}       // closed when Updates is closed
}

func record(c *chatclient.Client) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for u := range c.Updates() {
			r.mu.Lock()
			r.all = append(r.all, u)
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) wait() { <-r.done }

// updates returns a copy of what came so far.
func (r *recorder) updates() []chatclient.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chatclient.Update(nil), r.all...)
}

// messages returns the messages of a conversation that came so far.
func (r *recorder) messages(conv string) []chatclient.Message {
	var out []chatclient.Message
	for _, u := range r.updates() {
		if u.Message != nil && u.Message.Conversation == conv {
			out = append(out, *u.Message)
		}
	}
	return out
}

// events returns the events of kind that came so far.
func (r *recorder) events(kind string) []chatclient.Event {
	var out []chatclient.Event
	for _, u := range r.updates() {
		if u.Event != nil && u.Event.Kind == kind {
			out = append(out, *u.Event)
		}
	}
	return out
}

// connects returns the Connected updates so far.
func (r *recorder) connects() []chatclient.Connected {
	var out []chatclient.Connected
	for _, u := range r.updates() {
		if u.Connected != nil {
			out = append(out, *u.Connected)
		}
	}
	return out
}

// waitConnects waits for n Connected updates, and returns them.
func (r *recorder) waitConnects(t *testing.T, n int) []chatclient.Connected {
	t.Helper()
	eventually(t, fmt.Sprint(n, " connections"), func() bool { return len(r.connects()) >= n })
	return r.connects()
}

// waitMessages waits until conv has n messages, and returns them.
func (r *recorder) waitMessages(t *testing.T, conv string, n int) []chatclient.Message {
	t.Helper()
	var ms []chatclient.Message
	deadline := time.Now().Add(30 * time.Second)
	for ms = r.messages(conv); len(ms) < n; ms = r.messages(conv) {
		if time.Now().After(deadline) {
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprint(m.Seq, ":", m.Text))
			}
			t.Fatalf("timed out waiting for %d messages of %s; got %d: %v", n, conv, len(ms), got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ms
}

// waitEvent waits for an event of kind about target (a channel's or a
// member's), and returns it.
func (r *recorder) waitEvent(t *testing.T, kind, target string) chatclient.Event {
	t.Helper()
	var ev chatclient.Event
	eventually(t, kind+" "+target, func() bool {
		for _, e := range r.events(kind) {
			if e.Target == target || e.Emitter == "channel" && e.Identifier == target {
				ev = e
				return true
			}
		}
		return false
	})
	return ev
}

// eventually polls cond until it holds, or fails the test after a deadline
// that only a hang reaches.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkSeqs checks that ms are the messages from seq first on, each once
// and in order, with the texts text(seq).
func checkSeqs(t *testing.T, who string, ms []chatclient.Message, first uint64, text func(uint64) string) {
	t.Helper()
	for i, m := range ms {
		want := first + uint64(i)
		if m.Seq != want {
			t.Fatalf("%s: message %d has seq %d, want %d (a gap or a duplicate)", who, i, m.Seq, want)
		}
		if text != nil && m.Text != text(want) {
			t.Fatalf("%s: seq %d is %q, want %q", who, want, m.Text, text(want))
		}
	}
}
