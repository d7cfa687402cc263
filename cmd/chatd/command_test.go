package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// cli runs the command line in this process, as main does.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = command(args, envOf(nil), func() []string { return nil }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestHelp: `chatd help`, -h and --help print the command line and every
// setting with its default, to stdout, and exit 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}} {
		code, out, errOut := cli(t, args...)
		if code != 0 || errOut != "" {
			t.Errorf("chatd %s: exit %d, stderr %q; want 0 and nothing", strings.Join(args, " "), code, errOut)
		}
		for _, want := range []string{"chatd help", "chatd version", "chatd healthcheck"} {
			if !strings.Contains(out, want) {
				t.Errorf("chatd %s does not say %q", strings.Join(args, " "), want)
			}
		}
		for _, s := range settings() {
			if want := fmt.Sprintf("  %s (default: %s)\n", s.name, plain(s.defaultCell())); !strings.Contains(out, want) {
				t.Errorf("chatd %s: no line %q", strings.Join(args, " "), want)
			}
		}
	}
	_, out, _ := cli(t, "help")
	for _, want := range []string{"CHAT_RATE_LIMIT (default: 20)", "CHAT_WRITE_DELAY (default: 20ms)", "CHAT_ADDR (default: :8080; 127.0.0.1:8080 while CHAT_DEV_LOGIN is on)"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 80 {
			t.Errorf("help line over 80 columns: %q", line)
		}
	}
}

// TestCommandLineErrors: anything but the four commands exits 2 with the
// usage on stderr, and serves nothing.
func TestCommandLineErrors(t *testing.T) {
	for _, args := range [][]string{{"-version"}, {"--version"}, {"serve"}, {"version", "extra"}, {"help", "me"}, {"-x"}, {"healthcheck", "now"}} {
		code, out, errOut := cli(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "Usage:") {
			t.Errorf("chatd %s: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// TestVersion: the Go version, and the module's version, from the build
// information.
func TestVersion(t *testing.T) {
	code, out, errOut := cli(t, "version")
	if code != 0 || errOut != "" {
		t.Fatalf("chatd version: exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "chatd ") || !strings.Contains(out, "go "+runtime.Version()) || !strings.Contains(out, "commit ") {
		t.Errorf("chatd version:\n%s", out)
	}
}

// TestVersionCommit: the commit and whether the tree had changes, as VCS
// stamping records them.
func TestVersionCommit(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/wirechat/chat", Version: "v0.0.0-20261202074152-3185ccebb58c"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "3185ccebb58c0b5e5e0e6f1e0c1b8b5a7a1d2c3e"},
			{Key: "vcs.time", Value: "2026-12-02T07:41:52Z"},
		},
	}
	var buf bytes.Buffer
	printVersion(&buf, info)
	want := "chatd v0.0.0-20261202074152-3185ccebb58c\ncommit 3185ccebb58c0b5e5e0e6f1e0c1b8b5a7a1d2c3e (2026-12-02T07:41:52Z)\ngo go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if buf.String() != want {
		t.Errorf("version:\n%s\nwant\n%s", buf.String(), want)
	}
	info.Settings = append(info.Settings, debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	buf.Reset()
	printVersion(&buf, info)
	if !strings.Contains(buf.String(), "(2026-12-02T07:41:52Z), with uncommitted changes\n") {
		t.Errorf("a modified tree:\n%s", buf.String())
	}
}

// TestREADMESettings: the README's configuration table is the settings
// table, row for row.
func TestREADMESettings(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "| variable | default | meaning |":
			in = true
		case in && strings.HasPrefix(line, "| ---"):
		case in && strings.HasPrefix(line, "|"):
			got = append(got, line)
		case in:
			in = false
		}
	}
	var want []string
	for _, s := range settings() {
		want = append(want, fmt.Sprintf("| `%s` | %s | %s |", s.name, s.defaultCell(), s.meaning))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("README row %d:\n got %s\nwant %s", i+1, g, w)
			}
		}
		t.Logf("the table from settings.go:\n| variable | default | meaning |\n| --- | --- | --- |\n%s", strings.Join(want, "\n"))
	}
}
