package chatclient

import (
	"log/slog"
	"net/http"
	"time"
)

// Options configure a Client. A zero field means its default.
type Options struct {
	// Token is a login session's token, sent with every upgrade as
	// "Authorization: Bearer <token>".
	Token string

	// Username, when Token is empty, logs in with the server's dev login
	// (POST /auth/dev/login; the server runs with CHAT_DEV_LOGIN=true),
	// and again if the server stops taking the token it got.
	Username string

	// HTTPClient makes the logins and the upgrades. If nil,
	// http.DefaultClient.
	HTTPClient *http.Client

	// Header is added to every upgrade request (an Origin, a proxy's
	// header).
	Header http.Header

	// Logger receives the client's lifecycle (Info), its retries (Warn)
	// and frames it skips (Debug). If nil, nothing is logged.
	Logger *slog.Logger

	// MinBackoff and MaxBackoff bound the wait before each try to
	// connect: the n-th try in a row waits a random time between half
	// and all of min(MinBackoff*2^n, MaxBackoff). If zero, 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration

	// DialTimeout bounds one try to connect, from the upgrade to the
	// welcome. If zero, 10s.
	DialTimeout time.Duration

	// WriteTimeout bounds the write of one frame; a write that takes
	// longer breaks the connection. If zero, 10s.
	WriteTimeout time.Duration

	// PingInterval is how often the client pings the server to find a
	// dead connection that the network did not report; a ping not
	// answered within the interval breaks the connection. If zero, 30s;
	// if negative, no pings.
	PingInterval time.Duration

	// MaxFrameBytes is the server's CHAT_MAX_FRAME_BYTES: a request that
	// would be larger fails with ErrTooLarge instead of being sent. If
	// zero, 16384, the server's default.
	MaxFrameBytes int
}

// Defaults of Options.
const (
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultDialTimeout   = 10 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
	DefaultPingInterval  = 30 * time.Second
	DefaultMaxFrameBytes = 16384
)

// withDefaults returns o with its zero fields set.
func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	return o
}
