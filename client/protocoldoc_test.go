package chatclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wirechat/chat/protocol"
)

// TestProtocolDocumentExamples parses every JSON example of
// docs/protocol.md with the client's own types, so that the document and
// the client cannot drift apart:
//
//   - a server frame must decode (decodeFrame, as the client reads frames)
//     into the type of its "type", strictly (no field the client does not
//     know), and every field of the example must come back out of the
//     client's type with the same value;
//   - a request must be one that the client's methods write, to the byte
//     the same JSON (up to the order of keys): the test decodes it as the
//     server does (protocol.DecodeRequest), builds it with the builder of
//     the method, and compares the JSON;
//   - the dev login body and answer must be the client's;
//   - the other HTTP bodies (/auth/providers, /auth/me) are not the
//     client's business and are named below; anything else fails.
//
// Placeholders stand in some examples: "…" in strings is a string, and a
// list elided as […] or ", …]" is read as empty or ending there.
func TestProtocolDocumentExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := documentExamples(t, string(doc))
	seen := make(map[string]int)
	for _, ex := range examples {
		kind := checkExample(t, ex)
		seen[kind]++
	}
	// The document has at least these; finding none of one means the
	// extraction broke, not that the document lost them.
	for _, kind := range []string{
		"frame welcome", "frame message", "frame event", "frame ack", "frame error", "frame history", "frame members",
		"welcome fragment",
		"request create", "request message", "request history", "request members", "request typing", "request read",
		"dev login request", "dev login answer",
	} {
		if seen[kind] == 0 {
			t.Errorf("no example of %s found in docs/protocol.md", kind)
		}
	}
	t.Logf("examples checked: %v", seen)
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// documentExamples returns the JSON objects of the document's code spans
// and indented code lines, placeholders replaced.
func documentExamples(t *testing.T, doc string) []string {
	var snippets []string
	for _, m := range codeSpan.FindAllStringSubmatch(doc, -1) {
		snippets = append(snippets, m[1])
	}
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "    {") {
			snippets = append(snippets, strings.TrimSpace(line))
		}
	}
	elided := strings.NewReplacer("[…]", "[]", ", …]", "]")
	var out []string
	for _, s := range snippets {
		s = elided.Replace(strings.Join(strings.Fields(s), " "))
		if strings.HasPrefix(s, `"`) && strings.Contains(s, `":`) {
			// A run of fields, e.g. the welcome's v2 fields.
			if frag := "{" + s + "}"; json.Valid([]byte(frag)) {
				out = append(out, frag)
			}
			continue
		}
		for i := objectStart(s, 0); i >= 0; {
			dec := json.NewDecoder(strings.NewReader(s[i:]))
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Errorf("an example that is not JSON: %s (%v)", s[i:], err)
				break
			}
			out = append(out, string(raw))
			i = objectStart(s, i+int(dec.InputOffset()))
		}
	}
	return out
}

// objectStart is the index of the first JSON object in s from i on, or -1:
// a "{" that opens a key or closes at once ("{provider}" in a URL is not
// one).
func objectStart(s string, i int) int {
	for ; i < len(s); i++ {
		if s[i] == '{' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '}') {
			return i
		}
	}
	return -1
}

// checkExample checks one example and returns its kind.
func checkExample(t *testing.T, ex string) string {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(ex), &fields); err != nil {
		t.Errorf("%s: %v", ex, err)
		return "broken"
	}
	var typ string
	json.Unmarshal(fields["type"], &typ)
	_, emitted := fields["emitter"]
	switch {
	case typ == protocol.TypeCommand || typ == protocol.TypeMessage && !emitted:
		return checkRequest(t, ex)
	case typ != "":
		in, err := decodeFrame([]byte(ex))
		if err != nil || in.Type != typ {
			t.Errorf("%s: decodeFrame: %+v, %v", ex, in, err)
			return "broken"
		}
		target := map[string]any{
			protocol.TypeWelcome: &Welcome{}, protocol.TypeMessage: &Message{}, protocol.TypeEvent: &Event{},
			protocol.TypeAck: &ack{}, protocol.TypeError: &Error{}, protocol.TypeHistory: &historyFrame{}, protocol.TypeMembers: &membersFrame{},
		}[typ]
		checkStrict(t, ex, fields, target)
		if in.Error != nil && !errors.Is(in.Error, &Error{Code: in.Error.Code}) {
			t.Errorf("%s: the error does not match its code's sentinel", ex)
		}
		return "frame " + typ
	case fields["epoch"] != nil:
		checkStrict(t, ex, fields, &Welcome{})
		return "welcome fragment"
	case keys(fields) == "username":
		checkStrict(t, ex, fields, &loginRequest{})
		return "dev login request"
	case fields["token"] != nil:
		checkStrict(t, ex, fields, &Login{})
		return "dev login answer"
	case fields["providers"] != nil: // GET /auth/providers: for login pages
	case fields["provider"] != nil: // GET /auth/me: for the web client's page
	case len(fields) == 0: // "{}", the empty read map in prose
	case keys(fields) == "id": // "id": null, a reading of what a server accepts: the client's ids are strings
	default:
		t.Errorf("an example that no check knows: %s", ex)
		return "unknown"
	}
	return "not the client's"
}

