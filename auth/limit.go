package auth

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Logins are limited per client address (issue 17, item 6): every login
// stores a session for 30 days, so a flood of them would fill the store.
// Each address has a token bucket that holds a minute's worth of logins
// and refills at that rate; a login attempt that finds it empty is refused
// with 429 and does not count. Every attempt counts: GET
// /auth/{provider}/login and /callback (so a social login takes two) and
// POST /auth/dev/login.
//
// The address is the TCP peer's (http.Request.RemoteAddr), never a header
// that a client can set: behind a reverse proxy every login comes from
// the proxy, and the limit becomes one for all of the proxy's clients
// together. IPv6 addresses count per /64, the block one host usually
// holds.

// maxLoginAddrs bounds the addresses a node keeps a bucket for. Past it
// (a flood from that many addresses within a minute), addresses without a
// bucket share one, so memory stays bounded and the store protected.
const maxLoginAddrs = 1 << 16

// loginLimiter keeps the buckets. It is safe for concurrent use.
type loginLimiter struct {
	perMinute int // immutable: the bucket's size, and its refill per minute

	mu       sync.Mutex
	addrs    map[string]*addrBucket // guarded by mu
	overflow *addrBucket            // guarded by mu; shared past maxLoginAddrs
	sweepAt  int                    // guarded by mu; sweep when addrs grows to this size
	swept    time.Time              // guarded by mu; when the last sweep was
}

type addrBucket struct {
	lim     *rate.Limiter
	refused bool // the last attempt was refused (logged once per run of refusals)
}

func newLoginLimiter(perMinute int) *loginLimiter {
	return &loginLimiter{
		perMinute: perMinute,
		addrs:     make(map[string]*addrBucket),
		overflow:  &addrBucket{lim: rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), perMinute)},
		sweepAt:   1024,
	}
}

// allow takes a login from addr's bucket at now. If the bucket is empty it
// takes nothing and returns how long until it holds one again, and
// whether this is the first refusal since addr's last allowed login.
func (l *loginLimiter) allow(addr string, now time.Time) (wait time.Duration, firstRefusal bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(addr, now)
	res := b.lim.ReserveN(now, 1)
	if wait = res.DelayFrom(now); wait > 0 {
		res.CancelAt(now)
		firstRefusal = !b.refused
		b.refused = true
		return wait, firstRefusal
	}
	b.refused = false
	return 0, false
}

func (l *loginLimiter) bucketLocked(addr string, now time.Time) *addrBucket {
	if b, ok := l.addrs[addr]; ok {
		return b
	}
	// A full table is swept at most once a minute, so that a flood from
	// many addresses cannot make every login pay for a sweep.
	if len(l.addrs) >= l.sweepAt || (len(l.addrs) >= maxLoginAddrs && now.Sub(l.swept) >= time.Minute) {
		l.sweepLocked(now)
	}
	if len(l.addrs) >= maxLoginAddrs {
		return l.overflow
	}
	b := &addrBucket{lim: rate.NewLimiter(l.overflow.lim.Limit(), l.perMinute)}
	l.addrs[addr] = b
	return b
}

// sweepLocked drops the buckets that are full again: a full bucket is the
// same as none.
func (l *loginLimiter) sweepLocked(now time.Time) {
	full := float64(l.perMinute)
	for addr, b := range l.addrs {
		if b.lim.TokensAt(now) >= full {
			delete(l.addrs, addr)
		}
	}
	l.sweepAt = max(1024, 2*len(l.addrs))
	l.swept = now
}

// clientAddr is the address r's login counts against: the TCP peer's IP,
// or for IPv6 its /64.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
