package gateway_test

// Nodes on a Redis Cluster (spec section 8): sharded pub/sub, a key
// layout by hash slot, and what failovers and slot migrations do to them.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
)

// startRedisCluster starts n nodes that share the test binary's Redis
// Cluster (three primaries with a replica each) under a prefix of t's own,
// and audits the shared state when t ends.
func startRedisCluster(t *testing.T, n int, cfg gateway.Config) []*node {
	t.Helper()
	url, prefix := redistest.ClusterURL(t)
	t.Cleanup(func() { audit(t, url, prefix) }) // after the nodes stop
	return startNodes(t, n, cfg, func() backend { return clusterBackend(t, url, prefix) })
}

// clusterBackend is the backend of a node on the Redis Cluster at url:
// the registry, the broker and the logins on one cluster client.
func clusterBackend(t *testing.T, url, prefix string) backend {
	t.Helper()
	client, err := pubsub.NewClient(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return backend{
		connect: func(h pubsub.Handler) (pubsub.Backend, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return pubsub.NewRedis(ctx, pubsub.RedisOptions{
				Client:  client,
				Prefix:  prefix,
				NodeID:  fmt.Sprintf("node-%p", h),
				Handler: h,
				Logger:  testLogger(t),
			})
		},
		store: auth.NewRedis(client, auth.RedisOptions{Prefix: prefix}),
	}
}

// audit checks the invariants of the state under prefix (pubsub.Audit):
// memberships the same from both sides, no key outliving its channel.
func audit(t *testing.T, url, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := pubsub.NewRedis(ctx, pubsub.RedisOptions{URL: url, Prefix: prefix, NodeID: "audit"})
	if err != nil {
		t.Errorf("audit: %v", err)
		return
	}
	defer r.Close()
	problems, err := r.Audit(ctx)
	if err != nil {
		t.Errorf("audit: %v", err)
	}
	for _, p := range problems {
		t.Errorf("audit: %s", p)
	}
}
