package gateway

import (
	"slices"
	"testing"
	"time"
)

// conversationWorld is a sequencer with one session of user "u", on its
// user topic only, and the history of one conversation.
type conversationWorld struct {
	seq  *sequencer
	h    *storedHistory
	sess *Session
}

const convLog = "@conv"

func newConversationWorld(t *testing.T) *conversationWorld {
	t.Helper()
	h := &storedHistory{}
	seq, _, sess := newSequencerWorld(t, h)
	return &conversationWorld{seq: seq, h: h, sess: sess}
}

// publish stores seqs 1 to n; live has seqs come live, in that order.
func (w *conversationWorld) publish(n uint64) {
	w.h.mu.Lock()
	w.h.n = n
	w.h.mu.Unlock()
}

func (w *conversationWorld) live(seqs ...uint64) {
	for _, seq := range seqs {
		w.seq.deliver(userTopic("u"), convLog, seq, frameOf(seq))
	}
}

// await waits until the session holds want, in that order, and no more.
func (w *conversationWorld) await(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		w.sess.out.mu.Lock()
		got = got[:0]
		for _, f := range w.sess.out.queue {
			got = append(got, string(f))
		}
		w.sess.out.mu.Unlock()
		if slices.Equal(got, want) {
			time.Sleep(20 * time.Millisecond) // nothing more comes
			w.sess.out.mu.Lock()
			n := len(w.sess.out.queue)
			w.sess.out.mu.Unlock()
			if n == len(want) {
				return
			}
		}
	}
	t.Fatalf("session got %q, want %q", got, want)
}

// TestNewConversationOutOfOrder: on Redis Cluster a user topic can carry
// a new conversation's seq 2 before its seq 1 (each copy of a private
// message is published by a script of its own). Once a welcome listed
// all of the user's conversations, an unlisted one is new: it starts at
// seq 1, and seq 2 waits for the repair of seq 1.
func TestNewConversationOutOfOrder(t *testing.T) {
	w := newConversationWorld(t)
	w.seq.conversations(userTopic("u"), nil, true)
	w.publish(2)
	w.live(2)
	w.await(t, "1", "2")
	w.live(1) // the late copy: delivered already
	w.await(t, "1", "2")
}

// TestConversationHeldUntilWelcome: frames that come before the first
// welcome's list are held; a whole list says the conversation is new.
func TestConversationHeldUntilWelcome(t *testing.T) {
	w := newConversationWorld(t)
	w.publish(2)
	w.live(2)
	w.await(t)
	w.seq.conversations(userTopic("u"), nil, true)
	w.await(t, "1", "2")
}

// TestConversationListedStartsAtBaseline: a listed conversation starts
// after the seq the welcome read; a list cut short has an unlisted
// conversation start at its first frame (it may be an old one).
func TestConversationListedStartsAtBaseline(t *testing.T) {
	w := newConversationWorld(t)
	w.publish(5)
	w.seq.conversations(userTopic("u"), map[string]uint64{convLog: 3}, false)
	w.live(5)
	w.await(t, "4", "5")

	w2 := newConversationWorld(t)
	w2.publish(9)
	w2.seq.conversations(userTopic("u"), nil, false)
	w2.live(9, 10)
	w2.await(t, "9", "10")
}
