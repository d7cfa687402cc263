package pubsub

import (
	"context"
	"testing"
	"time"
)

// TestMemoryIdempotencyWindow: a message id is remembered for
// IdempotencyWindow, then forgotten (on a clock the test moves).
func TestMemoryIdempotencyWindow(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	m := NewMemory(nil, HistoryOptions{})
	m.now = func() time.Time { return now }
	m.CreateChannel(ctx, "#w", "u1", Notice{})
	m.Join(ctx, "#w", Peer{ID: "u1", Username: "u1"})
	send := func() Stored {
		st, err := m.PublishMessage(ctx, "#w", Message{From: "u1", ID: "a", Head: []byte("{")})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	first := send()
	now = now.Add(IdempotencyWindow - time.Second)
	if st := send(); !st.Duplicate || st.Seq != first.Seq {
		t.Fatalf("retry within the window: %+v, want a duplicate of %d", st, first.Seq)
	}
	now = now.Add(2 * time.Second)
	if st := send(); st.Duplicate || st.Seq != first.Seq+1 {
		t.Fatalf("after the window: %+v, want a new message", st)
	}
	if len(m.idem) != 1 || len(m.idemQ) != 1 {
		t.Fatalf("%d ids remembered (%d queued), want the one new one", len(m.idem), len(m.idemQ))
	}
}
