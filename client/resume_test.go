package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestTrackerRandomStreams drives the resume state machine with streams
// that lose, repeat and hold back live messages, and with connections that
// break at random, against a store that may have trimmed its oldest
// messages. Whatever happens, the caller must get each stored message of
// every conversation once, in seq order, and a Gap for exactly those that
// the store no longer had when they were missed.
func TestTrackerRandomStreams(t *testing.T) {
	var gaps, repaired int
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			g, r := trackerRun(t, seed)
			gaps, repaired = gaps+g, repaired+r
		})
	}
	// The streams must have exercised what they are for.
	if gaps == 0 || repaired == 0 {
		t.Fatalf("%d gaps and %d messages read from history over all runs", gaps, repaired)
	}
	t.Logf("%d gaps and %d messages read from history over all runs", gaps, repaired)
}

// trackerRun runs one random stream and returns how many gaps were
// reported and how many messages came from history.
func trackerRun(t *testing.T, seed uint64) (gaps, repaired int) {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := newUpdates()
	tr := newTracker(out)
	const me = "me-id"
	convs := []string{"#a", "#b", "@bob"}
	stored := map[string]uint64{}  // newest seq of each conversation
	trimmed := map[string]uint64{} // seqs up to this are gone from the store
	msg := func(k string, seq uint64) *Message {
		m := &Message{Target: k, Identifier: "bob-id", Username: "bob", Seq: seq, Text: fmt.Sprint(k, seq)}
		if k == "@bob" {
			m.Target = "@me" // bob's message to me, as the live frame has it
		}
		return m
	}
	history := func(k string, after uint64) *History {
		first := trimmed[k] + 1
		h := &History{Target: k, First: first, Messages: []Message{}}
		limit := 1 + rnd.IntN(4)
		for s := max(after+1, first); s <= stored[k] && len(h.Messages) < limit; s++ {
			h.Messages = append(h.Messages, *msg(k, s))
		}
		h.More = len(h.Messages) > 0 && h.Messages[len(h.Messages)-1].Seq < stored[k]
		return h
	}
	// repairAll runs the repairs of connection gen to the end, as the
	// repairer does, while the store may grow between pages.
	repairAll := func(gen uint64) {
		for {
			k, ok := tr.nextRepair(gen)
			if !ok {
				return
			}
			for {
				after, ok := tr.position(k, gen)
				if !ok {
					break
				}
				if rnd.IntN(3) == 0 { // stored meanwhile
					stored[k]++
				}
				h := history(k, after)
				repaired += len(h.Messages)
				if !tr.page(k, gen, after, h) {
					break
				}
			}
		}
	}
	// Before the first welcome, some history exists already.
	for _, k := range convs {
		stored[k] = uint64(rnd.IntN(5))
	}
	var gen uint64
	welcome := func() {
		gen++
		latest := map[string]uint64{}
		for _, k := range convs {
			if stored[k] > 0 {
				latest[k] = stored[k]
			}
		}
		tr.welcome(&Welcome{Identifier: me, Epoch: "e1", Joined: []string{"#a", "#b"}, Latest: latest}, gen, "u")
	}
	welcome()
	// The caller is owed each conversation from the first welcome on; a
	// private conversation that the welcome left out (it had no message)
	// from its first live message on.
	start := map[string]uint64{}
	for _, k := range convs {
		if stored[k] > 0 || k != "@bob" {
			start[k] = stored[k] + 1
		}
	}
	// connected: the live path of this connection delivers each new
	// message, unless lost; delays: messages held back and delivered
	// later, in order (a slow pub/sub path); repeats.
	var pending []*Message
	deliver := func() {
		n := rnd.IntN(len(pending) + 1)
		for _, m := range pending[:n] {
			if tr.live(m) {
				repairAll(gen)
			}
			if rnd.IntN(8) == 0 {
				tr.live(m) // a repeat
			}
		}
		pending = pending[n:]
	}
	for range 200 {
		switch r := rnd.IntN(100); {
		case r < 70: // a message is stored, and travels live unless lost
			k := convs[rnd.IntN(len(convs))]
			stored[k]++
			if rnd.IntN(6) != 0 {
				pending = append(pending, msg(k, stored[k]))
			}
		case r < 90:
			deliver()
		case r < 95: // the store trims its oldest messages
			k := convs[rnd.IntN(len(convs))]
			trimmed[k] = min(stored[k], trimmed[k]+uint64(rnd.IntN(4)))
		default: // the connection breaks: what was in flight is lost
			pending = nil
			welcome()
			repairAll(gen)
		}
	}
	for len(pending) > 0 {
		deliver()
	}
	welcome() // a last reconnect catches up with everything
	repairAll(gen)
	out.finish()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go out.pump(ctx)

	next := map[string]uint64{}
	for k, s := range start {
		next[k] = s
	}
	for u := range out.out {
		switch {
		case u.Message != nil:
			m := u.Message
			if _, ok := next[m.Conversation]; !ok {
				next[m.Conversation] = m.Seq
			}
			if m.Seq != next[m.Conversation] {
				t.Fatalf("%s: got seq %d, want %d", m.Conversation, m.Seq, next[m.Conversation])
			}
			if m.Text != fmt.Sprint(m.Conversation, m.Seq) {
				t.Fatalf("%s %d: text %q", m.Conversation, m.Seq, m.Text)
			}
			next[m.Conversation]++
		case u.Gap != nil:
			g := u.Gap
			if g.From != next[g.Conversation] || g.To < g.From || g.To > trimmed[g.Conversation] {
				t.Fatalf("gap %+v: next is %d, trimmed to %d", g, next[g.Conversation], trimmed[g.Conversation])
			}
			next[g.Conversation] = g.To + 1
			gaps++
		}
	}
	for _, k := range convs {
		if n, ok := next[k]; ok && n != stored[k]+1 {
			t.Fatalf("%s: got up to %d, stored %d", k, n-1, stored[k])
		}
	}
	return gaps, repaired
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	for n, ceil := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceil *= time.Millisecond
		if got := backoff(n, lo, hi, func() float64 { return 0 }); got != ceil/2 {
			t.Errorf("backoff(%d) at least = %v, want %v", n, got, ceil/2)
		}
		if got := backoff(n, lo, hi, func() float64 { return 0.999999 }); got > ceil || got < ceil*9/10 {
			t.Errorf("backoff(%d) at most = %v, want about %v", n, got, ceil)
		}
	}
	if got := backoff(200, lo, hi, rand.Float64); got > hi || got < hi/2 {
		t.Errorf("backoff(200) = %v", got)
	}
}

func TestIDsAreUniqueAcrossClients(t *testing.T) {
	a, b := newIDs(), newIDs()
	seen := map[string]bool{}
	for range 1000 {
		for _, id := range []string{a.next(), b.next()} {
			if seen[id] || len(id) > 64 {
				t.Fatalf("id %q repeated or too long", id)
			}
			seen[id] = true
		}
	}
}
