package gateway

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/wirechat/chat/pubsub"
)

// gapWorld drives one stream against a history of n messages (of which
// the oldest `trimmed` are gone) and live frames that are lost, duplicated
// and delayed at random, with repairs answered at random moments, as the
// sequencer would.
type gapWorld struct {
	t         *testing.T
	rnd       *rand.Rand
	s         stream
	n         uint64 // history holds seqs 1..n
	trimmed   uint64 // seqs 1..trimmed are gone from history
	limit     int    // a repair reads at most this many
	repairs   int    // repairs owed
	delivered []uint64
	skipped   uint64
}

func frameOf(seq uint64) []byte { return []byte(strconv.FormatUint(seq, 10)) }

func (w *gapWorld) apply(st step) {
	for _, e := range st.deliver {
		seq, _ := strconv.ParseUint(string(e.Frame), 10, 64)
		if seq != e.Seq {
			w.t.Fatalf("frame %d delivered as seq %d", seq, e.Seq)
		}
		w.delivered = append(w.delivered, seq)
	}
	w.skipped += st.skipped
	if st.repair {
		w.repairs++
	}
}

// repair answers one owed repair from history as it is now: what was
// published up to published.
func (w *gapWorld) repair(published uint64) {
	w.repairs--
	after := w.s.next - 1
	page := pubsub.Page{First: max(w.trimmed+1, 1)}
	if page.First > published {
		page.First = published + 1
	}
	for seq := max(after+1, page.First); seq <= published && len(page.Messages) < w.limit; seq++ {
		page.Messages = append(page.Messages, pubsub.Entry{Seq: seq, Frame: frameOf(seq)})
	}
	last := after
	if len(page.Messages) > 0 {
		last = page.Messages[len(page.Messages)-1].Seq
	}
	page.More = last < published
	w.apply(w.s.fill(page))
}

// run publishes seqs baseline+1..n live, with loss, duplication and
// delay, and checks that the stream delivers each of them once, in
// order, skipping only what history lost.
func (w *gapWorld) run(baseline uint64, trusting bool) {
	w.s.trusting = trusting
	type live struct{ seq uint64 }
	var inFlight []live
	published := baseline
	baselineAt := w.rnd.IntN(int(w.n-baseline) + 1) // when the baseline arrives (awaiting streams)
	if trusting {
		baselineAt = -1
	}
	read := baseline // the baseline as read: the newest stored when it is read
	for step := 0; published < w.n || len(inFlight) > 0 || w.repairs > 0; step++ {
		if step == baselineAt {
			read = published
			w.apply(w.s.baseline(read))
		}
		switch r := w.rnd.IntN(10); {
		case r < 4 && published < w.n:
			published++
			switch w.rnd.IntN(10) {
			case 0: // lost
			case 1: // duplicated
				inFlight = append(inFlight, live{published}, live{published})
			default:
				inFlight = append(inFlight, live{published})
			}
		case r < 7 && len(inFlight) > 0:
			// Deliver one in flight; now and then not the oldest (a
			// repair's reads and live frames race).
			i := 0
			if w.rnd.IntN(5) == 0 {
				i = w.rnd.IntN(len(inFlight))
			}
			seq := inFlight[i].seq
			inFlight = append(inFlight[:i], inFlight[i+1:]...)
			w.apply(w.s.offer(seq, frameOf(seq)))
		case r < 9 && w.repairs > 0:
			w.repair(published)
		case r == 9:
			w.apply(w.s.lost()) // an outage of the pub/sub path
		}
		if step > 1_000_000 {
			w.t.Fatal("the world does not settle")
		}
	}
	if w.s.next == 0 && !trusting { // the baseline never came: it comes now
		read = published
		w.apply(w.s.baseline(read))
	}
	// The path is cut once more at the end: whatever was lost last is
	// read back.
	w.apply(w.s.lost())
	for w.repairs > 0 {
		w.repair(published)
	}
	w.check(baseline, read, trusting)
}

// check: seqs come in increasing order, none at or below the baseline
// (what was stored before the stream subscribed); from the first on, every
// seq that history still has is delivered; and the first is no later than
// the baseline as read plus one (what was published after the read is
// the stream's).
func (w *gapWorld) check(baseline, read uint64, trusting bool) {
	w.t.Helper()
	got := make(map[uint64]bool, len(w.delivered))
	for i, seq := range w.delivered {
		if i > 0 && seq <= w.delivered[i-1] {
			w.t.Fatalf("delivered %d after %d: %v", seq, w.delivered[i-1], w.delivered)
		}
		got[seq] = true
	}
	if len(w.delivered) == 0 {
		if !trusting && read < w.n && w.n > w.trimmed {
			w.t.Fatalf("delivered nothing, though %d..%d came after the read", read+1, w.n)
		}
		return
	}
	first := w.delivered[0]
	if first <= baseline {
		w.t.Fatalf("delivered %d, at or below the baseline %d", first, baseline)
	}
	if !trusting && first > read+1 && read+1 > w.trimmed && read < w.n {
		w.t.Fatalf("first delivered %d, after the read baseline %d plus one", first, read)
	}
	for seq := first; seq <= w.n; seq++ {
		if seq > w.trimmed && !got[seq] {
			w.t.Fatalf("seq %d never delivered (baseline %d, read %d, trimmed %d, n %d): %v", seq, baseline, read, w.trimmed, w.n, w.delivered)
		}
	}
}

