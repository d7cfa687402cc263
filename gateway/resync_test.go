package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// TestResync: changes whose notices a node missed (made here straight in
// the registry, so no notice is published) are applied to the node's
// sessions when it resyncs after its pub/sub path came back: membership
// changes put the session on the right channels, and creates and destroys
// are told as events, once each.
func TestResync(t *testing.T) {
	ctx := context.Background()
	var mem *pubsub.Memory
	s, err := New(ctx, Config{}, Deps{Connect: func(h pubsub.Handler) (pubsub.Broker, pubsub.Registry, error) {
		mem = pubsub.NewMemory(h)
		return mem, mem, nil
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)

	const uid = "00000000-0000-4000-8000-00000000000a"
	sess := &Session{login: auth.Session{UserID: uid}, srv: s, topics: make(map[string]struct{}), writing: true}
	if !s.register(sess) {
		t.Fatal("register")
	}
	defer s.unregister(sess)
	s.router.addLocal(userTopic(uid), []*Session{sess})
	s.router.addLocal(clusterTopic, []*Session{sess})
	for _, c := range []string{"#kept", "#left", "#joined", "#gone"} {
		if err := s.create(ctx, sess, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"#kept", "#left"} {
		if _, err := mem.Join(ctx, c, uid); err != nil {
			t.Fatal(err)
		}
		s.router.addLocal(channelTopic(c), []*Session{sess})
	}
	// Missed while the node was cut off: a leave and a join elsewhere.
	if err := mem.Leave(ctx, "#left", uid, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Join(ctx, "#joined", uid); err != nil {
		t.Fatal(err)
	}
	// And a channel created, one destroyed.
	if err := mem.CreateChannel(ctx, "#new", uid, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.DestroyChannel(ctx, "#gone", uid, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}

	told := func() []string {
		sess.qmu.Lock()
		defer sess.qmu.Unlock()
		var out []string
		for _, f := range sess.queue {
			var ev protocol.Event
			if err := json.Unmarshal(f, &ev); err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.Event+" "+ev.Identifier)
		}
		sess.queue = sess.queue[:0]
		return out
	}
	if got, want := told(), []string{"create #kept", "create #left", "create #joined", "create #gone"}; !slices.Equal(got, want) {
		t.Fatalf("before resync the session was told %q, want %q", got, want)
	}
	s.resync(ctx)
	got := told()
	slices.Sort(got)
	if want := []string{"create #new", "destroy #gone"}; !slices.Equal(got, want) {
		t.Fatalf("resync told the session %q, want %q", got, want)
	}
	s.resync(ctx)
	if got := told(); len(got) > 0 {
		t.Fatalf("a second resync told the session %q, want nothing", got)
	}
	got = s.router.channelTopicsOf(sess)
	slices.Sort(got)
	if want := []string{"c:#joined", "c:#kept"}; !slices.Equal(got, want) {
		t.Fatalf("after resync the session receives %v, want %v", got, want)
	}
}

// bookEvents records what a channelBook passes on.
type bookEvents []string

func (e *bookEvents) send(channel string, exists bool) func() {
	return func() { e.change(channel, exists) }
}

func (e *bookEvents) change(channel string, exists bool) {
	op := "destroy"
	if exists {
		op = "create"
	}
	*e = append(*e, op+" "+channel)
}

func (e *bookEvents) take() []string {
	out := slices.Clone(*e)
	slices.Sort(out)
	*e = nil
	return out
}

// TestChannelBook: the book passes on each change of a channel's existence
// once, whether a notice or settle finds it, and settle leaves alone the
// channels whose notices arrived while it read the registry.
func TestChannelBook(t *testing.T) {
	var b channelBook
	var ev bookEvents
	read := func(names ...string) func() ([]string, error) {
		return func() ([]string, error) { return names, nil }
	}
	check := func(what string, want ...string) {
		t.Helper()
		if got := ev.take(); !slices.Equal(got, want) {
			t.Fatalf("%s: passed on %q, want %q", what, got, want)
		}
	}

	if err := b.settle(read("#a", "#b"), ev.change); err != nil {
		t.Fatal(err)
	}
	check("first settle", "create #a", "create #b")

	b.tell("#c", true, ev.send("#c", true))
	b.tell("#c", true, ev.send("#c", true))
	b.tell("#a", false, ev.send("#a", false))
	b.tell("#a", false, ev.send("#a", false))
	check("notices, each twice", "create #c", "destroy #a")

	// Notices that arrive while settle reads win over what it reads: the
	// read may have been answered before they were published.
	err := b.settle(func() ([]string, error) {
		b.tell("#d", true, ev.send("#d", true))
		b.tell("#b", false, ev.send("#b", false))
		return []string{"#b", "#c"}, nil // from before both
	}, ev.change)
	if err != nil {
		t.Fatal(err)
	}
	check("settle racing notices", "create #d", "destroy #b")

	// A settle with no notice meanwhile takes the registry's word.
	if err := b.settle(read("#c", "#e"), ev.change); err != nil {
		t.Fatal(err)
	}
	check("settle after missed notices", "create #e", "destroy #d")

	// A failed read changes nothing, and later notices count as usual.
	fail := errors.New("down")
	if err := b.settle(func() ([]string, error) { return nil, fail }, ev.change); !errors.Is(err, fail) {
		t.Fatalf("settle with a failing read: %v", err)
	}
	check("failed settle")
	b.tell("#e", true, ev.send("#e", true))
	check("known create after a failed settle")
	if err := b.settle(read("#c", "#e"), ev.change); err != nil {
		t.Fatal(err)
	}
	check("settle with nothing new")
}
