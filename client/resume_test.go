package chatclient

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestTrackerRandomStreams drives the resume state machine with live
// streams that repeat and hold back messages, with connections that break
// at random and lose what was in flight, against a store that trims its
// oldest messages and a server that skips messages (reading 17: gone from
// history, given up). Whatever happens, the caller must get each stored
// message of every conversation that it is owed once, in seq order, and a
// Gap for exactly those that the store no longer had when they were
// missed.
func TestTrackerRandomStreams(t *testing.T) {
	var gaps, repaired int
	for seed := range uint64(1000) {
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
//
// The conversations: #a and #b, joined from the start; #c, which the user
// joins in the middle (owed from its join on); @bob, whose messages come
// from bob; @carol, which the user starts with a message of its own (owed
// from that one on).
func trackerRun(t *testing.T, seed uint64) (gaps, repaired int) {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := newUpdates()
	tr := newTracker(out)
	const me = "me-id"
	convs := []string{"#a", "#b", "#c", "@bob", "@carol"}
	stored := map[string]uint64{}  // newest seq of each conversation
	trimmed := map[string]uint64{} // seqs up to this are gone from the store
	start := map[string]uint64{}   // the caller is owed each conversation from this seq on
	joined := []string{"#a", "#b"}
	mine := map[uint64]bool{} // seqs of @carol that the user sent
	msg := func(k string, seq uint64) *Message {
		m := &Message{Target: k, Identifier: "other-id", Username: "other", Seq: seq, Text: fmt.Sprint(k, seq)}
		switch {
		case k == "@carol" && mine[seq]:
			m.Identifier, m.Username = me, "me"
		case k[0] == '@': // the other's message to me, as the live frame has it
			m.Target, m.Username = "@me", k[1:]
		}
		return m
	}
	history := func(k string, after uint64, newest bool) *History {
		first := trimmed[k] + 1
		h := &History{Target: k, First: first, Messages: []Message{}}
		if newest {
			if stored[k] >= first {
				h.Messages = append(h.Messages, *msg(k, stored[k]))
			}
			return h
		}
		limit := 1 + rnd.IntN(4)
		for s := max(after+1, first); s <= stored[k] && len(h.Messages) < limit; s++ {
			h.Messages = append(h.Messages, *msg(k, s))
		}
		h.More = len(h.Messages) > 0 && h.Messages[len(h.Messages)-1].Seq < stored[k]
		return h
	}
	probing := false // the user joined #c, and neither the probe's answer nor a live message of #c came
	// joinedAt is the newest seq of #c when the user joined; probed the
	// newest when the probe read it; fresh whether a live message of #c
	// came since the probe. A probe reads later than the join: messages
	// stored between are after the floor. If the connection breaks before
	// any of them arrives live, they are lost: the price of a floor read
	// one round trip after the join (the package doc says so).
	var joinedAt, probed uint64
	fresh := false
	// repairAll does the repairs and probes of connection gen to the end,
	// as the repairer does, while others store messages between pages.
	repairAll := func(gen uint64) {
		for {
			k, j := tr.nextJob(gen)
			switch j {
			case noJob:
				return
			case probe:
				tr.floor(k, gen, history(k, 0, true))
				probing, probed = false, stored[k]
				continue
			}
			for {
				after, ok := tr.position(k, gen)
				if !ok {
					break
				}
				if rnd.IntN(3) == 0 && k != "@carol" { // stored meanwhile
					stored[k]++
				}
				h := history(k, after, false)
				repaired += len(h.Messages)
				if !tr.page(k, gen, after, h) {
					break
				}
			}
		}
	}
	// Before the first welcome, some history exists already, but for the
	// conversation that the user starts.
	for _, k := range convs[:4] {
		stored[k] = uint64(rnd.IntN(5))
	}
	var gen uint64
	welcome := func() {
		gen++
		latest := map[string]uint64{}
		for _, k := range convs {
			if stored[k] > 0 && (k[0] == '@' || slices.Contains(joined, k)) {
				latest[k] = stored[k]
			}
		}
		tr.welcome(&Welcome{Identifier: me, Epoch: "e1", Joined: slices.Clone(joined), Latest: latest}, gen, "u")
	}
	welcome()
	// From the first welcome on; a private conversation that the welcome
	// left out (it had no message) from its first live message on.
	for _, k := range []string{"#a", "#b", "@bob"} {
		if stored[k] > 0 || k[0] == '#' {
			start[k] = stored[k] + 1
		}
	}
	// The live path of a connection delivers each new message, unless
	// lost; delays: messages held back and delivered later, in order (a
	// slow pub/sub path); repeats.
	var pending []*Message
	deliver := func() {
		n := rnd.IntN(len(pending) + 1)
		for _, m := range pending[:n] {
			if m.Target == "#c" {
				fresh = true
			}
			if _, ok := start["@bob"]; !ok && m.Username == "bob" {
				start["@bob"] = m.Seq // followed from its first live message
			}
			if probing && m.Target == "#c" {
				// The client takes the first live message as the start:
				// with no floor yet, it cannot know of a skip before it.
				start["#c"] = m.Seq
				probing = false
			}
			if tr.live(m) {
				repairAll(gen)
			}
			if rnd.IntN(8) == 0 {
				tr.live(m) // a repeat
			}
		}
		pending = pending[n:]
	}
	travel := func(m *Message) { pending = append(pending, m) }
	for range 300 {
		switch r := rnd.IntN(100); {
		case r < 60: // a message is stored, and travels live to members
			k := convs[rnd.IntN(len(convs))]
			if k == "@carol" && stored[k] == 0 {
				continue // the user starts this one
			}
			stored[k]++
			if k[0] == '@' || slices.Contains(joined, k) {
				travel(msg(k, stored[k]))
			}
		case r < 65: // the user sends to carol: the ack, then the echo
			stored["@carol"]++
			seq := stored["@carol"]
			mine[seq] = true
			if _, ok := start["@carol"]; !ok {
				start["@carol"] = seq
			}
			tr.sent("@Carol", seq)
			travel(msg("@carol", seq))
		case r < 67 && !slices.Contains(joined, "#c"): // the user joins #c
			joined = append(joined, "#c")
			start["#c"] = stored["#c"] + 1
			joinedAt, fresh = stored["#c"], false
			if tr.event(&Event{Emitter: "participant", Kind: "join", Identifier: me, Target: "#c"}) {
				probing = true
				if rnd.IntN(2) == 0 {
					repairAll(gen) // else its answer may be lost with the connection
					probing = false
				}
			}
		case r < 85:
			deliver()
		case r < 89: // the store trims its oldest messages
			k := convs[rnd.IntN(len(convs))]
			trimmed[k] = min(stored[k], trimmed[k]+uint64(rnd.IntN(4)))
		case r < 90: // the server skips a message that is gone from history
			k := convs[rnd.IntN(3)]
			stored[k]++
			trimmed[k] = stored[k]
			if k == "#c" && probing && start[k] == stored[k] {
				// Right after the join, before the client has a position
				// in #c: it cannot know of the message.
				start[k]++
			}
		default: // the connection breaks: what was in flight is lost
			pending = nil
			if probing {
				// Joined, and no position came before the break: the
				// client follows #c from the welcome on (Connected.Unseen).
				start["#c"] = stored["#c"] + 1
				probing = false
			}
			if probed > joinedAt && !fresh {
				start["#c"] = probed + 1
			}
			fresh, probed = true, 0
			if _, ok := start["@bob"]; !ok && stored["@bob"] > 0 {
				start["@bob"] = stored["@bob"] + 1 // Connected.Unseen
			}
			welcome()
			repairAll(gen)
		}
	}
	for len(pending) > 0 {
		deliver()
	}
	if _, ok := start["@bob"]; !ok && stored["@bob"] > 0 {
		start["@bob"] = stored["@bob"] + 1 // Connected.Unseen
	}
	welcome() // a last reconnect catches up with everything
	repairAll(gen)
	out.finish()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go out.pump(ctx)

	next := maps.Clone(start)
	for u := range out.out {
		switch {
		case u.Message != nil:
			m := u.Message
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
		n, ok := next[k]
		if _, owed := start[k]; owed && !ok || ok && n != stored[k]+1 {
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
