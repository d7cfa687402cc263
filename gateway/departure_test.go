package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/pubsub"
)

// storedHistory is a channel's history of seqs 1 to n (each frame its
// seq in decimal), whose reads can be stalled or failed.
type storedHistory struct {
	mu        sync.Mutex
	n         uint64
	fail      bool          // reads fail
	gate      chan struct{} // if set, Range waits for it to close
	lastReads int
}

func (h *storedHistory) Range(ctx context.Context, log string, q pubsub.Query) (pubsub.Page, error) {
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return pubsub.Page{}, ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail {
		return pubsub.Page{}, errors.New("history: cannot be read")
	}
	page := pubsub.Page{First: 1}
	for seq := q.After + 1; seq <= h.n && len(page.Messages) < q.Limit; seq++ {
		page.Messages = append(page.Messages, pubsub.Entry{Seq: seq, Frame: frameOf(seq)})
	}
	page.More = q.After+uint64(len(page.Messages)) < h.n
	return page, nil
}

func (h *storedHistory) Last(ctx context.Context, logs ...string) ([]uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastReads++
	if h.fail {
		return nil, errors.New("history: cannot be read")
	}
	return []uint64{h.n}, nil
}

// departureWorld is a sequencer with one session of user "u" on #k,
// whose stream of #k has delivered seq 1.
type departureWorld struct {
	t      *testing.T
	seq    *sequencer
	router *router
	h      *storedHistory
	sess   *Session
}

const departTopic, departLog = "c:#k", "#k"

// newSequencerWorld returns a sequencer over h with one session of user
// "u" on its user topic and on topics, whose frames stay in its queue.
func newSequencerWorld(t *testing.T, h historyReader, topics ...string) (*sequencer, *router, *Session) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newMetrics(nil)
	env := &sessionEnv{log: log, metrics: m, sendQueue: 1000}
	sess := newSession("conn", auth.Session{UserID: "u", Username: "u"}, env, nil, nil, nil)
	sess.out.hold() // nothing is written: frames stay in the queue
	r := newRouter(m, func(string) {})
	r.enter(sess)
	r.add(userTopic("u"), sess)
	for _, topic := range topics {
		r.add(topic, sess)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	return newSequencer(ctx, &wg, r, h, func() uint64 { return 0 }, log, m), r, sess
}

func newDepartureWorld(t *testing.T) *departureWorld {
	t.Helper()
	h := &storedHistory{n: 1}
	seq, r, sess := newSequencerWorld(t, h, departTopic)
	w := &departureWorld{t: t, seq: seq, router: r, h: h, sess: sess}
	w.seq.baseline(departTopic, departLog, 0)
	w.seq.deliver(departTopic, departLog, 1, frameOf(1))
	return w
}

// store has history hold seqs 1 to n.
func (w *departureWorld) store(n uint64) {
	w.h.mu.Lock()
	w.h.n = n
	w.h.mu.Unlock()
}

// live has seqs come live, in that order.
func (w *departureWorld) live(seqs ...uint64) {
	for _, seq := range seqs {
		w.seq.deliver(departTopic, departLog, seq, frameOf(seq))
	}
}

// got takes the frames queued for the session.
func (w *departureWorld) got() []string {
	w.sess.out.mu.Lock()
	defer w.sess.out.mu.Unlock()
	var out []string
	for _, f := range w.sess.out.queue {
		out = append(out, string(f))
	}
	w.sess.out.queue = w.sess.out.queue[:0]
	return out
}

func (w *departureWorld) on() bool {
	return slices.Contains(w.router.topicsOf(w.sess, channelPrefix), departTopic)
}

// leave is the !left notice of u's leave coming live; it returns whether
// the leave is over (acknowledged, on the leaving node).
func (w *departureWorld) leave() func() bool {
	var mu sync.Mutex
	done := false
	w.seq.depart(departTopic, departLog, "u", []byte("left"), func() { mu.Lock(); done = true; mu.Unlock() }, leavePoint{live: true})
	return func() bool { mu.Lock(); defer mu.Unlock(); return done }
}

// TestDepartureAtOnce: a leave whose notice comes while the stream is in
// order takes effect at once, without a read.
func TestDepartureAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newDepartureWorld(t)
		w.store(2)
		w.live(2)
		over := w.leave()
		if !over() || w.on() || w.h.lastReads != 0 {
			t.Fatalf("over %v, on %v, %d reads: want at once, off, none", over(), w.on(), w.h.lastReads)
		}
		if got := w.got(); !slices.Equal(got, []string{"1", "2", "left"}) {
			t.Fatalf("got %v", got)
		}
	})
}

// TestDepartureWaitsForRepair: a leave whose notice comes while the stream
// repairs a gap takes effect once the repair has delivered the messages
// before it, and before the first message that came live after it, even
// though the read of where the numbering stands counts that one too.
func TestDepartureWaitsForRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newDepartureWorld(t)
		w.h.gate = make(chan struct{})
		w.store(3)
		w.live(3) // 2 was missed: the repair waits at the gate
		synctest.Wait()
		over := w.leave() // the leave happened after 3
		w.store(5)
		w.live(4) // after the notice: after the leave
		w.store(6)
		synctest.Wait() // the read of where the numbering stands says 3 to 6
		if over() || !w.on() {
			t.Fatalf("before the repair: over %v, on %v; want waiting, on", over(), w.on())
		}
		close(w.h.gate)
		synctest.Wait()
		if !over() || w.on() {
			t.Fatalf("after the repair: over %v, on %v; want over, off", over(), w.on())
		}
		if got := w.got(); !slices.Equal(got, []string{"1", "2", "3", "left"}) {
			t.Fatalf("got %v, want 1 to 3, then the left event", got)
		}
	})
}

// TestDepartureCalledOff: a join of the user calls a waiting leave off:
// the left event goes out, the session stays and gets what comes.
func TestDepartureCalledOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newDepartureWorld(t)
		w.h.gate = make(chan struct{})
		w.store(3)
		w.live(3)
		over := w.leave()
		synctest.Wait()
		w.seq.stay(departTopic, "u")
		if !over() || !w.on() {
			t.Fatalf("called off: over %v, on %v; want over, on", over(), w.on())
		}
		close(w.h.gate)
		synctest.Wait()
		if got := w.got(); !slices.Equal(got, []string{"1", "left", "2", "3"}) {
			t.Fatalf("got %v", got)
		}
	})
}

// TestDepartureGivesUp: while history cannot be read, a leave waits for
// the repair no longer than the repair does, then takes effect anyway.
func TestDepartureGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newDepartureWorld(t)
		w.h.fail = true
		w.store(3)
		w.live(3)
		start := time.Now()
		over := w.leave()
		for !over() {
			time.Sleep(100 * time.Millisecond)
		}
		if took := time.Since(start); took > repairGiveUp+time.Second {
			t.Fatalf("the leave took effect after %v", took)
		}
		if w.on() {
			t.Fatal("still on the channel after giving up")
		}
		if got := w.got(); !slices.Contains(got, "left") {
			t.Fatalf("got %v, want the left event", got)
		}
	})
}
