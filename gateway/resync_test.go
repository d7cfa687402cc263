package gateway

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/pubsub"
)

// TestResync: membership changes whose notices a node missed (made here
// straight in the registry, so no notice is published) are applied to the
// node's sessions when it resyncs after its pub/sub path came back.
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
	for _, c := range []string{"#kept", "#left", "#joined"} {
		if err := mem.CreateChannel(ctx, c, uid, pubsub.Notice{}); err != nil {
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

	s.resync(ctx)
	got := s.router.channelTopicsOf(sess)
	slices.Sort(got)
	if want := []string{"c:#joined", "c:#kept"}; !slices.Equal(got, want) {
		t.Fatalf("after resync the session receives %v, want %v", got, want)
	}
}
