package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the real server: ./cmd/chatd built with go build and
// started on a free port of 127.0.0.1 in single-node (memory) mode.

var (
	buildOnce sync.Once
	chatdBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chatbench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	chatdBin = filepath.Join(dir, "chatd")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildChatd builds the server once per test binary.
func buildChatd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", chatdBin, "github.com/wirechat/chat/cmd/chatd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/chatd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return chatdBin
}

// freeAddr finds a free port on 127.0.0.1.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is a running chatd.
type server struct {
	url string
	cmd *exec.Cmd
}

// startChatd starts the server with dev login on and the given extra
// environment, waits for /healthz, and stops it when the test ends.
func startChatd(t *testing.T, env ...string) *server {
	t.Helper()
	bin := buildChatd(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"CHAT_ADDR="+addr,
		"CHAT_DEV_LOGIN=true",
		"CHAT_LOGIN_RATE_LIMIT=0", // every virtual user logs in from 127.0.0.1
		"CHAT_REDIS_URL=",
		"CHAT_LOG_LEVEL=warn",
		"CHAT_PUBLIC_URL=http://"+addr,
	)
	cmd.Env = append(cmd.Env, env...)
	var logs bytes.Buffer
	var logMu sync.Mutex
	cmd.Stdout = &lockedWriter{w: &logs, mu: &logMu}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("chatd output:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	s := &server{url: "http://" + addr, cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("chatd exited at start:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatd not healthy after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// testConfig is a small run against s: generous grace (a run ends as soon
// as everything is in) and timeout, so that only a real fault fails it.
func testConfig(t *testing.T, scenario string, s ...*server) Config {
	cfg := Config{
		Scenario:    scenario,
		Clients:     20,
		Channels:    2,
		Rate:        200,
		Duration:    time.Second,
		Size:        64,
		Grace:       30 * time.Second,
		RateLimit:   20,
		Concurrency: 8,
		Factor:      2,
		P99Max:      time.Hour,
		Messages:    1000,
		Drop:        0.2,
		Outage:      time.Second,
		Progress:    testWriter{t},
	}
	for _, s := range s {
		cfg.URLs = append(cfg.URLs, s.url)
	}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func runTest(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := runBench(context.Background(), cfg, 2*time.Minute)
	var table bytes.Buffer
	writeTable(&table, res)
	t.Logf("result:\n%s", table.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(res.Disconnects) != 0 {
		t.Errorf("disconnects %v", res.Disconnects)
	}
	return res
}

// checkNoErrors asserts that the server refused nothing.
func checkNoErrors(t *testing.T, res *Result) {
	t.Helper()
	if len(res.Errors) != 0 {
		t.Errorf("errors %v", res.Errors)
	}
}

// checkPhase asserts that every owed delivery arrived exactly once and that
// what was owed is what the rules say: members deliveries per message.
func checkPhase(t *testing.T, ph *PhaseResult, members uint64) {
	t.Helper()
	if ph == nil {
		t.Fatal("no phase result")
	}
	if ph.Sent == 0 {
		t.Fatal("nothing sent")
	}
	if ph.Lost != 0 || ph.Duplicated != 0 || ph.Unexpected != 0 || ph.OutOfOrder != 0 {
		t.Errorf("lost %d, duplicated %d, unexpected %d, out of order %d; want all 0",
			ph.Lost, ph.Duplicated, ph.Unexpected, ph.OutOfOrder)
	}
	if want := (ph.Sent - ph.Refused) * members; ph.Expected != want {
		t.Errorf("expected %d deliveries, want %d (%d accepted messages x %d receivers)", ph.Expected, want, ph.Sent-ph.Refused, members)
	}
	if ph.Delivered != ph.Expected || !ph.Complete {
		t.Errorf("delivered %d of %d, complete %v", ph.Delivered, ph.Expected, ph.Complete)
	}
	if ph.Acked+ph.Refused != ph.Sent {
		t.Errorf("acked %d + refused %d != sent %d", ph.Acked, ph.Refused, ph.Sent)
	}
	if ph.Latency.Count != ph.Delivered {
		t.Errorf("latency of %d deliveries recorded, want %d", ph.Latency.Count, ph.Delivered)
	}
}

func TestFanoutAgainstChatd(t *testing.T) {
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := testConfig(t, "fanout", s)
	cfg.RateLimit = 10000
	res := runTest(t, cfg)
	// One publisher (200 msg/s fits its limit) in both channels; each
	// channel has 10 subscribers and the publisher, who gets its echo.
	if res.Phase.Publishers != 1 {
		t.Fatalf("publishers = %d, want 1", res.Phase.Publishers)
	}
	checkPhase(t, res.Phase, 11)
	checkNoErrors(t, res)
}

func TestFanoutWithoutRequestIDs(t *testing.T) {
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := testConfig(t, "fanout", s)
	cfg.RateLimit = 10000
	cfg.NoIDs = true
	res := runTest(t, cfg)
	if res.Phase.Acked != 0 {
		t.Errorf("%d acks for messages without ids", res.Phase.Acked)
	}
	res.Phase.Acked = res.Phase.Sent // checkPhase matches acks to messages
	checkPhase(t, res.Phase, 11)
	checkNoErrors(t, res)
}

func TestFanoutSpreadsOverPublishersUnderTheDefaultRateLimit(t *testing.T) {
	s := startChatd(t) // CHAT_RATE_LIMIT at its default of 20
	cfg := testConfig(t, "fanout", s)
	cfg.Channels = 1
	cfg.Rate = 60
	res := runTest(t, cfg)
	// 60 msg/s at 18 per publisher: 4 publishers, all in the one channel.
	if res.Phase.Publishers != 4 {
		t.Fatalf("publishers = %d, want 4", res.Phase.Publishers)
	}
	checkPhase(t, res.Phase, 20+4)
	checkNoErrors(t, res)
}

func TestRefusedMessagesAreNotCountedAsLost(t *testing.T) {
	s := startChatd(t) // 20 requests/s per user, burst 40
	cfg := testConfig(t, "fanout", s)
	cfg.Clients, cfg.Channels, cfg.Publishers = 4, 1, 1
	cfg.RateLimit = 1e6 // lie to chatbench: it sends far over the limit
	cfg.Rate = 1000
	res := runTest(t, cfg)
	if res.Phase.Refused == 0 {
		t.Fatalf("no message refused at 1000 msg/s from one user")
	}
	checkPhase(t, res.Phase, 5)
	// The refusals are reported, not hidden.
	if got := res.Errors["rate_limited"]; got != res.Phase.Refused {
		t.Errorf("errors %v, want rate_limited=%d", res.Errors, res.Phase.Refused)
	}
}

func TestDMAgainstChatd(t *testing.T) {
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := testConfig(t, "dm", s)
	cfg.RateLimit = 10000
	res := runTest(t, cfg)
	// Each private message is owed to its recipient and to its sender.
	checkPhase(t, res.Phase, 2)
	checkNoErrors(t, res)
}

func TestTwoNodeURLsAreUsedRoundRobin(t *testing.T) {
	// Two independent single-node servers (not a cluster): clients
	// alternate between them and every one of them connects.
	a, b := startChatd(t), startChatd(t)
	cfg := testConfig(t, "connect", a, b)
	cfg.Clients = 4
	bench := newBench(cfg)
	cs := bench.newClients("c", 4)
	for i, c := range cs {
		if want := cfg.URLs[i%2]; c.node != want {
			t.Errorf("client %d on %s, want %s", i, c.node, want)
		}
	}
	bench.close()
	res := runTest(t, cfg)
	if res.Connect.Connections != 4 {
		t.Errorf("connected %d of 4", res.Connect.Connections)
	}
}

func TestIdleReportsServerMemory(t *testing.T) {
	s := startChatd(t)
	cfg := testConfig(t, "idle", s)
	cfg.PIDs = []int{s.cmd.Process.Pid}
	res := runTest(t, cfg)
	if res.Idle.Open != cfg.Clients {
		t.Errorf("%d of %d connections open at the end", res.Idle.Open, cfg.Clients)
	}
	if res.Idle.RSSBeforeKiB <= 0 || res.Idle.RSSAfterKiB <= 0 {
		t.Errorf("RSS not read: %+v", res.Idle)
	}
}

func TestConnectAgainstChatd(t *testing.T) {
	s := startChatd(t)
	cfg := testConfig(t, "connect", s)
	res := runTest(t, cfg)
	if res.Connect.Connections != cfg.Clients || res.Connect.Welcome.Count != uint64(cfg.Clients) {
		t.Errorf("connect result %+v", res.Connect)
	}
}

func TestSaturateStepsUp(t *testing.T) {
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := testConfig(t, "saturate", s)
	cfg.RateLimit = 10000
	cfg.Clients, cfg.Channels = 10, 1
	cfg.Rate, cfg.MaxRate, cfg.Duration = 50, 200, 500*time.Millisecond
	res := runTest(t, cfg)
	// 50, 100, 200 msg/s; a tiny load never fails a step with a p99 bound
	// of an hour, so all three run and the last is the last good one.
	if len(res.Steps) != 3 {
		t.Fatalf("%d steps, want 3", len(res.Steps))
	}
	for i := range res.Steps {
		checkPhase(t, &res.Steps[i], 11)
	}
	if res.LastGood == nil || res.LastGood.Rate != 200 {
		t.Errorf("last good step %+v, want the 200 msg/s one", res.LastGood)
	}
}
