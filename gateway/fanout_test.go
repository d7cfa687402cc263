package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/protocol"
)

// fanoutFixture is a router with n local sessions on one topic, without
// sockets: it measures the fan-out itself.
func fanoutFixture(n int) (*router, []*Session) {
	env := &sessionEnv{sendQueue: 1 << 20, metrics: newMetrics(nil), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r := newRouter(env.metrics, func(string) {})
	sessions := make([]*Session, n)
	for i := range sessions {
		sessions[i] = newSession(fmt.Sprint(i), auth.Session{UserID: fmt.Sprint(i)}, env, nil, nil, nil)
		// As if a writer held the role: the fixture has no socket, and
		// drain empties the queues instead.
		sessions[i].out.hold()
		r.enter(sessions[i])
	}
	r.add("c:#bench", sessions...)
	return r, sessions
}

func drain(sessions []*Session) {
	for _, s := range sessions {
		s.out.queue = s.out.queue[:0]
	}
}

var benchFrame = mustJSON(protocol.Message{
	Type: "message", Emitter: "participant", Target: "#bench",
	Identifier: "3f0e8f3a-8a4e-4c1e-9d7c-2b1b8c1d0e5f", Username: "alice",
	Message: "Hello guys! This is a message of about a hundred bytes, as chat messages go.", TS: "2026-11-26T08:40:05.123Z",
})

// TestFanoutAllocsPerRecipient keeps the fan-out's per-recipient path free
// of allocations: delivering to 1000 sessions allocates no more than
// delivering to one.
func TestFanoutAllocsPerRecipient(t *testing.T) {
	allocs := func(n int) float64 {
		r, sessions := fanoutFixture(n)
		r.forward("c:#bench", benchFrame, nil) // warm: queues get their capacity
		drain(sessions)
		return testing.AllocsPerRun(50, func() {
			r.forward("c:#bench", benchFrame, nil)
			drain(sessions)
		})
	}
	one, many := allocs(1), allocs(1000)
	if many > one {
		t.Fatalf("fan-out to 1000 sessions allocates %.1f times, to one %.1f: the per-recipient path allocates", many, one)
	}
}

func BenchmarkFanout1000(b *testing.B) {
	r, sessions := fanoutFixture(1000)
	b.ReportAllocs()
	for b.Loop() {
		r.forward("c:#bench", benchFrame, nil)
		drain(sessions)
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "deliveries/s")
}

func BenchmarkEncodeMessage(b *testing.B) {
	sess := &Session{login: auth.Session{UserID: "3f0e8f3a-8a4e-4c1e-9d7c-2b1b8c1d0e5f", Username: "alice"}}
	b.ReportAllocs()
	for b.Loop() {
		messageHead(sess, "#bench", "Hello guys! This is a message of about a hundred bytes, as chat messages go.")
	}
}
