package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/wirechat/chat/protocol"
)

func TestStreamCountsLossDuplicatesAndReordering(t *testing.T) {
	tests := []struct {
		name     string
		got      []uint64 // sequence numbers in arrival order
		sent     uint64
		want     Counts
		wantKind []delivery
	}{
		{
			name:     "in order",
			got:      []uint64{1, 2, 3},
			sent:     3,
			want:     Counts{Expected: 3, Delivered: 3},
			wantKind: []delivery{inOrder, inOrder, inOrder},
		},
		{
			name:     "tail lost",
			got:      []uint64{1, 2},
			sent:     5,
			want:     Counts{Expected: 5, Delivered: 2, Lost: 3},
			wantKind: []delivery{inOrder, inOrder},
		},
		{
			name:     "gap lost",
			got:      []uint64{1, 4, 5},
			sent:     5,
			want:     Counts{Expected: 5, Delivered: 3, Lost: 2},
			wantKind: []delivery{inOrder, inOrder, inOrder},
		},
		{
			name:     "duplicates",
			got:      []uint64{1, 1, 2, 2, 2},
			sent:     2,
			want:     Counts{Expected: 2, Delivered: 2, Duplicated: 3},
			wantKind: []delivery{inOrder, duplicate, inOrder, duplicate, duplicate},
		},
		{
			name:     "reordered then duplicated",
			got:      []uint64{2, 1, 3, 1},
			sent:     3,
			want:     Counts{Expected: 3, Delivered: 3, OutOfOrder: 1, Duplicated: 1},
			wantKind: []delivery{inOrder, outOfOrder, inOrder, duplicate},
		},
		{
			name:     "late arrivals fill a gap",
			got:      []uint64{5, 3, 1, 2, 4, 6},
			sent:     7,
			want:     Counts{Expected: 7, Delivered: 6, Lost: 1, OutOfOrder: 4},
			wantKind: []delivery{inOrder, outOfOrder, outOfOrder, outOfOrder, outOfOrder, inOrder},
		},
		{
			name: "nothing arrived",
			sent: 4,
			want: Counts{Expected: 4, Lost: 4},
		},
		{
			name:     "more distinct messages than sent",
			got:      []uint64{1, 2, 3},
			sent:     2,
			want:     Counts{Expected: 2, Delivered: 2, Unexpected: 1},
			wantKind: []delivery{inOrder, inOrder, inOrder},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := streamKey{"#c", 7}
			got := map[streamKey]*stream{}
			var kinds []delivery
			for _, seq := range tt.got {
				s := got[k]
				if s == nil {
					s = new(stream)
					got[k] = s
				}
				kinds = append(kinds, s.add(seq))
			}
			if !slices.Equal(kinds, tt.wantKind) {
				t.Errorf("kinds = %v, want %v", kinds, tt.wantKind)
			}
			if c := tally(got, map[streamKey]uint64{k: tt.sent}); c != tt.want {
				t.Errorf("tally = %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestTallyStreamsNotOwed(t *testing.T) {
	owed := map[streamKey]uint64{{"#a", 1}: 2, {"#a", 2}: 3}
	got := map[streamKey]*stream{}
	add := func(k streamKey, seqs ...uint64) {
		if got[k] == nil {
			got[k] = new(stream)
		}
		for _, s := range seqs {
			got[k].add(s)
		}
	}
	add(streamKey{"#a", 1}, 1, 2)
	add(streamKey{"#a", 2}, 1, 3)
	add(streamKey{"#b", 1}, 1, 2, 2) // a channel the receiver is not in
	want := Counts{Expected: 5, Delivered: 4, Lost: 1, Unexpected: 3}
	if c := tally(got, owed); c != want {
		t.Errorf("tally = %+v, want %+v", c, want)
	}
}

func TestStreamMemoryIsBoundedByGaps(t *testing.T) {
	var s stream
	for seq := uint64(1); seq <= 100000; seq++ {
		s.add(seq)
	}
	if s.missing != nil {
		t.Fatalf("a stream without gaps keeps %d missing numbers", len(s.missing))
	}
	s.add(100005)
	if len(s.missing) != 4 {
		t.Fatalf("missing = %d numbers, want 4", len(s.missing))
	}
}

func TestBucketBoundsCoverEveryValue(t *testing.T) {
	values := []int64{0, 1, 63, 64, 127, 128, 129, 130, 255, 256, 1000, 12345, 1e6, 1e9, 123456789012}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, r.Int64N(1<<40))
	}
	for _, v := range values {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, b)
		}
		if hi := bucketHigh(b); v > hi {
			t.Fatalf("value %d above its bucket's high %d", v, hi)
		}
		if b > 0 {
			if lo := bucketHigh(b-1) + 1; v < lo {
				t.Fatalf("value %d below its bucket's low %d", v, lo)
			}
		}
		if hi := bucketHigh(b); v >= 128 && float64(hi-v) > float64(v)/64 {
			t.Fatalf("bucket of %d is too wide: high %d", v, hi)
		}
	}
	if b := bucketOf(math.MaxInt64); b != histBuckets-1 {
		t.Fatalf("huge value in bucket %d, want the last", b)
	}
	if b := bucketOf(-5); b != 0 {
		t.Fatalf("negative value in bucket %d, want 0", b)
	}
}

