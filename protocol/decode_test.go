package protocol

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		in    string
		want  Request
		bad   bool
		badID string
	}{
		{in: `{"type":"command","action":"create","target":"#main"}`, want: Request{Type: "command", Action: "create", Target: "#main"}},
		{in: `{"type":"message","target":"@bob","message":"hi","id":"7"}`, want: Request{Type: "message", Target: "@bob", Message: "hi", ID: "7"}},
		{in: `{"type":"message","target":"#a","message":"x","id":null,"more":[1]}`, want: Request{Type: "message", Target: "#a", Message: "x"}},
		{in: ``, bad: true},
		{in: `null`, bad: true},
		{in: `"str"`, bad: true},
		{in: `{"type":"command"`, bad: true},
		{in: `{"type":"command","action":"nuke","target":"#a","id":"x"}`, bad: true, badID: "x"},
		{in: `{"type":"message","target":"#a","id":"y"}`, bad: true, badID: "y"},
		{in: `{"type":"message","target":"#a","message":1,"id":"z"}`, bad: true, badID: "z"},
		{in: `{"type":1}`, bad: true},
		{in: `{"type":"command","action":"join","target":"#a","id":1}`, bad: true},
		{in: `{"type":"command","action":"join","target":"#a","id":"` + strings.Repeat("i", 65) + `"}`, bad: true},
		// v2 commands and their arguments.
		{in: `{"type":"command","action":"typing","target":"@bob"}`, want: Request{Type: "command", Action: "typing", Target: "@bob"}},
		{in: `{"type":"command","action":"history","target":"#a","before":1042,"limit":50,"id":"9"}`, want: Request{Type: "command", Action: "history", Target: "#a", ID: "9", Before: u64(1042), Limit: intp(50)}},
		{in: `{"type":"command","action":"history","target":"#a","after":0}`, want: Request{Type: "command", Action: "history", Target: "#a", After: u64(0)}},
		{in: `{"type":"command","action":"history","target":"#a","before":null,"after":null}`, want: Request{Type: "command", Action: "history", Target: "#a"}},
		{in: `{"type":"command","action":"history","target":"#a","before":0,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","before":5,"after":3,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","limit":201,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","limit":0,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","after":-1,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","after":1.5,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","after":1e2,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","after":"7","id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"history","target":"#a","after":18446744073709551616,"id":"h"}`, bad: true, badID: "h"},
		{in: `{"type":"command","action":"members","target":"#a","after":"bob","limit":1000}`, want: Request{Type: "command", Action: "members", Target: "#a", AfterName: strp("bob"), Limit: intp(1000)}},
		{in: `{"type":"command","action":"members","target":"#a","after":7,"id":"m"}`, bad: true, badID: "m"},
		{in: `{"type":"command","action":"members","target":"#a","limit":1001,"id":"m"}`, bad: true, badID: "m"},
		{in: `{"type":"command","action":"read","target":"#a","seq":1042}`, want: Request{Type: "command", Action: "read", Target: "#a", Seq: u64(1042)}},
		{in: `{"type":"command","action":"read","target":"#a","id":"r"}`, bad: true, badID: "r"},
		{in: `{"type":"command","action":"read","target":"#a","seq":"1","id":"r"}`, bad: true, badID: "r"},
		// Arguments an action does not take are ignored, whatever they hold.
		{in: `{"type":"command","action":"join","target":"#a","before":"x","seq":-1}`, want: Request{Type: "command", Action: "join", Target: "#a"}},
	}
	for _, tc := range cases {
		got, err := DecodeRequest([]byte(tc.in))
		var de *DecodeError
		if tc.bad {
			if !errors.As(err, &de) {
				t.Errorf("%s: want a DecodeError, got %v", tc.in, err)
			} else if de.ID != tc.badID {
				t.Errorf("%s: error id %q, want %q", tc.in, de.ID, tc.badID)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func u64(n uint64) *uint64  { return &n }
func intp(n int) *int       { return &n }
func strp(s string) *string { return &s }

// TestRequestMarshal: what a client writes with Request decodes to the same
// request.
func TestRequestMarshal(t *testing.T) {
	for _, req := range []Request{
		{Type: TypeMessage, Target: "#go", Message: "hi", ID: "1"},
		{Type: TypeCommand, Action: ActionHistory, Target: "@bob", After: u64(0), Limit: intp(200)},
		{Type: TypeCommand, Action: ActionHistory, Target: "#go", Before: u64(9)},
		{Type: TypeCommand, Action: ActionMembers, Target: "#go", AfterName: strp("carol")},
		{Type: TypeCommand, Action: ActionRead, Target: "#go", Seq: u64(0), ID: "r"},
	} {
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRequest(b)
		if err != nil || !reflect.DeepEqual(got, req) {
			t.Errorf("%s decodes to %+v, %v; want %+v", b, got, err, req)
		}
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{"#Main": "#main", "#a": "#a", "#" + strings.Repeat("Z", 64): "#" + strings.Repeat("z", 64), "#a_b-C9": "#a_b-c9"} {
		if got, ok := NormalizeChannel(in); !ok || got != want {
			t.Errorf("NormalizeChannel(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "#", "main", "@main", "#a b", "#é", "#" + strings.Repeat("a", 65), "#a.b"} {
		if _, ok := NormalizeChannel(in); ok {
			t.Errorf("NormalizeChannel(%q) accepted", in)
		}
	}
	for in, want := range map[string]string{"Alice": "alice", "a_1-b": "a_1-b", strings.Repeat("x", 39): strings.Repeat("x", 39)} {
		if got, ok := NormalizeUsername(in); !ok || got != want {
			t.Errorf("NormalizeUsername(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "a b", "al.ice", "é", strings.Repeat("x", 40)} {
		if _, ok := NormalizeUsername(in); ok {
			t.Errorf("NormalizeUsername(%q) accepted", in)
		}
	}
	for in, want := range map[string]string{"Alice.Smith": "alice-smith", "josé": "jos-", "...": "user", strings.Repeat("a", 50): strings.Repeat("a", 39)} {
		if got := SanitizeUsername(in); got != want {
			t.Errorf("SanitizeUsername(%q) = %q, want %q", in, got, want)
		}
	}
	if got := WithSuffix(strings.Repeat("a", 39), 12); got != strings.Repeat("a", 36)+"-12" {
		t.Errorf("WithSuffix = %q", got)
	}
}

func TestValidText(t *testing.T) {
	for in, want := range map[string]bool{"hi": true, " x ": true, "": false, " ": false, "\t\n\u00a0\u2003\u3000": false, "12345": true, "123456": false, "\xff": false} {
		if got := ValidText(in, 5); got != want {
			t.Errorf("ValidText(%q) = %v", in, got)
		}
	}
}

// FuzzDecodeRequest checks that no input crashes the decoder, that what it
// accepts is a well-formed request, and that decoding is stable under
// re-encoding. The seed corpus is in testdata/fuzz.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"type":"command","action":"create","target":"#main"}`))
	f.Add([]byte(`{"type":"message","target":"@bob","message":"hi","id":"1"}`))
	f.Add([]byte(`{"type":"command","action":"history","target":"#a","after":0,"limit":200}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a DecodeError: %v", err)
			}
			if len(de.ID) > MaxIDLen {
				t.Fatalf("error carries an over-long id")
			}
			return
		}
		if len(req.ID) > MaxIDLen {
			t.Fatalf("accepted an id of %d bytes", len(req.ID))
		}
		switch req.Type {
		case TypeCommand:
			if !knownAction(req.Action) {
				t.Fatalf("accepted action %q", req.Action)
			}
		case TypeMessage:
		default:
			t.Fatalf("accepted type %q", req.Type)
		}
		if !utf8.ValidString(req.Target) && utf8.Valid(data) {
			t.Fatalf("target %q not UTF-8 from UTF-8 input", req.Target)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := DecodeRequest(again)
		if err != nil || !reflect.DeepEqual(req2, req) {
			t.Fatalf("re-decoding %s: %+v, %v; want %+v", again, req2, err, req)
		}
	})
}

func BenchmarkDecodeValidate(b *testing.B) {
	frame := []byte(`{"type":"message","target":"#Main","message":"Hello guys! This is a message of about a hundred bytes, as chat messages go.","id":"42"}`)
	b.ReportAllocs()
	for b.Loop() {
		req, err := DecodeRequest(frame)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := NormalizeChannel(req.Target); !ok || !ValidText(req.Message, 4096) {
			b.Fatal("invalid")
		}
	}
}

// FuzzDecodeAgainstReference checks that DecodeRequest accepts and refuses
// exactly what the reference decoder does, with the same request or id.
func FuzzDecodeAgainstReference(f *testing.F) {
	f.Add([]byte(`{"type":"command","action":"create","target":"#main"}`))
	f.Add([]byte(`{"type":"message","target":"@bob","message":"hi","id":"1"}`))
	f.Add([]byte(`{"type":"command","action":"join","target":7,"id":"x"}`))
	f.Add([]byte(`{"type":"command","action":"history","target":"#a","before":10,"limit":5,"id":"h"}`))
	f.Add([]byte(`{"type":"command","action":"members","target":"#a","after":"bob","limit":1000}`))
	f.Add([]byte(`{"type":"command","action":"read","target":"@bob","seq":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotErr := DecodeRequest(data)
		want, wantErr := decodeReference(data)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, reference %v", data, gotErr, wantErr)
		}
		if gotErr != nil {
			if g, w := gotErr.(*DecodeError).ID, wantErr.(*DecodeError).ID; g != w {
				t.Fatalf("%q: error id %q, reference %q", data, g, w)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %+v, reference %+v", data, got, want)
		}
	})
}

// BenchmarkDecodeReference measures the first decoder, for comparison.
func BenchmarkDecodeReference(b *testing.B) {
	frame := []byte(`{"type":"message","target":"#Main","message":"Hello guys! This is a message of about a hundred bytes, as chat messages go.","id":"42"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeReference(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTruncate(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name, in, want string
	}{
		{"short", "create", "create"},
		{"exactly the limit", a(32), a(32)},
		{"one byte over", a(33), a(32) + "…"},
		{"two-byte character across the cut", a(31) + "é" + a(5), a(31) + "…"},
		{"three-byte character across the cut", a(30) + "€" + a(5), a(30) + "…"},
		{"four-byte character across the cut", a(29) + "🙂" + a(5), a(29) + "…"},
		{"character ending at the cut", a(30) + "é" + a(5), a(30) + "é…"},
		{"only wide characters", strings.Repeat("€", 20), strings.Repeat("€", 10) + "…"},
		{"invalid bytes count as one each", a(31) + "\xff\xfe" + a(5), a(31) + "\xff…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := truncate(tc.in); got != tc.want {
				t.Fatalf("truncate(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// Every cut of valid UTF-8 is valid UTF-8, a prefix of the input, at most
// 32 bytes before the ellipsis, and as long as whole characters allow.
func TestTruncateValidUTF8(t *testing.T) {
	for _, fill := range []string{"é", "€", "🙂"} {
		for lead := range 40 {
			in := strings.Repeat("a", lead) + strings.Repeat(fill, 12)
			got := truncate(in)
			if len(in) <= 32 {
				if got != in {
					t.Fatalf("truncate(%q) = %q, want it unchanged", in, got)
				}
				continue
			}
			kept, ok := strings.CutSuffix(got, "…")
			if !ok || !strings.HasPrefix(in, kept) || len(kept) > 32 || !utf8.ValidString(got) {
				t.Fatalf("truncate(%q) = %q", in, got)
			}
			if next, _ := utf8.DecodeRuneInString(in[len(kept):]); len(kept)+utf8.RuneLen(next) <= 32 {
				t.Fatalf("truncate(%q) = %q: the next character would have fit", in, got)
			}
		}
	}
}
