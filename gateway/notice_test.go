package gateway

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

var noticeSeeds = []notice{
	{op: opCreate, name: "#go", frame: []byte(`{"type":"event","emitter":"channel","identifier":"#go","event":"create"}`)},
	{op: opDestroy, name: "#go", frame: []byte(`{"type":"event"}`)},
	{op: opDestroy, name: "#go", wait: "n:6f1c.12", frame: []byte(`{"type":"event"}`)},
	{op: opJoin, name: "#go"},
	{op: opJoin, name: "#go", wait: "n:6f1c.13", reply: "n:6f1c"},
	{op: opJoined, name: "n:6f1c.13"},
	{op: opLeft, name: "3f0e8f3a-8a4e-4c1e-9d7c-2b1b8c1d0e5f", wait: "n:6f1c.14", frame: []byte(`{"type":"event"}`)},
	{op: opLogout, name: "0b5a9c3e-1d2f-4e5a-8b6c-7d8e9f0a1b2c"},
	{op: opHere, name: "n:6f1c"},
	{op: opMsg, name: "#go", seq: 1043, frame: []byte(`{"type":"message","seq":1043}`)},
	othersNotice([]string{"3f0e8f3a-8a4e-4c1e-9d7c-2b1b8c1d0e5f", "0b5a9c3e-1d2f-4e5a-8b6c-7d8e9f0a1b2c"}, [][]byte{[]byte(`{"event":"online"}`), []byte(`{"event":"typing"}`)}),
	{op: opMsg, name: "d:0b5a9c3e-1d2f-4e5a-8b6c-7d8e9f0a1b2c:3f0e8f3a-8a4e-4c1e-9d7c-2b1b8c1d0e5f", seq: 1, frame: []byte(`{}`)},
}

func TestNoticeRoundTrip(t *testing.T) {
	for _, n := range noticeSeeds {
		got, err := decodeNotice(n.encode())
		if err != nil {
			t.Fatalf("%s: %v", n.encode(), err)
		}
		if !sameNotice(got, n) {
			t.Fatalf("%s: decoded as %+v, want %+v", n.encode(), got, n)
		}
	}
}

func TestDecodeNoticeRefuses(t *testing.T) {
	for _, p := range []string{
		"!",
		"!create",
		"!2 create #go",    // a version this node does not know
		"!shout #go",       // an op it does not know
		"!create #go wait", // create takes no wait
		"!join #go a b c",  // join takes at most wait and reply
		"!left  #go",       // an empty field
		"!logout s \n{}",   // a trailing space is an empty field
		"create #go",
		"!msg #go",     // no seq
		"!msg #go 0",   // seqs start at 1
		"!msg #go x",   // not a number
		"!msg #go 1 2", // one seq
	} {
		if n, err := decodeNotice([]byte(p)); !errors.Is(err, errBadNotice) {
			t.Errorf("%q: decoded as %+v (err %v), want errBadNotice", p, n, err)
		}
	}
}

// TestDecodeNoticePassesOnFrames: a notice of a version or an op this node
// does not know (from a newer node) still gives up its frame, which the
// node passes on to the topic's sessions.
func TestDecodeNoticePassesOnFrames(t *testing.T) {
	for _, p := range []string{"!2 create #go\n{}", "!shout #go\n{}"} {
		n, err := decodeNotice([]byte(p))
		if err == nil || string(n.frame) != "{}" {
			t.Errorf("%q: frame %q, err %v; want the frame and an error", p, n.frame, err)
		}
	}
}

// TestMsgPrefix: what the backend writes around msgPrefix is an !msg
// notice.
func TestMsgPrefix(t *testing.T) {
	payload := append(msgPrefix("#go"), "17\n{}"...)
	n, err := decodeNotice(payload)
	if err != nil || n.op != opMsg || n.name != "#go" || n.seq != 17 || string(n.frame) != "{}" {
		t.Fatalf("%q decodes to %+v, %v", payload, n, err)
	}
}

func sameNotice(a, b notice) bool {
	return a.op == b.op && a.name == b.name && a.wait == b.wait && a.reply == b.reply && a.seq == b.seq &&
		bytes.Equal(a.frame, b.frame) && (a.frame == nil) == (b.frame == nil)
}

// FuzzDecodeNotice: no payload makes the decoder panic, and whatever it
// accepts encodes back to a payload that decodes to the same notice.
// Notices cross the network, from nodes of other versions too.
func FuzzDecodeNotice(f *testing.F) {
	for _, n := range noticeSeeds {
		f.Add(n.encode())
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		n, err := decodeNotice(payload)
		if err != nil {
			return
		}
		again, err := decodeNotice(n.encode())
		if err != nil {
			t.Fatalf("%q decoded, but its encoding %q does not: %v", payload, n.encode(), err)
		}
		if !sameNotice(again, n) {
			t.Fatalf("%q: %+v encodes to %q, which decodes to %+v", payload, n, n.encode(), again)
		}
	})
}

// TestClip: a long client-chosen string is cut on a character boundary.
func TestClip(t *testing.T) {
	long := strings.Repeat("é", 40) // 80 bytes
	got := clip(long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || len(got) > clipBytes+len("…") {
		t.Fatalf("clip(%q) = %q", long, got)
	}
	if clip("short") != "short" {
		t.Fatal("a short string was clipped")
	}
}
