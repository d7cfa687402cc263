package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/gateway"
)

// config is everything chatd reads from its environment. Only this file
// reads environment variables; README.md lists each with its default.
type config struct {
	Addr            string
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
	RateLimit       float64
	SendQueue       int
	PingInterval    time.Duration
	WriteTimeout    time.Duration
	WriteDelay      time.Duration
	LogFormat       string
	LogLevel        string
	DebugAddr       string

	GitHubClientID, GitHubClientSecret, GitHubURL, GitHubAPIURL string
	GoogleClientID, GoogleClientSecret                          string
	OIDCIssuer, OIDCClientID, OIDCClientSecret, OIDCName        string
}

// env reads variables through getenv and collects every bad value, so that
// one start reports them all.
type env struct {
	getenv func(string) string
	errs   []string
}

func (e *env) str(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

func (e *env) fail(name, v, why string) {
	e.errs = append(e.errs, fmt.Sprintf("%s=%q: %s", name, v, why))
}

func (e *env) boolean(name string, def bool) bool {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, v, "not a boolean (true or false)")
	}
	return b
}

func (e *env) integer(name string, def int) int {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		e.fail(name, v, "not a non-negative integer")
	}
	return n
}

// positive is an integer that must be at least 1.
func (e *env) positive(name string, def int) int {
	n := e.integer(name, def)
	if n == 0 && e.str(name, "") != "" {
		e.fail(name, "0", "must be at least 1")
	}
	return n
}

func (e *env) number(name string, def float64) float64 {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		e.fail(name, v, "not a positive number")
	}
	return f
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.fail(name, v, "not a positive duration such as 10s or 720h")
	}
	return d
}

// delay is a duration of at most max that also accepts 0, which turns the
// delay off.
func (e *env) delay(name string, def, max time.Duration) time.Duration {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > max {
		e.fail(name, v, fmt.Sprintf("not a duration from 0 to %v, such as 10ms", max))
	}
	return d
}

func (e *env) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(e.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.fail(name, v, "must be one of "+strings.Join(allowed, ", "))
	return def
}

// pair reads a provider's client id and secret: both or neither.
func (e *env) pair(idName, secretName string) (string, string) {
	id, secret := e.str(idName, ""), e.str(secretName, "")
	if (id == "") != (secret == "") {
		e.errs = append(e.errs, fmt.Sprintf("%s and %s must be set together", idName, secretName))
	}
	return id, secret
}

// loadConfig reads the configuration. The error names every bad variable.
func loadConfig(getenv func(string) string) (config, error) {
	e := &env{getenv: getenv}
	hostname, _ := os.Hostname()
	c := config{
		Addr:            e.str("CHAT_ADDR", ":8080"),
		RedisURL:        e.str("CHAT_REDIS_URL", ""),
		RedisPrefix:     e.str("CHAT_REDIS_PREFIX", "chat:"),
		NodeID:          e.str("CHAT_NODE_ID", hostname),
		DevLogin:        e.boolean("CHAT_DEV_LOGIN", false),
		ShutdownTimeout: e.duration("CHAT_SHUTDOWN_TIMEOUT", 10*time.Second),
		SessionTTL:      e.duration("CHAT_SESSION_TTL", 720*time.Hour),
		LoginRateLimit:  e.integer("CHAT_LOGIN_RATE_LIMIT", auth.DefaultLoginRateLimit),
		MaxLogins:       e.positive("CHAT_MAX_LOGINS_PER_USER", auth.DefaultMaxLoginsPerUser),
		IdentityKey:     e.str("CHAT_IDENTITY_KEY", ""),
		MaxFrameBytes:   e.positive("CHAT_MAX_FRAME_BYTES", gateway.DefaultMaxFrameBytes),
		MaxMessageBytes: e.positive("CHAT_MAX_MESSAGE_BYTES", gateway.DefaultMaxMessageBytes),
		MaxSessions:     e.positive("CHAT_MAX_SESSIONS_PER_USER", gateway.DefaultMaxSessionsPerUser),
		MaxConnections:  e.integer("CHAT_MAX_CONNECTIONS", 0),
		RateLimit:       e.number("CHAT_RATE_LIMIT", gateway.DefaultRateLimit),
		SendQueue:       e.positive("CHAT_SEND_QUEUE", gateway.DefaultSendQueue),
		PingInterval:    e.duration("CHAT_PING_INTERVAL", gateway.DefaultPingInterval),
		WriteTimeout:    e.duration("CHAT_WRITE_TIMEOUT", gateway.DefaultWriteTimeout),
		WriteDelay:      e.delay("CHAT_WRITE_DELAY", gateway.DefaultWriteDelay, gateway.MaxWriteDelay),
		LogFormat:       e.oneOf("CHAT_LOG_FORMAT", "text", "text", "json"),
		LogLevel:        e.oneOf("CHAT_LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		DebugAddr:       e.str("CHAT_DEBUG_ADDR", ""),
		GitHubURL:       e.str("CHAT_GITHUB_URL", "https://github.com"),
		GitHubAPIURL:    e.str("CHAT_GITHUB_API_URL", "https://api.github.com"),
		OIDCIssuer:      e.str("CHAT_OIDC_ISSUER", ""),
		OIDCName:        e.str("CHAT_OIDC_NAME", "oidc"),
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

	public := e.str("CHAT_PUBLIC_URL", "http://localhost:8080")
	if u, err := url.Parse(public); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.fail("CHAT_PUBLIC_URL", public, "not an http(s) URL")
	} else {
		c.PublicURL = u
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			e.fail("CHAT_REDIS_URL", c.RedisURL, "not a redis://, rediss:// or unix:// URL")
		}
	}
	for _, o := range strings.Split(e.str("CHAT_ALLOWED_ORIGINS", ""), ",") {
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