func TestHistogramQuantilesMatchExactPercentiles(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h Histogram
	var samples []time.Duration
	for range 100000 {
		// A long-tailed distribution from microseconds to seconds.
		d := time.Duration(math.Exp(r.NormFloat64()*2+11)) * time.Nanosecond
		samples = append(samples, d)
		h.Record(d)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := samples[int(math.Ceil(q*float64(len(samples))))-1]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/64+1 {
			t.Errorf("q%.3f = %v, exact %v: more than 1/64 off", q, got, exact)
		}
	}
	if h.Max() != samples[len(samples)-1] {
		t.Errorf("max = %v, want %v", h.Max(), samples[len(samples)-1])
	}
	if h.Count() != uint64(len(samples)) {
		t.Errorf("count = %d", h.Count())
	}
}

func TestHistogramSmallSets(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Summary() != (Latency{}) {
		t.Fatal("an empty histogram reports values")
	}
	for _, ms := range []int{1, 2, 3, 4, 100} {
		h.Record(time.Duration(ms) * time.Millisecond)
	}
	s := h.Summary()
	if s.Count != 5 || s.Max != 100 {
		t.Fatalf("summary = %+v", s)
	}
	// ceil(0.5*5) = 3rd value, 3 ms, within a bucket's width.
	if s.P50 < 3 || s.P50 > 3*(1+1.0/64) {
		t.Errorf("p50 = %v ms, want about 3", s.P50)
	}
	// p90 and p99 are the largest value; the cap by max makes them exact.
	if s.P90 != 100 || s.P99 != 100 || s.P999 != 100 {
		t.Errorf("p90/p99/p99.9 = %v/%v/%v, want 100", s.P90, s.P99, s.P999)
	}
}

