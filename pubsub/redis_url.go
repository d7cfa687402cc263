package pubsub

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient connects to the Redis that url names, tuned as the backend
// relies on (TuneOptions): redis://, rediss:// (TLS) or unix:// for a
// single Redis (redis.ParseURL's syntax), or redis+cluster:// and
// rediss+cluster:// for a Redis Cluster, with any reachable members,
// comma-separated (the others are discovered):
//
//	redis+cluster://[user:password@]host1:6379,host2:6379/
//
// A timeout of zero means 1 s.
func NewClient(rawURL string, timeout time.Duration) (redis.UniversalClient, error) {
	if timeout <= 0 {
		timeout = time.Second
	}
	scheme, _, _ := strings.Cut(rawURL, "://")
	switch scheme {
	case "redis+cluster", "rediss+cluster":
		o, err := parseClusterURL(rawURL)
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled = true
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = timeout, timeout, timeout, timeout
		o.MaxRetries = -1
		// A MOVED or ASK answer is followed, which is no retry of a
		// script that ran: Redis refused it without running it.
		o.MaxRedirects = 8
		// go-redis reads the slot table again on a MOVED answer, which a
		// dead primary never gives, and otherwise once a minute; the
		// backend also has it read again whenever its own reading sees a
		// change (subscriber.adopt).
		o.ClusterStateReloadInterval = slotsEvery
		return redis.NewClusterClient(o), nil
	default:
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, err
		}
		TuneOptions(o, timeout)
		return redis.NewClient(o), nil
	}
}

// parseClusterURL reads redis+cluster://[user:password@]host:port,.../
func parseClusterURL(rawURL string) (*redis.ClusterOptions, error) {
	scheme, rest, _ := strings.Cut(rawURL, "://")
	o := &redis.ClusterOptions{}
	if scheme == "rediss+cluster" {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		u, err := url.Parse("redis://" + rest[:at] + "@x")
		if err != nil {
			return nil, fmt.Errorf("pubsub: %s: bad credentials", scheme)
		}
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
		rest = rest[at+1:]
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if path != "" && path != "0" {
		return nil, fmt.Errorf("pubsub: %s: a Redis Cluster has only database 0", scheme)
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			if !strings.Contains(h, ":") {
				h += ":6379"
			}
			o.Addrs = append(o.Addrs, h)
		}
	}
	if len(o.Addrs) == 0 {
		return nil, fmt.Errorf("pubsub: %s: no host", scheme)
	}
	if o.TLSConfig != nil {
		host, _, _ := strings.Cut(o.Addrs[0], ":")
		o.TLSConfig.ServerName = host
	}
	return o, nil
}
