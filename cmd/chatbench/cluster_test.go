package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
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

// startPair starts two nodes on one Redis, under a key prefix of their
// own that is deleted afterwards.
func startPair(t *testing.T) (a, b *server) {
	t.Helper()
	redisURL := startRedis(t)
	prefix := fmt.Sprintf("chatbench-test-%d:", time.Now().UnixNano())
	t.Cleanup(func() { deleteKeys(t, redisURL, prefix) })
	env := []string{"CHAT_REDIS_URL=" + redisURL, "CHAT_REDIS_PREFIX=" + prefix, "CHAT_RATE_LIMIT=10000"}
	return startChatd(t, append(env, "CHAT_NODE_ID=a")...), startChatd(t, append(env, "CHAT_NODE_ID=b")...)
}

// TestFanoutAcrossTwoNodes runs a fanout and a dm over a two-node cluster:
// clients alternate between the nodes, so every channel and every pair
// spans both, and every message must cross Redis to half its receivers.
func TestFanoutAcrossTwoNodes(t *testing.T) {
	a, b := startPair(t)

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

// deleteKeys removes the test's keys from a Redis that outlives it (one
// given by CHAT_TEST_REDIS_URL); the throwaway server needs nothing.
func deleteKeys(t *testing.T, redisURL, prefix string) {
	if os.Getenv("CHAT_TEST_REDIS_URL") == "" {
		return
	}
	out, err := exec.Command("redis-cli", "-u", redisURL, "--scan", "--pattern", prefix+"*").Output()
	if err != nil {
		t.Logf("listing the test's keys: %v", err)
		return
	}
	keys := strings.Fields(string(out))
	for len(keys) > 0 {
		n := min(len(keys), 500)
		args := append([]string{"-u", redisURL, "del"}, keys[:n]...)
		if err := exec.Command("redis-cli", args...).Run(); err != nil {
			t.Logf("deleting the test's keys: %v", err)
			return
		}
		keys = keys[n:]
	}
}
