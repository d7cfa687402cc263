package deploy

import (
	"bytes"
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

// The script speaks only the protocol of spec/PROTOCOL.md.
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
		m := regexp.MustCompile(v + `\s*=\s*__ENV\.` + v + `\s*\|\|\s*'([^']*)'`).FindStringSubmatch(code)
		if m == nil || !regexp.MustCompile(`^[a-z0-9_-]{1,20}$`).MatchString(m[1]) {
			t.Errorf("%s has no default of 1 to 20 characters of a-z 0-9 _ -: %v", v, m)
		}
	}
}
