package main

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wirechat/chat/gateway"
)

// config is everything chatd reads from its environment. Only this file
// reads environment variables, each through the table of settings.go.
type config struct {
	Addr            string
	LoopbackOnly    bool // Addr is loopback because dev login is on and CHAT_ADDR is not set
	RedisURL        string
	RedisPrefix     string
	NodeID          string
	DevLogin        bool
	PublicURL       *url.URL
	AllowedOrigins  []string
	ShutdownTimeout time.Duration
	SessionTTL      time.Duration
	LoginRateLimit  int
	MaxLogins       int
	IdentityKey     string
	MaxFrameBytes   int
	MaxMessageBytes int
	MaxSessions     int
	MaxConnections  int
	HistoryLimit    int
	HistoryTTL      time.Duration
	PresenceMax     int
	RateLimit       float64
	SendQueue       int
	PingInterval    time.Duration
	WriteTimeout    time.Duration
	WriteDelay      time.Duration
	LogFormat       string
	LogLevel        string
	MetricsAddr     string
	DebugAddr       string

	GitHubClientID, GitHubClientSecret, GitHubURL, GitHubAPIURL string
	GoogleClientID, GoogleClientSecret                          string
	OIDCIssuer, OIDCClientID, OIDCClientSecret, OIDCName        string
}

// env reads variables through getenv, with the defaults of the settings
// table, and collects every bad value, so that one start reports them all.
type env struct {
	getenv   func(string) string
	defaults map[string]string
	errs     []string
}

func newEnv(getenv func(string) string) *env {
	e := &env{getenv: getenv, defaults: map[string]string{}}
	for _, s := range settings() {
		e.defaults[s.name] = s.def
	}
	return e
}

// set reports whether the variable has a value of its own.
func (e *env) set(name string) bool {
	return strings.TrimSpace(e.getenv(name)) != ""
}

// str is the variable's value, or its default. A name that is not in the
// settings table is a mistake in this file, not in the environment.
func (e *env) str(name string) string {
	def, ok := e.defaults[name]
	if !ok {
		panic("chatd: " + name + " is not in the settings table (settings.go)")
	}
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

func (e *env) fail(name, v, why string) {
	e.errs = append(e.errs, fmt.Sprintf("%s=%q: %s", name, v, why))
}

func (e *env) boolean(name string) bool {
	v := e.str(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, v, "not a boolean (true or false)")
	}
	return b
}

func (e *env) integer(name string) int {
	v := e.str(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		e.fail(name, v, "not a non-negative integer")
	}
	return n
}

// positive is an integer that must be at least 1.
func (e *env) positive(name string) int {
	n := e.integer(name)
	if n == 0 {
		e.fail(name, "0", "must be at least 1")
	}
	return n
}

func (e *env) number(name string) float64 {
	v := e.str(name)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		e.fail(name, v, "not a positive number")
	}
	return f
}

func (e *env) duration(name string) time.Duration {
	v := e.str(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.fail(name, v, "not a positive duration such as 10s or 720h")
	}
	return d
}

// optionalDuration is a positive duration, or 0 when the variable is empty.
func (e *env) optionalDuration(name string) time.Duration {
	if e.str(name) == "" {
		return 0
	}
	return e.duration(name)
}

// delay is a duration of at most max that also accepts 0, which turns the
// delay off.
func (e *env) delay(name string, max time.Duration) time.Duration {
	v := e.str(name)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > max {
		e.fail(name, v, fmt.Sprintf("not a duration from 0 to %v, such as 10ms", max))
	}
	return d
}

func (e *env) oneOf(name string, allowed ...string) string {
	v := strings.ToLower(e.str(name))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.fail(name, v, "must be one of "+strings.Join(allowed, ", "))
	return v
}

// pair reads a provider's client id and secret: both or neither.
func (e *env) pair(idName, secretName string) (string, string) {
	id, secret := e.str(idName), e.str(secretName)
	if (id == "") != (secret == "") {
		e.errs = append(e.errs, fmt.Sprintf("%s and %s must be set together", idName, secretName))
	}
	return id, secret
}

