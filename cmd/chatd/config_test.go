package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.RedisURL != "" || c.RedisPrefix != "chat:" || c.DevLogin ||
		c.PublicURL.String() != "http://localhost:8080" || c.ShutdownTimeout != 10*time.Second ||
		c.SessionTTL != 720*time.Hour || c.MaxFrameBytes != 16384 || c.MaxMessageBytes != 4096 ||
		c.MaxSessions != 20 || c.MaxConnections != 0 || c.RateLimit != 20 || c.SendQueue != 256 || c.WriteDelay != 20*time.Millisecond ||
		c.LoginRateLimit != 30 || c.MaxLogins != 20 || c.IdentityKey != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := map[string]map[string]string{
		"CHAT_SHUTDOWN_TIMEOUT":      {"CHAT_SHUTDOWN_TIMEOUT": "soon"},
		"CHAT_SESSION_TTL":           {"CHAT_SESSION_TTL": "-1h"},
		"CHAT_MAX_CONNECTIONS":       {"CHAT_MAX_CONNECTIONS": "-5"},
		"CHAT_MAX_FRAME_BYTES":       {"CHAT_MAX_FRAME_BYTES": "0"},
		"CHAT_RATE_LIMIT":            {"CHAT_RATE_LIMIT": "fast"},
		"CHAT_DEV_LOGIN":             {"CHAT_DEV_LOGIN": "yes please"},
		"CHAT_PUBLIC_URL":            {"CHAT_PUBLIC_URL": "::not a url"},
		"CHAT_REDIS_URL":             {"CHAT_REDIS_URL": "http://redis"},
		"CHAT_GITHUB_CLIENT_SECRET":  {"CHAT_GITHUB_CLIENT_ID": "id"},
		"CHAT_GOOGLE_CLIENT_SECRET":  {"CHAT_GOOGLE_CLIENT_ID": "id"},
		"CHAT_OIDC_ISSUER":           {"CHAT_OIDC_CLIENT_ID": "id", "CHAT_OIDC_CLIENT_SECRET": "s"},
		"CHAT_LOG_FORMAT":            {"CHAT_LOG_FORMAT": "xml"},
		"CHAT_MAX_SESSIONS_PER_USER": {"CHAT_MAX_SESSIONS_PER_USER": "many"},
		"CHAT_WRITE_DELAY":           {"CHAT_WRITE_DELAY": "-1ms"},
		"CHAT_LOGIN_RATE_LIMIT":      {"CHAT_LOGIN_RATE_LIMIT": "-1"},
		"CHAT_MAX_LOGINS_PER_USER":   {"CHAT_MAX_LOGINS_PER_USER": "0"},
		"CHAT_IDENTITY_KEY":          {"CHAT_IDENTITY_KEY": "hunter2"},
	}
	for name, env := range cases {
		_, err := loadConfig(envOf(env))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v does not name %s", env, err, name)
		}
	}
}

// TestConfigWriteDelay: the write delay accepts 0 (off), unlike the
// timeouts, and is bounded by gateway.MaxWriteDelay.
func TestConfigWriteDelay(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": 0, "0s": 0, "10ms": 10 * time.Millisecond} {
		c, err := loadConfig(envOf(map[string]string{"CHAT_WRITE_DELAY": v}))
		if err != nil || c.WriteDelay != want {
			t.Errorf("CHAT_WRITE_DELAY=%s: %v, %v; want %v", v, c.WriteDelay, err, want)
		}
	}
	if _, err := loadConfig(envOf(map[string]string{"CHAT_WRITE_DELAY": "2s"})); err == nil ||
		!strings.Contains(err.Error(), "CHAT_WRITE_DELAY") {
		t.Errorf("CHAT_WRITE_DELAY=2s (over the 1s bound): error %v", err)
	}
}

// TestJSONLogs: CHAT_LOG_FORMAT=json writes one JSON object a line, with
// the level and the node.
func TestJSONLogs(t *testing.T) {
	cfg, err := loadConfig(envOf(map[string]string{"CHAT_LOG_FORMAT": "json", "CHAT_LOG_LEVEL": "debug", "CHAT_NODE_ID": "n7"}))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	newLogger(cfg, f).With("node", cfg.NodeID).Debug("hello", "k", 1)
	f.Close()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(b, &line); err != nil {
		t.Fatalf("not one JSON object: %s", b)
	}
	if line["level"] != "DEBUG" || line["msg"] != "hello" || line["node"] != "n7" {
		t.Fatalf("log line %v", line)
	}
}

// A bad secret is named, never shown.
func TestConfigIdentityKeyNotEchoed(t *testing.T) {
	_, err := loadConfig(envOf(map[string]string{"CHAT_IDENTITY_KEY": "hunter2"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want one that does not show the key", err)
	}
}
