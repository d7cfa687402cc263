package main

import (
	"strconv"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/pubsub"
)

// setting is one environment variable that chatd reads. The table of them
// is the one source of each name and default: loadConfig reads the
// variables through it, `chatd help` prints it, unknown CHAT_ variables are
// found with it, and a test holds the README's table to it.
type setting struct {
	name string
	// def is the value an unset or empty variable takes, in the variable's
	// own syntax ("" is empty).
	def string
	// shown is the default as people read it, where def does not say it
	// all; "" shows def.
	shown string
	// meaning is one line of Markdown, as the README's table shows it.
	meaning string
}

// Listen addresses: where dev login is on and CHAT_ADDR is not set, chatd
// listens on the loopback address only.
const (
	defaultAddr  = ":8080"
	devLoginAddr = "127.0.0.1" + defaultAddr
)

// settings returns the table of every setting, in the README's order.
func settings() []setting {
	return []setting{
		{"CHAT_ADDR", defaultAddr, "`" + defaultAddr + "`; `" + devLoginAddr + "` while `CHAT_DEV_LOGIN` is on",
			"listen address; set it (e.g. `:8080`) to serve other hosts with dev login on"},
		{"CHAT_REDIS_URL", "", "",
			"`redis://host:6379/0` (or `rediss://`): cluster mode on one Redis; `redis+cluster://host1:6379,host2:6379/` (or `rediss+cluster://`): on a Redis Cluster (docs/cluster.md). Empty: one node in memory"},
		{"CHAT_REDIS_PREFIX", "chat:", "",
			"prefix of every Redis key and pub/sub channel (docs/cluster.md)"},
		{"CHAT_NODE_ID", "", "host name",
			"this node's name in logs and metrics"},
		{"CHAT_DEV_LOGIN", "false", "",
			"enable `POST /auth/dev/login` (no password: local use, demos, tests, load tests)"},
		{"CHAT_PUBLIC_URL", "http://localhost:8080", "",
			"public base URL; OAuth redirect URIs are `{CHAT_PUBLIC_URL}/auth/{provider}/callback`; https makes the cookie `Secure`"},
		{"CHAT_ALLOWED_ORIGINS", "", "",
			"comma-separated host patterns (`*.example.com`) allowed to open cross-origin websockets; same origin always is"},
		{"CHAT_SHUTDOWN_TIMEOUT", "10s", "",
			"how long SIGTERM may take to drain"},
		{"CHAT_SESSION_TTL", "720h", "",
			"login session lifetime"},
		{"CHAT_IDENTITY_KEY", "", "",
			"secret (16 characters or more, e.g. `openssl rand -hex 32`) under which user identifiers are derived from accounts, so that an account keeps its identifier even if Redis loses its data; set it once and never change it. Empty: identifiers are as stable but the same as in any deployment without a key (docs/login.md)"},
		{"CHAT_MAX_LOGINS_PER_USER", strconv.Itoa(auth.DefaultMaxLoginsPerUser), "",
			"login sessions one user may hold; a login past it revokes the user's oldest sessions and closes their websockets, as logout does"},
		{"CHAT_LOGIN_RATE_LIMIT", strconv.Itoa(auth.DefaultLoginRateLimit), "",
			"logins per minute from one client address (0: no limit), at once or spread out; more get HTTP 429. Dev login counts one, a social login two (start and callback). The address is the TCP peer's: behind a reverse proxy all logins count against the proxy (docs/login.md)"},
		{"CHAT_MAX_FRAME_BYTES", strconv.Itoa(gateway.DefaultMaxFrameBytes), "",
			"largest client frame; larger closes with 1009"},
		{"CHAT_MAX_MESSAGE_BYTES", strconv.Itoa(gateway.DefaultMaxMessageBytes), "",
			"longest message text"},
		{"CHAT_MAX_SESSIONS_PER_USER", strconv.Itoa(gateway.DefaultMaxSessionsPerUser), "",
			"open websockets per user across the cluster; one more gets HTTP 429"},
		{"CHAT_MAX_CONNECTIONS", "0", "",
			"websockets per node (0: no limit); one more gets HTTP 503"},
		{"CHAT_RATE_LIMIT", strconv.FormatFloat(gateway.DefaultRateLimit, 'f', -1, 64), "",
			"requests per second per user, across the cluster (burst twice that)"},
		{"CHAT_SEND_QUEUE", strconv.Itoa(gateway.DefaultSendQueue), "",
			"frames queued for a client before it is closed with 1008"},
		{"CHAT_PING_INTERVAL", gateway.DefaultPingInterval.String(), "",
			"websocket ping interval; a peer silent for one interval is dropped"},
		{"CHAT_WRITE_TIMEOUT", gateway.DefaultWriteTimeout.String(), "",
			"bound on one socket write"},
		{"CHAT_WRITE_DELAY", gateway.DefaultWriteDelay.String(), "",
			"least time between two writes to a websocket that is busy (more than two frames per delay) and behind (its writes already carry several frames: the node cannot write each on its own); frames queued meanwhile share one write. Connections that keep up are written to at once. `0` writes every frame as soon as it can, whatever the load; at most `" +
				gateway.MaxWriteDelay.String() + "` (docs/performance.md)"},
		{"CHAT_HISTORY_LIMIT", strconv.Itoa(pubsub.DefaultHistoryLimit), "",
			"messages each channel and private conversation keeps, the newest (docs/operations.md has what they cost in Redis)"},
		{"CHAT_HISTORY_TTL", "", "none",
			"if set (e.g. `720h`), no message is kept longer than that; empty: messages stay until the limit pushes them out"},
		{"CHAT_PRESENCE_MAX_MEMBERS", strconv.Itoa(gateway.DefaultPresenceMaxMembers), "",
			"channels with more members get no online and offline events (their clients ask `members`)"},
		{"CHAT_LOG_FORMAT", "text", "",
			"`text` or `json`"},
		{"CHAT_LOG_LEVEL", "info", "",
			"`debug`, `info`, `warn` or `error`"},
		{"CHAT_METRICS_ADDR", "", "",
			"if set (e.g. `127.0.0.1:9090`, or `:9090` inside a cluster network), serve `/metrics` only there, and answer it 404 on `CHAT_ADDR`; empty: `/metrics` on `CHAT_ADDR`"},
		{"CHAT_DEBUG_ADDR", "", "",
			"if set (e.g. `127.0.0.1:6060`), serve Go's profiler (`/debug/pprof/`) there; never on a public address"},
		{"CHAT_GITHUB_CLIENT_ID", "", "",
			"GitHub login: the OAuth app's client id (docs/login.md); with its secret, enables GitHub login"},
		{"CHAT_GITHUB_CLIENT_SECRET", "", "",
			"GitHub login: the OAuth app's client secret"},
		{"CHAT_GITHUB_URL", "https://github.com", "",
			"GitHub Enterprise Server: its URL"},
		{"CHAT_GITHUB_API_URL", "https://api.github.com", "",
			"GitHub Enterprise Server: its API URL (`https://HOST/api/v3`)"},
		{"CHAT_GOOGLE_CLIENT_ID", "", "",
			"Google login: the OAuth client id (docs/login.md); with its secret, enables Google login"},
		{"CHAT_GOOGLE_CLIENT_SECRET", "", "",
			"Google login: the OAuth client secret"},
		{"CHAT_OIDC_ISSUER", "", "",
			"login with any OpenID Connect issuer: its issuer URL (docs/login.md)"},
		{"CHAT_OIDC_CLIENT_ID", "", "",
			"OpenID Connect: the client id; with the issuer and the secret, enables that login"},
		{"CHAT_OIDC_CLIENT_SECRET", "", "",
			"OpenID Connect: the client secret"},
		{"CHAT_OIDC_NAME", "oidc", "",
			"OpenID Connect: the provider's name in URLs and on the login button"},
	}
}

// defaultCell is the default as the README's table and `chatd help` show it.
func (s setting) defaultCell() string {
	switch {
	case s.shown != "":
		return s.shown
	case s.def == "":
		return "empty"
	default:
		return "`" + s.def + "`"
	}
}