func keys(m map[string]json.RawMessage) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ",")
}

// checkStrict decodes ex into v refusing unknown fields (but "type", which
// decodeFrame reads), and checks that every field of ex comes back out of v
// with its value.
func checkStrict(t *testing.T, ex string, fields map[string]json.RawMessage, v any) {
	t.Helper()
	rest := make(map[string]json.RawMessage, len(fields))
	for k, f := range fields {
		if k != "type" {
			rest[k] = f
		}
	}
	body, _ := json.Marshal(rest)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s does not decode into %T: %v", ex, v, err)
		return
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	json.Unmarshal(again, &back)
	for k, f := range rest {
		var want any
		json.Unmarshal(f, &want)
		if !reflect.DeepEqual(back[k], want) {
			t.Errorf("%s: field %q comes out of %T as %v, want %v", ex, k, v, back[k], want)
		}
	}
}

// checkRequest checks that the client writes the documented request.
func checkRequest(t *testing.T, ex string) string {
	t.Helper()
	req, err := protocol.DecodeRequest([]byte(ex))
	if err != nil {
		t.Errorf("%s: the server refuses it: %v", ex, err)
		return "broken"
	}
	var built protocol.Request
	switch {
	case req.Type == protocol.TypeMessage:
		built = message(req.Target, req.Message)
	case req.Action == protocol.ActionHistory:
		built = historyRequest(req.Target, HistoryQuery{Before: req.Before, After: req.After, Limit: deref(req.Limit)})
	case req.Action == protocol.ActionMembers:
		built = membersRequest(req.Target, MembersQuery{After: deref(req.AfterName), Limit: deref(req.Limit)})
	case req.Action == protocol.ActionRead:
		built = readRequest(req.Target, *req.Seq)
	default:
		built = command(req.Action, req.Target)
	}
	built.ID = req.ID
	got, err := json.Marshal(built)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	json.Unmarshal(got, &g)
	json.Unmarshal([]byte(ex), &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("the client writes\n %s\nwhere the document says\n %s", got, ex)
	}
	if req.Type == protocol.TypeMessage {
		return "request message"
	}
	return "request " + req.Action
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// TestTypesMatchProtocol: the client's frame types have the JSON fields of
// the protocol package's, which the server writes with, no more, no less
// ("type" aside, which decodeFrame reads, and the request id, which the
// client keeps to itself).
func TestTypesMatchProtocol(t *testing.T) {
	for _, pair := range []struct{ client, server any }{
		{Welcome{}, protocol.Welcome{}},
		{Message{}, protocol.Message{}},
		{Event{}, protocol.Event{}},
		{ack{}, protocol.Ack{}},
		{Error{}, protocol.Error{}},
		{historyFrame{}, protocol.History{}},
		{membersFrame{}, protocol.Members{}},
		{Member{}, protocol.Member{}},
	} {
		got, want := jsonFields(reflect.TypeOf(pair.client)), jsonFields(reflect.TypeOf(pair.server))
		want = slices.DeleteFunc(want, func(f string) bool { return f == "type" })
		if !slices.Equal(got, want) {
			t.Errorf("%T has the JSON fields %v, %T has %v", pair.client, got, pair.server, want)
		}
	}
}

// jsonFields lists the JSON names of a struct's fields, sorted, with those
// of embedded structs.
func jsonFields(rt reflect.Type) []string {
	var out []string
	for f := range rt.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case name == "":
			out = append(out, f.Name)
		default:
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
