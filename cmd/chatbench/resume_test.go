package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wirechat/chat/protocol"
)

func TestSeqSetResumeWithoutFaults(t *testing.T) {
	var s seqSet
	id := func(seq uint64) uint64 { return 1<<31 | seq }
	// Session 1 gets 1..4 live, then drops.
	for seq := uint64(1); seq <= 4; seq++ {
		if !s.add(seq, id(seq), true) {
			t.Fatalf("live %d not new", seq)
		}
	}
	s.newSession()
	// Session 2: live from 8 on, with 7 (at or below latest) right after
	// the welcome; history after 4 brings 5..7.
	s.add(7, id(7), true)
	s.add(8, id(8), true)
	for seq := uint64(5); seq <= 7; seq++ {
		fresh := s.add(seq, id(seq), false)
		if fresh != (seq != 7) {
			t.Errorf("history %d: new %v", seq, fresh)
		}
	}
	s.add(9, id(9), true)
	if s.repeats != 0 || s.conflicts != 0 || s.overlap != 1 || s.added != 2 || s.max != 9 {
		t.Errorf("repeats %d, conflicts %d, overlap %d, added %d, max %d; want 0, 0, 1, 2, 9",
			s.repeats, s.conflicts, s.overlap, s.added, s.max)
	}
	owed, gaps, unexpected := s.check(0, 9)
	if owed != 9 || gaps != 0 || unexpected != 0 {
		t.Errorf("check(0, 9) = %d owed, %d gaps, %d unexpected", owed, gaps, unexpected)
	}
	// Owed up to 11: 10 and 11 never came.
	if _, gaps, _ := s.check(0, 11); gaps != 2 {
		t.Errorf("check(0, 11): %d gaps, want 2", gaps)
	}
	// Seqs 1..2 were from before the phase.
	if owed, gaps, unexpected := s.check(2, 9); owed != 7 || gaps != 0 || unexpected != 2 {
		t.Errorf("check(2, 9) = %d owed, %d gaps, %d unexpected", owed, gaps, unexpected)
	}
}

func TestSeqSetCountsFaults(t *testing.T) {
	var s seqSet
	s.add(1, 11, true)
	s.add(3, 13, true)
	s.add(3, 13, true) // the same live twice in one session
	s.add(2, 12, true) // a step back in one session
	s.add(4, 99, true)
	s.add(4, 14, false) // history says seq 4 is another message
	if s.repeats != 2 || s.conflicts != 1 || s.overlap != 1 {
		t.Errorf("repeats %d, conflicts %d, overlap %d; want 2, 1, 1", s.repeats, s.conflicts, s.overlap)
	}
	if _, gaps, _ := s.check(0, 5); gaps != 1 {
		t.Errorf("%d gaps, want 1 (seq 5)", gaps)
	}
	if s.add(1<<27, 1, true) {
		t.Error("an absurd seq was held")
	}
}

func TestTextID(t *testing.T) {
	a := textID(appendText(nil, 3, 17, 1, 30))
	b := textID(appendText(nil, 3, 18, 1, 30))
	c := textID(appendText(nil, 4, 17, 1, 30))
	if a == b || a == c || b == c || a == 0 {
		t.Errorf("ids %x %x %x", a, b, c)
	}
	if textID(appendText(nil, 3, 17, 99, 50)) != a {
		t.Error("the same message got another id")
	}
	if textID([]byte("hello")) != foreignID {
		t.Error("a foreign text")
	}
}

func TestDroppedSpreadsOverTheSubscribers(t *testing.T) {
	cs := make([]*client, 10)
	for i := range cs {
		cs[i] = &client{idx: i}
	}
	idx := func(d []*client) (out []int) {
		for _, c := range d {
			out = append(out, c.idx)
		}
		return out
	}
	for _, tc := range []struct {
		drop float64
		want []int
	}{
		{0.2, []int{4, 9}},
		{0.5, []int{1, 3, 5, 7, 9}},
		{1, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{0.05, nil},
	} {
		got := idx(dropped(cs, tc.drop))
		if len(got) != len(tc.want) {
			t.Errorf("drop %g: %v, want %v", tc.drop, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("drop %g: %v, want %v", tc.drop, got, tc.want)
				break
			}
		}
	}
}

func TestDropAtComesBackWhilePublishing(t *testing.T) {
	dur, outage := 10*time.Second, 3*time.Second
	for j := range 5 {
		at := dropAt(j, 5, dur, outage)
		if at < 0 || at+outage >= dur {
			t.Errorf("drop %d at %v: back at %v, after publishing (%v)", j, at, at+outage, dur)
		}
	}
	if dropAt(0, 5, dur, outage) == dropAt(4, 5, dur, outage) {
		t.Error("all drop at once")
	}
	if at := dropAt(3, 5, 2*time.Second, 3*time.Second); at != 200*time.Millisecond {
		t.Errorf("an outage longer than publishing: drop at %v", at)
	}
}

func TestTrackedClientDropsWhatItHolds(t *testing.T) {
	bn := newBench(Config{Concurrency: 1, URLs: []string{"http://127.0.0.1:1"}})
	c := bn.newClients("s", 1)[0]
	tr := newSeqTracker()
	c.seqs.Store(tr)
	frame := func(seq uint64) []byte {
		f, _ := json.Marshal(protocol.Message{Type: protocol.TypeMessage, Emitter: protocol.EmitterParticipant,
			Target: "#c", Identifier: "u", Username: "p", Seq: seq,
			Message: string(appendText(nil, 1, seq, time.Now().UnixNano(), 30))})
		return f
	}
	c.handle(frame(1))
	c.handle(frame(2))
	tr.set("#c").newSession()
	c.handle(frame(2)) // at or below latest, again after a reconnect
	c.handle(frame(3))
	if c.delivered.Load() != 4 || c.fresh.Load() != 3 {
		t.Errorf("delivered %d, fresh %d; want 4, 3", c.delivered.Load(), c.fresh.Load())
	}
	s := tr.set("#c")
	if s.overlap != 1 || s.repeats != 0 || s.max != 3 {
		t.Errorf("overlap %d, repeats %d, max %d", s.overlap, s.repeats, s.max)
	}
	if st := c.streams[streamKey{"#c", 1}]; st == nil || st.dup != 0 || st.unique != 3 {
		t.Errorf("stream %+v: the repeat reached the counts", st)
	}
}