func TestHistogramConcurrentRecord(t *testing.T) {
	var h Histogram
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 1000 {
				h.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if h.Count() != 4000 || h.Max() != 3999*time.Microsecond {
		t.Fatalf("count %d max %v", h.Count(), h.Max())
	}
}

func TestTextRoundTrip(t *testing.T) {
	now := time.Now().UnixNano()
	for _, size := range []int{0, 10, 100, 4096} {
		text := appendText(nil, 42, 99, now, size)
		if len(text) < size {
			t.Fatalf("size %d: text of %d bytes", size, len(text))
		}
		src, seq, at, ok := parseText(text)
		if !ok || src != 42 || seq != 99 || at != now {
			t.Fatalf("size %d: parsed %d %d %d %v", size, src, seq, at, ok)
		}
		if !protocol.ValidText(string(text), 4096) && size <= 4096 {
			t.Fatalf("size %d: the server would refuse the text", size)
		}
	}
	for _, bad := range []string{"", "hello", "1:2", "1:0:5:", "a:1:2:", "1:2:3", "99999999999:1:1:"} {
		if _, _, _, ok := parseText([]byte(bad)); ok {
			t.Errorf("parseText(%q) accepted", bad)
		}
	}
}

func TestScanMessageReadsServerFrames(t *testing.T) {
	text := appendText(nil, 3, 17, 12345, 60)
	msg, _ := json.Marshal(protocol.Message{
		Type: protocol.TypeMessage, Emitter: protocol.EmitterParticipant, Target: "#room-1",
		Identifier: "0b7e3c1e-8f6c-4a34-9d5e-0d4f6a1b2c3d", Username: "bob", Message: string(text),
		TS: "2026-11-26T08:40:05.123Z",
	})
	kind, target, got := scanMessage(msg)
	if kind != kindMessage || string(target) != "#room-1" || string(got) != string(text) {
		t.Fatalf("scanMessage(message) = %v %q %q", kind, target, got)
	}
	// Field order is not part of the contract.
	reordered := []byte(`{"message":"` + string(text) + `","ts":"x","target":"@al","username":"u","identifier":"i","emitter":"participant","type":"message"}`)
	if kind, target, got := scanMessage(reordered); kind != kindMessage || string(target) != "@al" || string(got) != string(text) {
		t.Fatalf("scanMessage(reordered) = %v %q %q", kind, target, got)
	}
	ev, _ := json.Marshal(protocol.Event{Type: protocol.TypeEvent, Emitter: protocol.EmitterParticipant,
		Identifier: "u", Event: protocol.EventJoin, Target: "#room-1", Username: "message"})
	if kind, _, _ := scanMessage(ev); kind != kindEvent {
		t.Fatalf("scanMessage(event) = %v", kind)
	}
	for _, v := range []any{
		protocol.Ack{Type: protocol.TypeAck, ID: "s1"},
		protocol.Error{Type: protocol.TypeError, Code: protocol.CodeNotMember, Message: "not a member", ID: "m0.1"},
		protocol.Welcome{Type: protocol.TypeWelcome, Channels: []string{}, Joined: []string{}, Owned: []string{}},
	} {
		f, _ := json.Marshal(v)
		if kind, _, _ := scanMessage(f); kind != kindOther {
			t.Fatalf("scanMessage(%s) = %v, want other", f, kind)
		}
	}
	// A text someone else wrote, with escapes, is found as a message but not
	// taken for a benchmark text.
	foreign, _ := json.Marshal(protocol.Message{Type: protocol.TypeMessage, Target: "#c", Message: `say "hi"`})
	if kind, _, text := scanMessage(foreign); kind != kindMessage {
		t.Fatalf("foreign: kind %v", kind)
	} else if _, _, _, ok := parseText(text); ok {
		t.Fatalf("foreign text %q taken for a benchmark text", text)
	}
}

func TestMessageRequestDecodes(t *testing.T) {
	noID, err := protocol.DecodeRequest(appendMessageRequest(nil, false, 2, "#room-1", 5, 8, 777, 100))
	if err != nil || noID.ID != "" || noID.Target != "#room-1" {
		t.Fatalf("without id: %+v, %v", noID, err)
	}
	frame := appendMessageRequest(nil, true, 2, "#room-1", 5, 8, 777, 100)
	req, err := protocol.DecodeRequest(frame)
	if err != nil {
		t.Fatalf("DecodeRequest(%s): %v", frame, err)
	}
	if req.Type != protocol.TypeMessage || req.ID != "m2.5.8" || req.Target != "#room-1" {
		t.Fatalf("decoded %+v", req)
	}
	if src, seq, at, ok := parseText([]byte(req.Message)); !ok || src != 5 || seq != 8 || at != 777 {
		t.Fatalf("text %q", req.Message)
	}
}

func TestPublishersFor(t *testing.T) {
	cfg := Config{RateLimit: 20}
	if p, _ := publishersFor(cfg, 200); p != 12 {
		t.Errorf("200 msg/s at 20/s per user: %d publishers, want 12", p)
	}
	if p, _ := publishersFor(cfg, 1); p != 1 {
		t.Errorf("1 msg/s: %d publishers", p)
	}
	cfg.Publishers = 5
	if _, err := publishersFor(cfg, 200); err == nil {
		t.Error("5 publishers at 40 msg/s each accepted under a limit of 20")
	}
	if p, err := publishersFor(cfg, 100); err != nil || p != 5 {
		t.Errorf("5 publishers at 20 msg/s: %d, %v", p, err)
	}
}
