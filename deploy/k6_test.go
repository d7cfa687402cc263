package deploy

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The k6 script is an ES module that imports k6's own modules, which node
// cannot resolve; `node --check` on a module only parses it, so it tells
// whether k6 will be able to read the script at all.
func TestK6ScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to check the k6 script's syntax: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), node, "--check", "--input-type=module")
	cmd.Stdin = strings.NewReader(readFile(t, "deploy", "k6", "chat.js"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("node --check deploy/k6/chat.js: %v\n%s", err, out.String())
	}

	// And the check does fail on a syntax error.
	bad := exec.CommandContext(t.Context(), node, "--check", "--input-type=module")
	bad.Stdin = strings.NewReader("import x from 'k6';\nexport default function () { x( }\n")
	if err := bad.Run(); err == nil {
		t.Fatal("node --check accepted a syntax error")
	}
}

// The script speaks only the protocol of docs/protocol.md.
func TestK6ScriptUsesTheProtocol(t *testing.T) {
	src := readFile(t, "deploy", "k6", "chat.js")
	// Drop comments, so that only code is checked.
	code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(src, "")

	literals := func(key string) []string {
		re := regexp.MustCompile(`\b` + key + `\s*:\s*['"]([^'"]*)['"]`)
		var vals []string
		for _, m := range re.FindAllStringSubmatch(code, -1) {
			vals = append(vals, m[1])
		}
		return vals
	}
	compared := func(field string) []string {
		re := regexp.MustCompile(`\.` + field + `\s*===?\s*['"]([^'"]*)['"]`)
		var vals []string
		for _, m := range re.FindAllStringSubmatch(code, -1) {
			vals = append(vals, m[1])
		}
		return vals
	}
	check := func(what string, got, allowed []string) {
		t.Helper()
		if len(got) == 0 {
			t.Errorf("no %s found in the script", what)
		}
		for _, v := range got {
			if !slices.Contains(allowed, v) {
				t.Errorf("the script uses %s %q, which is not in the spec (%v)", what, v, allowed)
			}
		}
	}

	// Frames sent (client to server, spec 3.1).
	check("frame type", literals("type"), []string{"command", "message"})
	check("command action", literals("action"), []string{"create", "destroy", "join", "leave"})
	// Frames received (spec 3 and 3.1 to 3.4).
	var cases []string
	for _, m := range regexp.MustCompile(`case\s+['"]([^'"]*)['"]`).FindAllStringSubmatch(code, -1) {
		cases = append(cases, m[1])
	}
	check("received frame type", append(cases, compared("type")...), []string{"welcome", "ack", "error", "message", "event"})
	check("error code", compared("code"), []string{
		"rate_limited", "bad_request", "invalid_target", "invalid_message", "not_found",
		"already_exists", "forbidden", "not_member", "unavailable", "internal",
	})

	// Endpoints: dev login and the websocket, nothing else.
	var paths []string
	for _, m := range regexp.MustCompile("['\"`/](/(?:auth|ws)[a-z/]*)").FindAllStringSubmatch(code, -1) {
		paths = append(paths, m[1])
	}
	check("endpoint", paths, []string{"/auth/dev/login", "/ws"})

	// Channel names: '#' then the prefix, '-' and a number; the default
	// prefix must itself be a valid name part (spec 3.2).
	if !strings.Contains(code, "`#${CHANNEL_PREFIX}-${") {
		t.Errorf("channel names are not built as #<prefix>-<n>")
	}
	for _, v := range []string{"CHANNEL_PREFIX", "USER_PREFIX"} {
		m := regexp.MustCompile(v + `\s*=\s*namePart\('` + v + `',\s*__ENV\.` + v + `\s*\|\|\s*'([^']*)'\)`).FindStringSubmatch(code)
		if m == nil || !regexp.MustCompile(`^[a-z0-9_-]{1,20}$`).MatchString(m[1]) {
			t.Errorf("%s has no default of 1 to 20 characters of a-z 0-9 _ -: %v", v, m)
		}
	}
}

// runK6 runs the script under node with k6's modules replaced by the
// JavaScript in k6, __ENV set to env, and harness appended, and returns what
// the harness prints. The k6 runtime cannot run here; its API is small
// enough to stand in for, so the script's own logic runs as written.
func runK6(t *testing.T, env map[string]string, k6, harness string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run the k6 script's logic: %v", err)
	}
	src := readFile(t, "deploy", "k6", "chat.js")
	imports := regexp.MustCompile(`(?m)^import .* from 'k6(/[a-z]+)?';$`)
	if n := len(imports.FindAllString(src, -1)); n != 4 {
		t.Fatalf("the script has %d imports of k6 modules, this test stands in for 4", n)
	}
	src = imports.ReplaceAllString(src, "")
	src = strings.Replace(src, "export default function", "function iteration", 1)
	envJSON, _ := json.Marshal(env)
	script := "globalThis.__ENV = " + string(envJSON) + ";\n" + k6 + "\n" + src + "\n" + harness
	cmd := exec.CommandContext(t.Context(), node, "--input-type=module")
	cmd.Stdin = strings.NewReader(script)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("node: %v\n%s", err, errOut.String())
	}
	return out.String()
}

