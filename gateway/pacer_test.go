package gateway

import (
	"testing"
	"time"
)

// writes drives a pacer as Session.writeLoop does, for frames (not replies)
// arriving at the given times: a write takes every frame that has arrived;
// it comes at the next arrival, or, after a write that the pacer said to pause
// after, the delay d later (if anything arrived meanwhile). It returns, per
// write, its time and whether the writer paused after it.
func writes(arrivals []time.Duration, d time.Duration) (at []time.Duration, paused []bool) {
	var p pacer
	next, pause := 0, false
	var last time.Duration
	for next < len(arrivals) {
		w := arrivals[next]
		if pause && last+d > w {
			w = last + d
		}
		n := 0
		for next < len(arrivals) && arrivals[next] <= w {
			next++
			n++
		}
		pause = p.wrote(int64(w)+1, n, d) // +1: 0 means no write yet
		last = w
		at, paused = append(at, w), append(paused, pause)
	}
	return at, paused
}

// every returns n arrival times, one every gap from start, each repeated
// per times (a burst of that many frames).
func every(start, gap time.Duration, n, per int) []time.Duration {
	var ts []time.Duration
	for i := range n {
		for range per {
			ts = append(ts, start+time.Duration(i)*gap)
		}
	}
	return ts
}

// TestBehindPausesAMemberThatFallsBehind: a member of a busy channel on a
// node that cannot write each frame alone (frames come in threes, 200 a
// second) is paused, and keeps pausing while the channel stays busy.
func TestBehindPausesAMemberThatFallsBehind(t *testing.T) {
	const d = 20 * time.Millisecond
	at, paused := writes(every(0, 15*time.Millisecond, 200, 3), d)
	first := -1
	for i, p := range paused {
		if p && first < 0 {
			first = i
		}
		if first >= 0 && !p && i < len(paused)-1 {
			t.Fatalf("write %d at %v: stopped pausing while the channel is still busy", i, at[i])
		}
	}
	if first < 0 || at[first] > 500*time.Millisecond {
		t.Fatalf("first pause after write %d: want one within 500 ms", first)
	}
}

// TestBehindLeavesAConnectionThatKeepsUp: a frame every 5 ms, each written
// on its own, is busy but never behind.
func TestBehindLeavesAConnectionThatKeepsUp(t *testing.T) {
	_, paused := writes(every(0, 5*time.Millisecond, 400, 1), 20*time.Millisecond)
	for i, p := range paused {
		if p {
			t.Fatalf("write %d paused: a connection that keeps up was held back", i)
		}
	}
}

// TestBehindLetsGo: a connection that fell behind (frames in threes, 200 a
// second) and then gets a frame every 10 ms, as a publisher of 100
// messages a second gets its copies (its acks are replies, which writeLoop
// does not count), soon stops pausing: a pause gathers two frames, which
// is not behind. Fed its acks too (twice the frames), it paused for as
// long as it kept sending.
func TestBehindLetsGo(t *testing.T) {
	const d = 20 * time.Millisecond
	arrivals := append(every(0, 15*time.Millisecond, 40, 3), every(600*time.Millisecond, 10*time.Millisecond, 300, 1)...)
	at, paused := writes(arrivals, d)
	before := false
	for i, p := range paused {
		if p && at[i] < 600*time.Millisecond {
			before = true
		}
		if p && at[i] > 900*time.Millisecond {
			t.Fatalf("write %d at %v paused: still holding back a connection that keeps up", i, at[i])
		}
	}
	if !before {
		t.Fatal("never paused while behind: the test shows nothing")
	}
	_, paused = writes(append(every(0, 15*time.Millisecond, 40, 3), every(600*time.Millisecond, 10*time.Millisecond, 300, 2)...), d)
	if !paused[len(paused)-2] {
		t.Error("with twice the frames (the acks counted), it stopped pausing: the case above proves nothing")
	}
}

// TestBehindNoPauseAfterABurst: writes of a burst (here forty frames every
// 5 ms, as when a channel fills up and every member gets the join events)
// batch well on their own and are not followed by a pause, which would
// only leave the queue fuller when the machine stalls.
func TestBehindNoPauseAfterABurst(t *testing.T) {
	_, paused := writes(every(0, 5*time.Millisecond, 100, 40), 20*time.Millisecond)
	for i, p := range paused {
		if p {
			t.Fatalf("write %d of a burst paused", i)
		}
	}
}