// loadConfig reads the configuration. The error names every bad variable.
func loadConfig(getenv func(string) string) (config, error) {
	e := newEnv(getenv)
	c := config{
		Addr:            e.str("CHAT_ADDR"),
		RedisURL:        e.str("CHAT_REDIS_URL"),
		RedisPrefix:     e.str("CHAT_REDIS_PREFIX"),
		NodeID:          e.str("CHAT_NODE_ID"),
		DevLogin:        e.boolean("CHAT_DEV_LOGIN"),
		ShutdownTimeout: e.duration("CHAT_SHUTDOWN_TIMEOUT"),
		SessionTTL:      e.duration("CHAT_SESSION_TTL"),
		LoginRateLimit:  e.integer("CHAT_LOGIN_RATE_LIMIT"),
		MaxLogins:       e.positive("CHAT_MAX_LOGINS_PER_USER"),
		IdentityKey:     e.str("CHAT_IDENTITY_KEY"),
		MaxFrameBytes:   e.positive("CHAT_MAX_FRAME_BYTES"),
		MaxMessageBytes: e.positive("CHAT_MAX_MESSAGE_BYTES"),
		MaxSessions:     e.positive("CHAT_MAX_SESSIONS_PER_USER"),
		MaxConnections:  e.integer("CHAT_MAX_CONNECTIONS"),
		HistoryLimit:    e.positive("CHAT_HISTORY_LIMIT"),
		HistoryTTL:      e.optionalDuration("CHAT_HISTORY_TTL"),
		PresenceMax:     e.positive("CHAT_PRESENCE_MAX_MEMBERS"),
		RateLimit:       e.number("CHAT_RATE_LIMIT"),
		SendQueue:       e.positive("CHAT_SEND_QUEUE"),
		PingInterval:    e.duration("CHAT_PING_INTERVAL"),
		WriteTimeout:    e.duration("CHAT_WRITE_TIMEOUT"),
		WriteDelay:      e.delay("CHAT_WRITE_DELAY", gateway.MaxWriteDelay),
		LogFormat:       e.oneOf("CHAT_LOG_FORMAT", "text", "json"),
		LogLevel:        e.oneOf("CHAT_LOG_LEVEL", "debug", "info", "warn", "error"),
		MetricsAddr:     e.str("CHAT_METRICS_ADDR"),
		DebugAddr:       e.str("CHAT_DEBUG_ADDR"),
		GitHubURL:       e.str("CHAT_GITHUB_URL"),
		GitHubAPIURL:    e.str("CHAT_GITHUB_API_URL"),
		OIDCIssuer:      e.str("CHAT_OIDC_ISSUER"),
		OIDCName:        e.str("CHAT_OIDC_NAME"),
	}
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	// Passwordless login on every interface is one typo from a public chat
	// anyone can join as anyone: unless told where, listen on loopback.
	if c.DevLogin && !e.set("CHAT_ADDR") {
		c.Addr, c.LoopbackOnly = devLoginAddr, true
	}
	c.GitHubClientID, c.GitHubClientSecret = e.pair("CHAT_GITHUB_CLIENT_ID", "CHAT_GITHUB_CLIENT_SECRET")
	c.GoogleClientID, c.GoogleClientSecret = e.pair("CHAT_GOOGLE_CLIENT_ID", "CHAT_GOOGLE_CLIENT_SECRET")
	c.OIDCClientID, c.OIDCClientSecret = e.pair("CHAT_OIDC_CLIENT_ID", "CHAT_OIDC_CLIENT_SECRET")
	if (c.OIDCClientID != "") != (c.OIDCIssuer != "") {
		e.errs = append(e.errs, "CHAT_OIDC_ISSUER and CHAT_OIDC_CLIENT_ID must be set together")
	}

	if n := len(c.IdentityKey); n > 0 && n < 16 { // a secret: never echo it
		e.errs = append(e.errs, "CHAT_IDENTITY_KEY is too short: use 16 random characters or more, e.g. openssl rand -hex 32")
	}

	public := e.str("CHAT_PUBLIC_URL")
	if u, err := url.Parse(public); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.fail("CHAT_PUBLIC_URL", public, "not an http(s) URL")
	} else {
		c.PublicURL = u
	}
	if c.RedisURL != "" {
		scheme, _, _ := strings.Cut(c.RedisURL, "://")
		switch scheme {
		case "redis", "rediss", "unix":
			if _, err := url.Parse(c.RedisURL); err != nil {
				e.fail("CHAT_REDIS_URL", c.RedisURL, "not a redis://, rediss:// or unix:// URL")
			}
		case "redis+cluster", "rediss+cluster":
			// A hash tag in the prefix would put every key in one slot.
			if strings.ContainsAny(c.RedisPrefix, "{}") {
				e.fail("CHAT_REDIS_PREFIX", c.RedisPrefix, "braces choose a Redis Cluster's hash slot: leave them out")
			}
		default:
			e.fail("CHAT_REDIS_URL", c.RedisURL, "not a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL")
		}
	}
	for _, o := range strings.Split(e.str("CHAT_ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	for _, u := range []struct{ name, v string }{{"CHAT_GITHUB_URL", c.GitHubURL}, {"CHAT_GITHUB_API_URL", c.GitHubAPIURL}, {"CHAT_OIDC_ISSUER", c.OIDCIssuer}} {
		if u.v == "" {
			continue
		}
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			e.fail(u.name, u.v, "not an http(s) URL")
		}
	}
	if len(e.errs) > 0 {
		return config{}, fmt.Errorf("bad configuration:\n  %s", strings.Join(e.errs, "\n  "))
	}
	return c, nil
}

// isToolSetting reports whether name belongs to one of the project's own
// tools, the test suite (CHAT_TEST_REDIS_URL) or scripts/bench
// (CHAT_BENCH_ONLY): those share chatd's prefix and the environment of the
// chatd processes the tools start, and chatd neither reads them nor warns
// about them.
func isToolSetting(name string) bool {
	return strings.HasPrefix(name, "CHAT_TEST_") || strings.HasPrefix(name, "CHAT_BENCH_")
}

// unknownSetting is a CHAT_ variable that chatd does not read.
type unknownSetting struct {
	name string
	near string // the setting it is probably a misspelling of, or ""
}

// unknownSettings returns the CHAT_ variables of environ (NAME=value
// entries, as os.Environ gives them) that are not in the settings table,
// sorted by name.
func unknownSettings(environ []string) []unknownSetting {
	known := map[string]bool{}
	for _, s := range settings() {
		known[s.name] = true
	}
	var unknown []unknownSetting
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "CHAT_") || isToolSetting(name) || known[name] {
			continue
		}
		u := unknownSetting{name: name}
		best := 3 // more edits than this is another word, not a typo
		for _, s := range settings() {
			if d := editDistance(name, s.name); d < best {
				best, u.near = d, s.name
			}
		}
		unknown = append(unknown, u)
	}
	slices.SortFunc(unknown, func(a, b unknownSetting) int { return strings.Compare(a.name, b.name) })
	return unknown
}

// editDistance is the Levenshtein distance of two ASCII names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
