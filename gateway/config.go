package gateway

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Defaults of Config, in one place: New applies them to zero fields, and
// cmd/chatd shows them as the defaults of its settings.
const (
	DefaultMaxFrameBytes      = 16384
	DefaultMaxMessageBytes    = 4096
	DefaultMaxSessionsPerUser = 20
	DefaultRateLimit          = 20
	DefaultSendQueue          = 256
	DefaultPingInterval       = 20 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultPlaceTTL           = 45 * time.Second
	DefaultPresenceMaxMembers = 1000
	DefaultPresenceGrace      = 15 * time.Second

	// DefaultWriteDelay is the write delay that chatd runs with unless
	// told otherwise. Config's zero WriteDelay is no delay.
	DefaultWriteDelay = 20 * time.Millisecond

	// MaxWriteDelay bounds Config.WriteDelay: longer would not batch more,
	// only hold frames back, and the send queue would have to hold a
	// second of a busy connection's frames.
	MaxWriteDelay = time.Second
)

// Config configures a Server. A zero field means its default.
type Config struct {
	// NodeID names this node in logs. If empty, a random id.
	NodeID string

	// MaxFrameBytes is the largest frame a client may send; a larger one
	// closes the connection with 1009. If zero, DefaultMaxFrameBytes.
	MaxFrameBytes int64

	// MaxMessageBytes is the longest message text. If zero,
	// DefaultMaxMessageBytes.
	MaxMessageBytes int

	// MaxSessionsPerUser bounds a user's open websockets across the
	// cluster; one more upgrade gets HTTP 429. If zero,
	// DefaultMaxSessionsPerUser.
	MaxSessionsPerUser int

	// MaxConnections bounds this node's websockets; one more upgrade gets
	// HTTP 503. If zero, no limit.
	MaxConnections int

	// RateLimit is how many requests per second a user may send, with a
	// burst of twice that, across the cluster (ratelimit.go). If zero,
	// DefaultRateLimit.
	RateLimit float64

	// SendQueue is how many frames may wait for a slow client before it is
	// closed with 1008. If zero, DefaultSendQueue.
	SendQueue int

	// PingInterval is how often a peer is pinged; one that does not answer
	// within the interval is dropped. If zero, DefaultPingInterval.
	PingInterval time.Duration

	// WriteTimeout bounds a write to one socket. If zero,
	// DefaultWriteTimeout.
	WriteTimeout time.Duration

	// WriteDelay (at most MaxWriteDelay) is the least time between two
	// writes to a socket that is busy and behind (pacer.go says when that
	// is); frames queued meanwhile go out together in one system call.
	// Every other socket is written at once. Zero writes whenever a frame
	// is queued and no write is in progress.
	WriteDelay time.Duration

	// AllowedOrigins are host patterns (path.Match syntax, e.g.
	// "*.example.com") from which cross-origin upgrades are allowed.
	// Same-origin upgrades and requests without Origin always are.
	AllowedOrigins []string

	// PlaceTTL is how long a session's place (spec: sessions per user)
	// outlives a node that died without freeing it. If zero,
	// DefaultPlaceTTL.
	PlaceTTL time.Duration

	// PresenceMaxMembers is the size of the largest channel that gets
	// online and offline events. If zero, DefaultPresenceMaxMembers.
	PresenceMaxMembers int

	// PresenceGrace is how long a user stays online after its last
	// websocket closed (spec 6: 15 s). If zero, DefaultPresenceGrace.
	PresenceGrace time.Duration
}

// withDefaults returns c with every zero field set to its default, or an
// error naming a field out of range.
func (c Config) withDefaults() (Config, error) {
	if c.WriteDelay < 0 || c.WriteDelay > MaxWriteDelay {
		return c, fmt.Errorf("gateway: write delay %v is outside 0-%v", c.WriteDelay, MaxWriteDelay)
	}
	if c.NodeID == "" {
		c.NodeID = uuid.NewString()[:8]
	}
	setDefault(&c.MaxFrameBytes, DefaultMaxFrameBytes)
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.MaxSessionsPerUser, DefaultMaxSessionsPerUser)
	setDefault(&c.RateLimit, DefaultRateLimit)
	setDefault(&c.SendQueue, DefaultSendQueue)
	setDefault(&c.PingInterval, DefaultPingInterval)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.PlaceTTL, DefaultPlaceTTL)
	setDefault(&c.PresenceMaxMembers, DefaultPresenceMaxMembers)
	setDefault(&c.PresenceGrace, DefaultPresenceGrace)
	return c, nil
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}
