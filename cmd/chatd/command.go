package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// usage is the command line, as `chatd help` opens and a wrong one is
// answered.
const usage = `Usage:
  chatd               serve the chat, set up by the environment (below)
  chatd help          show this help (also chatd -h or chatd --help)
  chatd version       print the version, the commit and the Go version
  chatd healthcheck   ask the local server's /healthz: exit 0 if it answers
                      200, else 1 (for container health checks)
`

// command runs chatd's command line and returns the exit status: 0, 1 for
// a failure, 2 for a command line it does not know.
func command(args []string, getenv func(string) string, environ func() []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below, where the error is handled
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout)
			return 0
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch strings.Join(fs.Args(), " ") {
	case "":
		return serve(getenv, environ, stderr)
	case "help":
		help(stdout)
		return 0
	case "version":
		version(stdout)
		return 0
	case "healthcheck":
		return healthcheck(getenv, stderr)
	}
	fmt.Fprintf(stderr, "chatd: unknown command %q\n%s", strings.Join(fs.Args(), " "), usage)
	return 2
}

// serve runs the chat until SIGTERM or SIGINT.
func serve(getenv func(string) string, environ func() []string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, getenv, environ, stderr); err != nil {
		fmt.Fprintln(stderr, "chatd:", err)
		return 1
	}
	return 0
}

// help prints the command line and every setting with its default, from
// the table that configures the server.
func help(w io.Writer) {
	fmt.Fprintf(w, "chatd is a websocket chat server (README.md).\n\n%s\n", usage)
	fmt.Fprint(w, "Settings: environment variables; unset or empty is the default.\n")
	for _, s := range settings() {
		fmt.Fprintf(w, "\n  %s (default: %s)\n", s.name, plain(s.defaultCell()))
		for _, line := range wrap(plain(s.meaning), 72) {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
}

// plain drops Markdown's code quotes, for a terminal.
func plain(md string) string { return strings.ReplaceAll(md, "`", "") }

// wrap breaks text into lines of at most width characters, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

// version prints what the Go toolchain recorded in the binary: the main
// module's version, the commit it was built from (when it was built in a
// git checkout with VCS stamping on) and the Go version.
func version(w io.Writer) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		info = &debug.BuildInfo{Main: debug.Module{Version: "(no build information)"}, GoVersion: runtime.Version()}
	}
	printVersion(w, info)
}

func printVersion(w io.Writer, info *debug.BuildInfo) {
	vcs := map[string]string{}
	for _, s := range info.Settings {
		vcs[s.Key] = s.Value
	}
	fmt.Fprintf(w, "chatd %s\n", info.Main.Version)
	switch rev := vcs["vcs.revision"]; {
	case rev == "":
		fmt.Fprintln(w, "commit unknown (built without VCS stamping: outside a git checkout, or with -buildvcs=false)")
	case vcs["vcs.modified"] == "true":
		fmt.Fprintf(w, "commit %s (%s), with uncommitted changes\n", rev, vcs["vcs.time"])
	default:
		fmt.Fprintf(w, "commit %s (%s)\n", rev, vcs["vcs.time"])
	}
	fmt.Fprintf(w, "go %s %s/%s\n", info.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// healthcheck asks the local server's /healthz, for container health checks
// in images without a shell. It returns the exit status.
func healthcheck(getenv func(string) string, stderr io.Writer) int {
	addr := newEnv(getenv).str("CHAT_ADDR")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck: CHAT_ADDR:", err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(strings.Trim(host, "[]"), port) + "/healthz")
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck: status", resp.Status)
		return 1
	}
	return 0
}
