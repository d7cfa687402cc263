package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// buildChatd builds the real binary, as `go build ./cmd/chatd` does.
func buildChatd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chatd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestProcess runs chatd as a process: the embedded default serves a chat,
// a bad setting stops it at start, and SIGTERM drains it: readyz 503,
// websockets closed with 1001, exit status 0.
func TestProcess(t *testing.T) {
	bin := buildChatd(t)

	t.Run("bad setting", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "CHAT_SHUTDOWN_TIMEOUT=whenever")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "CHAT_SHUTDOWN_TIMEOUT") {
			t.Fatalf("want a failure naming the variable, got %v: %s", err, out)
		}
	})

	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CHAT_ADDR="+addr, "CHAT_DEV_LOGIN=true", "CHAT_REDIS_URL=", "CHAT_SHUTDOWN_TIMEOUT=5s",
		"CHAT_PUBLIC_URL=http://chat.test:8080",
		"CHAT_GITHUB_CLIENT_ID=ghid", "CHAT_GITHUB_CLIENT_SECRET=ghsecret", "CHAT_GITHUB_URL=http://127.0.0.1:9", "CHAT_GITHUB_API_URL=http://127.0.0.1:9")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case logs <- sc.Text():
			default:
			}
		}
		close(logs)
	}()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("chatd did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("healthcheck subcommand", func(t *testing.T) {
		hc := exec.Command(bin, "healthcheck")
		hc.Env = append(os.Environ(), "CHAT_ADDR="+addr)
		if out, err := hc.CombinedOutput(); err != nil {
			t.Fatalf("healthcheck: %v %s", err, out)
		}
	})

	resp, err := http.Post(base+"/auth/dev/login", "application/json", strings.NewReader(`{"username":"Alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var l struct{ Token, Username string }
	json.NewDecoder(resp.Body).Decode(&l)
	resp.Body.Close()
	if l.Username != "alice" || len(l.Token) < 43 {
		t.Fatalf("dev login: %+v", l)
	}
	for _, path := range []string{"/", "/metrics", "/auth/providers"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}

	t.Run("providers are wired", func(t *testing.T) {
		resp, err := http.Get(base + "/auth/providers")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `{"name":"github","login_url":"/auth/github/login"}`) || !strings.Contains(string(b), `"dev"`) {
			t.Fatalf("providers: %s", b)
		}
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err = noRedirect.Get(base + "/auth/github/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "http://127.0.0.1:9/login/oauth/authorize?") ||
			!strings.Contains(loc, "redirect_uri=http%3A%2F%2Fchat.test%3A8080%2Fauth%2Fgithub%2Fcallback") {
			t.Fatalf("github login: %s %s", resp.Status, loc)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + l.Token}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if _, b, err := conn.Read(ctx); err != nil || !strings.Contains(string(b), `"type":"welcome"`) {
		t.Fatalf("welcome: %s %v", b, err)
	}

	t.Run("metrics move with traffic", func(t *testing.T) {
		for _, f := range []string{
			`{"type":"command","action":"create","target":"#m","id":"1"}`,
			`{"type":"command","action":"join","target":"#m","id":"2"}`,
			`{"type":"message","target":"#m","message":"counted","id":"3"}`,
			`{"type":"command","action":"join","target":"#nope","id":"4"}`,
		} {
			conn.Write(ctx, websocket.MessageText, []byte(f))
		}
		for seen := 0; seen < 4; {
			_, b, err := conn.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), `"id":"`) {
				seen++
			}
		}
		// A writer counts its frames just after the write returns, so the
		// client may have read them before they are counted: look again
		// for a few seconds before calling a line missing.
		wants := []string{
			"chat_connections 1",
			"chat_connections_opened_total 1",
			`chat_frames_in_total{type="message"} 1`,
			`chat_frames_in_total{type="join"} 2`,
			`chat_messages_published_total{kind="channel"} 1`,
			`chat_errors_total{code="not_found"} 1`,
			`chat_deliveries_total{type="message"} 1`,
			`chat_frames_out_total{type="welcome"} 1`,
			`chat_frames_out_total{type="ack"} 3`,
			`chat_frames_out_total{type="error"} 1`,
			"chat_pubsub_subscriptions 2",
			"go_goroutines",
			"process_resident_memory_bytes",
		}
		var missing []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			lines := strings.Split(string(b), "\n")
			missing = missing[:0]
			for _, want := range wants {
				if !slices.ContainsFunc(lines, func(line string) bool { return line == want || strings.HasPrefix(line, want+" ") }) {
					missing = append(missing, want)
				}
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, want := range missing {
			t.Errorf("metrics lack %q", want)
		}
	})

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	_, _, err = conn.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Fatalf("close on SIGTERM: %v, want 1001", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took := time.Since(start); took > 6*time.Second {
		// Not a speed assertion: the contract is "within CHAT_SHUTDOWN_TIMEOUT".
		t.Fatalf("exit took %v, longer than CHAT_SHUTDOWN_TIMEOUT", took)
	}
	var all []string
	for line := range logs {
		all = append(all, line)
	}
	joined := strings.Join(all, "\n")
	if !strings.Contains(joined, "dev login is on") {
		t.Errorf("no dev-login warning in logs:\n%s", joined)
	}
	if strings.Contains(joined, l.Token) {
		t.Errorf("a token was logged")
	}
}

