package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// startRedis starts a throwaway redis-server on a free port of 127.0.0.1
// (or uses CHAT_TEST_REDIS_URL) and returns its URL.
func startRedis(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("CHAT_TEST_REDIS_URL"); u != "" {
		return u
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "redis://" + addr + "/0"
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFanoutAcrossTwoNodes runs a fanout and a dm over a two-node cluster:
// clients alternate between the nodes, so every channel and every pair
// spans both, and every message must cross Redis to half its receivers.
func TestFanoutAcrossTwoNodes(t *testing.T) {
	redisURL := startRedis(t)
	prefix := fmt.Sprintf("chatbench-test-%d:", time.Now().UnixNano())
	env := []string{"CHAT_REDIS_URL=" + redisURL, "CHAT_REDIS_PREFIX=" + prefix, "CHAT_RATE_LIMIT=10000"}
	a := startChatd(t, append(env, "CHAT_NODE_ID=a")...)
	b := startChatd(t, append(env, "CHAT_NODE_ID=b")...)

	cfg := testConfig(t, "fanout", a, b)
	cfg.RateLimit = 10000
	res := runTest(t, cfg)
	checkPhase(t, res.Phase, 11)
	checkNoErrors(t, res)

	cfg = testConfig(t, "dm", a, b)
	cfg.RateLimit = 10000
	res = runTest(t, cfg)
	checkPhase(t, res.Phase, 2)
	checkNoErrors(t, res)
}
