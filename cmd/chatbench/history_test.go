package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wirechat/chat/protocol"
)

// pageFrame is a history frame as the server writes it, with the messages
// of seqs and the texts of texts (benchmark texts where texts is nil).
func pageFrame(t *testing.T, target string, first uint64, more bool, seqs []uint64, texts []string) []byte {
	t.Helper()
	h := protocol.History{Type: protocol.TypeHistory, ID: "h7", Target: target, First: first, More: more,
		Messages: []json.RawMessage{}}
	for i, seq := range seqs {
		text := string(appendText(nil, 3, seq, time.Now().UnixNano(), 40))
		if texts != nil {
			text = texts[i]
		}
		m, err := json.Marshal(protocol.Message{Type: protocol.TypeMessage, Emitter: protocol.EmitterParticipant,
			Target: target, Identifier: "0b7e3c1e-8f6c-4a34-9d5e-0d4f6a1b2c3d", Username: "bench-p0",
			Message: text, TS: "2026-11-26T08:40:05.123Z", Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		h.Messages = append(h.Messages, m)
	}
	frame, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

func seqsOf(p *histPage) []uint64 {
	var out []uint64
	for _, m := range p.Msgs {
		out = append(out, m.Seq)
	}
	return out
}

func TestParsePageScansTheServersFrames(t *testing.T) {
	frame := pageFrame(t, "#c", 5, true, []uint64{5, 6, 7}, nil)
	p, ok := scanPage(frame)
	if !ok {
		t.Fatalf("fast path refused %s", frame)
	}
	if p.ID != "h7" || p.Target != "#c" || p.First != 5 || !p.More || fmt.Sprint(seqsOf(p)) != "[5 6 7]" {
		t.Errorf("page %+v, seqs %v", p, seqsOf(p))
	}
	for _, m := range p.Msgs {
		if string(m.Target) != "#c" {
			t.Errorf("target %q", m.Target)
		}
		if _, seq, _, ok := parseText(m.Text); !ok || seq != m.Seq {
			t.Errorf("text %q of seq %d", m.Text, m.Seq)
		}
	}
	empty := pageFrame(t, "#c", 1, false, nil, nil)
	p, ok = scanPage(empty)
	if !ok || len(p.Msgs) != 0 || p.More || p.First != 1 {
		t.Errorf("empty page %s: %+v, %v", empty, p, ok)
	}
}

func TestParsePageMindsStringsAndEscapes(t *testing.T) {
	texts := []string{`a } ] "seq":99 {`, `back\slash`, "tab\there"}
	frame := pageFrame(t, "#c", 1, false, []uint64{1, 2, 3}, texts)
	if _, ok := scanPage(frame); ok {
		t.Errorf("fast path took texts with escapes")
	}
	p, err := parsePage(frame)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqsOf(p)) != "[1 2 3]" || p.More {
		t.Fatalf("seqs %v, more %v", seqsOf(p), p.More)
	}
	for i, m := range p.Msgs {
		if string(m.Text) != texts[i] {
			t.Errorf("text %q, want %q", m.Text, texts[i])
		}
	}
	// Braces inside a text without escapes stay inside it.
	plain := "a } ] { [x"
	p2, ok := scanPage(pageFrame(t, "#c", 1, true, []uint64{8, 9}, []string{plain, plain}))
	if !ok || fmt.Sprint(seqsOf(p2)) != "[8 9]" || string(p2.Msgs[0].Text) != plain || !p2.More {
		t.Errorf("page %+v, ok %v", p2, ok)
	}
	if _, err := parsePage([]byte(`{"type":"history","messages":[{"type":"message",`)); err == nil {
		t.Error("a cut frame parsed")
	}
}

func TestHandleRoutesAPageToItsRequest(t *testing.T) {
	bn := newBench(Config{Concurrency: 1, URLs: []string{"http://127.0.0.1:1"}})
	c := bn.newClients("h", 1)[0]
	ch := make(chan []byte, 1)
	c.pages = map[string]chan []byte{"h7": ch}
	frame := pageFrame(t, "#c", 1, false, []uint64{1, 2}, nil)
	c.handle(frame)
	select {
	case got := <-ch:
		if string(got) != string(frame) {
			t.Errorf("got %s", got)
		}
	default:
		t.Fatal("the page did not reach its request")
	}
	// A page is not a delivery: scanMessage alone would take it for one.
	if c.delivered.Load() != 0 || len(bn.errs) != 0 {
		t.Errorf("delivered %d, errors %v", c.delivered.Load(), bn.errs)
	}
	c.handle(frame) // nobody waits for it now
	if bn.errs["unexpected_history"] != 1 {
		t.Errorf("errors %v", bn.errs)
	}
}

func TestSeqOf(t *testing.T) {
	for frame, want := range map[string]uint64{
		`{"type":"message","message":"x","seq":1043}`:         1043,
		`{"type":"message","message":"\"seq\":5","seq":7}`:    7,
		`{"type":"message","message":"x"}`:                    0,
		`{"type":"message","seq":18446744073709551615}`:       18446744073709551615,
		`{"type":"message","message":"x","seq":12,"extra":1}`: 12,
	} {
		if got := seqOf([]byte(frame)); got != want {
			t.Errorf("seqOf(%s) = %d, want %d", frame, got, want)
		}
	}
}

func TestPageFault(t *testing.T) {
	page := func(first uint64, more bool, seqs ...uint64) *histPage {
		p := &histPage{Target: "#c", First: first, More: more}
		for _, s := range seqs {
			p.Msgs = append(p.Msgs, histMsg{Seq: s, Target: []byte("#c")})
		}
		return p
	}
	// newest 10, first 1, limit 3
	for _, tc := range []struct {
		name   string
		p      *histPage
		before uint64
		want   string // a part of the fault; "" for none
	}{
		{"newest page", page(1, true, 8, 9, 10), 0, ""},
		{"middle page", page(1, true, 5, 6, 7), 8, ""},
		{"last page", page(1, false, 1, 2), 3, ""},
		{"last page, full", page(1, false, 1, 2, 3), 4, ""},
		{"below the oldest", page(1, false), 1, ""},
		{"trimmed history", page(4, false, 4, 5), 6, ""},
		{"gap", page(1, true, 7, 9, 10), 0, "follows"},
		{"reversed", page(1, true, 10, 9, 8), 0, "follows"},
		{"repeat", page(1, true, 8, 9, 9), 0, "follows"},
		{"not the newest", page(1, true, 7, 8, 9), 0, "ends at 9, want 10"},
		{"not right below before", page(1, true, 4, 5, 6), 8, "ends at 6, want 7"},
		{"short with more", page(1, true, 6, 7), 8, "more=true"},
		{"stops early", page(1, false, 5, 6, 7), 8, "more=false"},
		{"more at the oldest", page(1, true, 1, 2, 3), 4, "more=true"},
		{"too long", page(1, true, 4, 5, 6, 7), 8, "asked for 3"},
		{"empty", page(1, false), 0, "empty"},
		{"something below the oldest", page(4, false, 3), 4, "nothing is stored"},
		{"wrong channel", &histPage{Target: "#d", First: 1}, 0, "target"},
		{"wrong message target", &histPage{Target: "#c", First: 1, More: true,
			Msgs: []histMsg{{Seq: 10, Target: []byte("#d")}}}, 0, "message 10"},
	} {
		got := pageFault(tc.p, "#c", tc.before, 3, 10)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: fault %q, want one with %q", tc.name, got, tc.want)
		}
	}
}

func TestPageNewest(t *testing.T) {
	if n := (&histPage{First: 1}).newest(); n != 0 {
		t.Errorf("empty channel: newest %d", n)
	}
	if n := (&histPage{First: 43}).newest(); n != 42 {
		t.Errorf("all trimmed: newest %d", n)
	}
	if n := (&histPage{First: 1, Msgs: []histMsg{{Seq: 9}}}).newest(); n != 9 {
		t.Errorf("newest %d", n)
	}
}

func TestFillersFor(t *testing.T) {
	for _, tc := range []struct {
		pubs      int
		rateLimit float64
		n, want   int
	}{
		{0, 20, 1000, 6},      // 180 a user in 10 s
		{0, 20, 300, 2},       // 180 a user in 10 s
		{0, 20, 10000, 50},    // at most 50
		{0, 100000, 10000, 1}, // one is enough
		{7, 20, 10000, 7},     // as configured
	} {
		if got := fillersFor(Config{Publishers: tc.pubs, RateLimit: tc.rateLimit}, tc.n); got != tc.want {
			t.Errorf("fillersFor(%+v) = %d, want %d", tc, got, tc.want)
		}
	}
}

func TestCheckHistoryFlags(t *testing.T) {
	ok := Config{Scenario: "history", URLs: []string{"x"}, Clients: 1, Rate: 1, RateLimit: 1, Duration: 1, Concurrency: 1,
		Messages: 1, Drop: 1, Outage: 1}
	ok.Limit = 200
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Messages = 0 },
		func(c *Config) { c.Limit = -1 },
		func(c *Config) { c.Limit = 201 },
		func(c *Config) { c.Scenario = "resume"; c.Drop = 0 },
		func(c *Config) { c.Scenario = "resume"; c.Drop = 1.5 },
		func(c *Config) { c.Scenario = "resume"; c.Outage = 0 },
	} {
		c := ok
		bad(&c)
		if c.check() == nil {
			t.Errorf("%+v passed check", c)
		}
	}
}

func TestLimitDefaultsPerScenario(t *testing.T) {
	for scenario, want := range map[string]int{"history": 100, "members": 1000} {
		cfg := Config{Scenario: scenario, URLs: []string{"x"}, Clients: 1, Rate: 1, RateLimit: 1, Duration: 1, Concurrency: 1,
			Messages: 1, Drop: 1, Outage: 1}
		cfg.Requesters = 1
		if err := cfg.check(); err != nil {
			t.Fatalf("%s: %v", scenario, err)
		}
		if cfg.Limit != want {
			t.Errorf("%s: -limit 0 gives %d, want %d", scenario, cfg.Limit, want)
		}
	}
}