// logBuffer collects a process's log lines; safe for the copying goroutine
// and the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startLogged starts chatd with env as its whole environment, its log
// going to the buffer; exited gets its exit once, and the process is
// killed at the end of the test if it still runs.
func startLogged(t *testing.T, bin string, env []string) (cmd *exec.Cmd, logs *logBuffer, exited chan error) {
	t.Helper()
	cmd = exec.Command(bin)
	cmd.Env = env
	logs = new(logBuffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	done := make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return cmd, logs, exited
}

// TestProcessMetricsAddr: with CHAT_METRICS_ADDR, /metrics is served only
// there and answered 404 on the chat's address; a misspelt variable is
// warned about; and a connection that never sent a request does not hold
// the exit after SIGTERM.
func TestProcessMetricsAddr(t *testing.T) {
	bin := buildChatd(t)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	cmd, logs, exited := startLogged(t, bin, append(os.Environ(), "CHAT_ADDR="+addr, "CHAT_METRICS_ADDR="+metricsAddr,
		"CHAT_DEV_LOGIN=true", "CHAT_REDIS_URL=", "CHAT_SHUTDOWN_TIMEOUT=3s", "CHAT_DEV_LOGON=true"))
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "chatd to be ready", func() bool { return status("http://"+addr+"/readyz") == 200 })

	if got := status("http://" + addr + "/metrics"); got != http.StatusNotFound {
		t.Errorf("GET /metrics on CHAT_ADDR: %d, want 404", got)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "chat_connections ") || !strings.Contains(string(b), "go_goroutines") {
		t.Errorf("GET /metrics on CHAT_METRICS_ADDR: %s\n%.300s", resp.Status, b)
	}
	for _, path := range []string{"/", "/healthz", "/auth/providers"} {
		if got := status("http://" + metricsAddr + path); got != http.StatusNotFound {
			t.Errorf("GET %s on CHAT_METRICS_ADDR: %d, want 404: only /metrics is served there", path, got)
		}
	}

	// A client's spare connection, opened and never used.
	spare, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0\n%s", err, logs.String())
	}
	log := logs.String()
	for _, want := range []string{"var=CHAT_DEV_LOGON", "did_you_mean=CHAT_DEV_LOGIN", "metrics listening", "msg=stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the log:\n%s", want, log)
		}
	}
	// Not a timing assertion: net/http alone would wait for the spare until
	// it is 5 s old, longer than the 3s timeout: a shutdown that waited
	// for it would have had to cut it at the deadline.
	if strings.Contains(log, "connections cut") {
		t.Errorf("shutdown waited for a connection that sent no request:\n%s", log)
	}
}

// TestProcessDevLoginBindsLoopback: with dev login on and CHAT_ADDR unset,
// chatd listens on 127.0.0.1:8080, and says so. (Port 8080 may be taken on
// a shared machine: then the start fails, naming the address it tried.)
func TestProcessDevLoginBindsLoopback(t *testing.T) {
	bin := buildChatd(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHAT_ADDR=") {
			env = append(env, kv)
		}
	}
	_, logs, exited := startLogged(t, bin, append(env, "CHAT_DEV_LOGIN=true", "CHAT_REDIS_URL="))
	waitFor(t, "chatd to listen or to fail", func() bool {
		select {
		case err := <-exited:
			exited <- err
			return true
		default:
			return strings.Contains(logs.String(), "chatd listening")
		}
	})
	log := logs.String()
	switch {
	case strings.Contains(log, "chatd listening"):
		if !strings.Contains(log, "addr=127.0.0.1:8080") || !strings.Contains(log, "loopback only") {
			t.Errorf("start-up line does not say loopback 127.0.0.1:8080:\n%s", log)
		}
	case strings.Contains(log, "CHAT_ADDR: listen tcp 127.0.0.1:8080:"):
		t.Logf("port 8080 is taken here; chatd tried 127.0.0.1:8080 as it should:\n%s", log)
	default:
		t.Errorf("chatd neither listened on 127.0.0.1:8080 nor tried to:\n%s", log)
	}
}
