package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wirechat/chat/gateway"
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
		c.LoginRateLimit != 30 || c.MaxLogins != 20 || c.IdentityKey != "" ||
		c.HistoryLimit != 10000 || c.HistoryTTL != 0 || c.PresenceMax != 1000 {
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
		"CHAT_HISTORY_LIMIT":         {"CHAT_HISTORY_LIMIT": "0"},
		"CHAT_HISTORY_TTL":           {"CHAT_HISTORY_TTL": "a month"},
		"CHAT_PRESENCE_MAX_MEMBERS":  {"CHAT_PRESENCE_MAX_MEMBERS": "-1"},
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

// TestSettingsTable: loadConfig reads every setting of the table and no
// other variable, so the table (and with it `chatd help`, the README and
// the unknown-variable warning) is complete.
func TestSettingsTable(t *testing.T) {
	read := map[string]bool{}
	if _, err := loadConfig(func(k string) string { read[k] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	table := map[string]bool{}
	for _, s := range settings() {
		if table[s.name] {
			t.Errorf("%s is twice in the table", s.name)
		}
		table[s.name] = true
		if !read[s.name] {
			t.Errorf("%s is in the table but loadConfig does not read it", s.name)
		}
		if !strings.HasPrefix(s.name, "CHAT_") || isToolSetting(s.name) {
			t.Errorf("%s: a setting is CHAT_ and not CHAT_TEST_ or CHAT_BENCH_", s.name)
		}
		if s.meaning == "" || strings.Contains(s.meaning, "|") || strings.Contains(s.meaning, "\n") {
			t.Errorf("%s: the meaning must be one line of a Markdown table: %q", s.name, s.meaning)
		}
	}
	for k := range read {
		if !table[k] {
			t.Errorf("loadConfig reads %s, which is not in the table", k)
		}
	}
	// The gateway's defaults are the gateway's constants, shown as chatd
	// parses them.
	c, err := loadConfig(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxFrameBytes != gateway.DefaultMaxFrameBytes || c.MaxMessageBytes != gateway.DefaultMaxMessageBytes ||
		c.MaxSessions != gateway.DefaultMaxSessionsPerUser || c.RateLimit != gateway.DefaultRateLimit ||
		c.SendQueue != gateway.DefaultSendQueue || c.PingInterval != gateway.DefaultPingInterval ||
		c.WriteTimeout != gateway.DefaultWriteTimeout || c.WriteDelay != gateway.DefaultWriteDelay {
		t.Errorf("the defaults are not the gateway's: %+v", c)
	}
}

// TestDefaultAddr: with dev login on and CHAT_ADDR unset, chatd listens on
// loopback only; an explicit CHAT_ADDR wins; without dev login the default
// is every interface.
func TestDefaultAddr(t *testing.T) {
	for _, tc := range []struct {
		env      map[string]string
		addr     string
		loopback bool
	}{
		{nil, ":8080", false},
		{map[string]string{"CHAT_DEV_LOGIN": "false"}, ":8080", false},
		{map[string]string{"CHAT_DEV_LOGIN": "true"}, "127.0.0.1:8080", true},
		{map[string]string{"CHAT_DEV_LOGIN": "true", "CHAT_ADDR": " "}, "127.0.0.1:8080", true},
		{map[string]string{"CHAT_DEV_LOGIN": "true", "CHAT_ADDR": ":8080"}, ":8080", false},
		{map[string]string{"CHAT_DEV_LOGIN": "true", "CHAT_ADDR": "0.0.0.0:9000"}, "0.0.0.0:9000", false},
		{map[string]string{"CHAT_ADDR": "127.0.0.1:9000"}, "127.0.0.1:9000", false},
	} {
		c, err := loadConfig(envOf(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		if c.Addr != tc.addr || c.LoopbackOnly != tc.loopback {
			t.Errorf("%v: addr %q (loopback only %v), want %q (%v)", tc.env, c.Addr, c.LoopbackOnly, tc.addr, tc.loopback)
		}
	}
}

// TestUnknownSettings: every CHAT_ variable that chatd does not read is
// found, with the setting it is a misspelling of when it is one; the test
// suite's CHAT_TEST_ and scripts/bench's CHAT_BENCH_ variables and other
// programs' variables are not.
func TestUnknownSettings(t *testing.T) {
	environ := []string{
		"HOME=/root", "CHAT_DEV_LOGON=true", "CHAT_ADDR=:8080", "CHAT_REDIS_ULR=redis://x",
		"CHAT_TEST_REDIS_URL=redis://127.0.0.1:6391/0", "CHAT_BENCH_ONLY=dm", "CHAT_COLOUR=blue", "CHAT_MAX_CONNECTIONS=", "CHATTY=1",
	}
	got := unknownSettings(environ)
	want := []unknownSetting{
		{name: "CHAT_COLOUR"},
		{name: "CHAT_DEV_LOGON", near: "CHAT_DEV_LOGIN"},
		{name: "CHAT_REDIS_ULR", near: "CHAT_REDIS_URL"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("unknown settings %+v, want %+v", got, want)
	}
	if got := unknownSettings(nil); len(got) != 0 {
		t.Errorf("an empty environment: %+v", got)
	}
}

// TestStartupWarnings: a misspelt variable and a chat without any login
// method are warned about at start; dev login is warned about as before.
func TestStartupWarnings(t *testing.T) {
	warnings := func(env map[string]string, providers int, environ ...string) string {
		t.Helper()
		cfg, err := loadConfig(envOf(env))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		startupWarnings(slog.New(slog.NewTextHandler(&buf, nil)), cfg, providers, environ)
		return buf.String()
	}
	out := warnings(nil, 0, "CHAT_DEV_LOGON=true")
	for _, want := range []string{"level=WARN", "var=CHAT_DEV_LOGON", "did_you_mean=CHAT_DEV_LOGIN", "no login method is configured", "docs/login.md"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the warnings:\n%s", want, out)
		}
	}
	if out := warnings(nil, 1); out != "" {
		t.Errorf("a provider and nothing unknown: warnings\n%s", out)
	}
	out = warnings(map[string]string{"CHAT_DEV_LOGIN": "true"}, 0)
	if !strings.Contains(out, "dev login is on") || strings.Contains(out, "no login method") {
		t.Errorf("dev login on: warnings\n%s", out)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"", "ab", 2}, {"CHAT_DEV_LOGON", "CHAT_DEV_LOGIN", 1}, {"kitten", "sitting", 3}, {"ab", "ba", 2}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// A bad secret is named, never shown.
func TestConfigIdentityKeyNotEchoed(t *testing.T) {
	_, err := loadConfig(envOf(map[string]string{"CHAT_IDENTITY_KEY": "hunter2"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want one that does not show the key", err)
	}
}
