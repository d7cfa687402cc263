package chatclient

import (
	crand "crypto/rand"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"
)

// backoff is the wait before try n (from 0) of a run of failed tries:
// "equal jitter", a random time between half and all of
// min(lo*2^n, hi), so that the clients of a node that went away do not
// all come back at once, and none waits less than half its share.
func backoff(n int, lo, hi time.Duration, random func() float64) time.Duration {
	ceil := hi
	if n < 30 && lo<<n < hi && lo<<n > 0 {
		ceil = lo << n
	}
	return ceil/2 + time.Duration(random()*float64(ceil/2))
}

// jitter is the random source of backoff.
func jitter() float64 { return rand.Float64() }

// ids makes request ids that are unique for the user, not only for the
// connection or the Client: the server takes a message with an id it has
// seen from the user (to the same target, within five minutes) for a retry
// and does not deliver it again (docs/protocol.md, reading 14). So every
// Client draws a random prefix of 80 bits, and counts after it.
type ids struct {
	prefix string // immutable
	n      atomic.Uint64
}

func newIDs() *ids { return &ids{prefix: crand16()} }

// next returns a fresh id, "<prefix>.<n>": at most 38 characters.
func (s *ids) next() string { return s.prefix + "." + strconv.FormatUint(s.n.Add(1), 36) }

// crand16 is 16 random base-32 characters (80 bits).
func crand16() string { return crand.Text()[:16] }