// TestStreamFloats: frames published before the baseline was read, but
// still on their way when it comes, are delivered: the first live frame
// is where the stream starts, even below the baseline.
func TestStreamFloats(t *testing.T) {
	var s stream
	if st := s.baseline(10); len(st.deliver) != 0 || st.repair {
		t.Fatalf("baseline with nothing held: %+v", st)
	}
	var got []string
	for _, seq := range []uint64{8, 9, 10, 11} {
		st := s.offer(seq, frameOf(seq))
		for _, e := range st.deliver {
			got = append(got, string(e.Frame))
		}
		if st.repair {
			t.Fatalf("offer %d: a repair", seq)
		}
	}
	if fmt.Sprint(got) != "[8 9 10 11]" {
		t.Fatalf("delivered %v, want 8 to 11", got)
	}
	// A first frame after the baseline, beyond a gap, has the gap repaired
	// from the baseline on.
	var g stream
	g.baseline(10)
	if st := g.offer(13, frameOf(13)); !st.repair || len(st.deliver) != 0 || g.next != 11 {
		t.Fatalf("13 after a baseline of 10: %+v next %d, want a repair from 11", st, g.next)
	}
}

// TestStreamGapFree: whatever is lost, duplicated or delayed, a stream
// delivers every seq after its baseline once, in order, and skips only
// what history no longer has.
func TestStreamGapFree(t *testing.T) {
	for seed := range uint64(2000) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 7))
			n := uint64(1 + rnd.IntN(300))
			baseline := uint64(rnd.IntN(int(n)))
			w := &gapWorld{t: t, rnd: rnd, n: n, limit: 1 + rnd.IntN(40)}
			trusting := seed%5 == 0
			if rnd.IntN(4) == 0 && !trusting {
				w.trimmed = uint64(rnd.IntN(int(n) + 1)) // history lost the oldest
			}
			w.run(baseline, trusting)
		})
	}
}

// TestStreamGiveUp: a stream that holds too much while history cannot be
// read delivers what it holds, in order, and says what it skipped.
func TestStreamGiveUp(t *testing.T) {
	var s stream
	s.baseline(10)
	st := s.offer(12, frameOf(12)) // 11 is missing: a repair starts
	if !st.repair || len(st.deliver) != 0 {
		t.Fatalf("a gap: %+v, want a repair and nothing delivered", st)
	}
	var got []byte
	for seq := uint64(13); seq <= 12+maxHeld; seq++ {
		st = s.offer(seq, frameOf(seq))
		for _, e := range st.deliver {
			got = append(got, e.Frame...)
			got = append(got, ' ')
		}
		if st.skipped != 0 && st.skipped != 1 {
			t.Fatalf("skipped %d, want 1 (seq 11)", st.skipped)
		}
	}
	if len(got) == 0 || string(got[:3]) != "12 " {
		t.Fatalf("after giving up, delivered %.20q..., want 12 first", got)
	}
	if s.next != 13+maxHeld || s.repairing {
		t.Fatalf("next %d repairing %v after giving up", s.next, s.repairing)
	}
}

// entries returns history's messages from..to.
func entries(from, to uint64) []pubsub.Entry {
	var out []pubsub.Entry
	for seq := from; seq <= to; seq++ {
		out = append(out, pubsub.Entry{Seq: seq, Frame: frameOf(seq)})
	}
	return out
}

// TestStreamHeldDuringRead: a frame that comes while a repair's page is
// being read can be newer than everything the page saw: what lies between
// was stored after the read. The stream reads again rather than skip it
// (found on Redis Cluster, where a conversation's copies come out of
// order: seq 9 skipped, 10 delivered).
func TestStreamHeldDuringRead(t *testing.T) {
	var s stream
	s.baseline(4)
	s.offer(5, frameOf(5))
	if st := s.offer(7, frameOf(7)); !st.repair { // 6 is missing
		t.Fatalf("a gap: %+v, want a repair", st)
	}
	s.offer(10, frameOf(10)) // comes while the page is read
	st := s.fill(pubsub.Page{First: 1, Messages: entries(6, 8)})
	if st.skipped != 0 || !st.repair || len(st.deliver) != 3 {
		t.Fatalf("a page that ends short of a frame held meanwhile: %+v, want 6 to 8 delivered and a read again", st)
	}
	st = s.fill(pubsub.Page{First: 1, Messages: entries(9, 10)})
	if st.skipped != 0 || st.repair || len(st.deliver) != 2 || st.deliver[0].Seq != 9 || s.next != 11 {
		t.Fatalf("the second read: %+v, next %d; want 9 and 10", st, s.next)
	}

	// Trimmed for real: every read ends short, and after maxRereads the
	// stream skips to the held frame.
	var u stream
	u.baseline(0)
	u.offer(5, frameOf(5))
	var last step
	for i := 0; i <= maxRereads; i++ {
		last = u.fill(pubsub.Page{First: 1, Messages: entries(1, 2)})
		if i < maxRereads && (!last.repair || last.skipped != 0) {
			t.Fatalf("read %d: %+v, want a read again", i+1, last)
		}
	}
	if last.repair || last.skipped != 2 || u.next != 6 {
		t.Fatalf("after %d reads: %+v, next %d; want 3 and 4 skipped and 5 delivered", maxRereads+1, last, u.next)
	}
}