// k6Stand is k6's API as far as the script uses it: metrics record what
// they are given, checks pass, and ws.connect hands the script a socket
// that the harness drives.
const k6Stand = `
const metrics = {};
class Metric { constructor(name) { this.name = name; metrics[name] = []; } add(v) { metrics[this.name].push(v); } }
class Counter extends Metric {}
class Rate extends Metric {}
class Trend extends Metric {}
function check() { return true; }
function fail(msg) { throw new Error(msg); }
const http = { post: () => ({ status: 200, json: (k) => (k === 'token' ? 'tok' : undefined) }) };
const sock = { handlers: {}, sent: [], intervals: [],
  on(ev, f) { this.handlers[ev] = f; }, send(s) { this.sent.push(JSON.parse(s)); },
  setInterval(f) { this.intervals.push(f); }, setTimeout() {}, close() { this.handlers.close(); } };
const ws = { connect: (url, params, cb) => { cb(sock); return { status: 101 }; } };
globalThis.__VU = 7; globalThis.__ITER = 0;
`

// The names the script uses are names the server accepts, in the lower
// case the server sends back: a prefix with capitals used to never match.
func TestK6Names(t *testing.T) {
	out := runK6(t, map[string]string{"CHANNEL_PREFIX": "Load-Test", "USER_PREFIX": "Bob_K6"}, k6Stand, `
let bad;
try { namePart('CHANNEL_PREFIX', 'no spaces'); bad = 'accepted'; } catch (e) { bad = e.message; }
console.log(JSON.stringify({ channel: channelName(3), user: userName(__VU), bad }));
`)
	var got struct{ Channel, User, Bad string }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Channel != "#load-test-3" || !regexp.MustCompile(`^#[a-z0-9_-]{1,64}$`).MatchString(got.Channel) {
		t.Errorf("channel %q, want #load-test-3", got.Channel)
	}
	if got.User != "bob_k6-7" || !regexp.MustCompile(`^[a-z0-9_-]{1,39}$`).MatchString(got.User) {
		t.Errorf("user %q, want bob_k6-7", got.User)
	}
	if !strings.Contains(got.Bad, "CHANNEL_PREFIX") {
		t.Errorf("a prefix with a space: %q, want an error naming CHANNEL_PREFIX", got.Bad)
	}
}

// One iteration against a socket the test drives: dev login with a JSON
// body, create and join, then two messages; the server refuses the first
// with rate_limited and echoes the second. The refused one is counted
// apart, not as lost.
func TestK6RateLimitedIsNotLost(t *testing.T) {
	out := runK6(t, map[string]string{"CHANNEL_PREFIX": "K6"}, k6Stand+`
let loginParams;
http.post = (url, body, params) => { loginParams = { url, body, params }; return { status: 200, json: (k) => (k === 'token' ? 'tok' : undefined) }; };
`, `
iteration();
const recv = (f) => sock.handlers.message(JSON.stringify(f));
recv({ type: 'welcome', channels: [], joined: [], owned: [] });
recv({ type: 'ack', id: 'join' });
sock.intervals[0]();
sock.intervals[0]();
const [first, second] = sock.sent.filter((f) => f.type === 'message');
recv({ type: 'error', code: 'rate_limited', message: 'slow down', id: first.id });
recv({ type: 'message', emitter: 'participant', target: second.target, identifier: 'u', username: 'k6-7', message: second.message, ts: '' });
sock.close();
console.log(JSON.stringify({ loginParams, sent: sock.sent, metrics }));
`)
	var got struct {
		LoginParams struct {
			URL    string
			Body   string
			Params struct{ Headers map[string]string }
		}
		Sent    []map[string]any
		Metrics map[string][]any
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.HasSuffix(got.LoginParams.URL, "/auth/dev/login") || got.LoginParams.Params.Headers["Content-Type"] != "application/json" ||
		got.LoginParams.Body != `{"username":"k6-7"}` {
		t.Errorf("dev login %+v: want a JSON body sent as application/json", got.LoginParams)
	}
	var ids []string
	for _, f := range got.Sent {
		if f["type"] == "message" {
			id, _ := f["id"].(string)
			ids = append(ids, id)
			if f["target"] != "#k6-6" { // VU 7 of 10 channels
				t.Errorf("message to %v, want #k6-6", f["target"])
			}
		}
	}
	if len(ids) != 2 || ids[0] == "" || ids[0] == ids[1] || len(ids[0]) > 64 {
		t.Errorf("message ids %q: want two different ids of at most 64 characters", ids)
	}
	m := got.Metrics
	if len(m["chat_rate_limited"]) != 1 {
		t.Errorf("chat_rate_limited %v, want one", m["chat_rate_limited"])
	}
	if own := m["chat_own_delivered"]; len(own) != 1 || own[0] != true {
		t.Errorf("chat_own_delivered %v, want the one echo and no loss", own)
	}
	if len(m["chat_errors"]) != 0 {
		t.Errorf("chat_errors %v: rate_limited is not an error of the server", m["chat_errors"])
	}
}
