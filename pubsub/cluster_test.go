package pubsub_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
	"github.com/wirechat/chat/pubsub/pubsubtest"
)

// The conformance suites, on a Redis Cluster of three primaries with a
// replica each (the binary's shared one; each test has a key prefix of
// its own).

func TestClusterBroker(t *testing.T) {
	pubsubtest.RunBroker(t, pubsubtest.BrokerFactory{
		Cluster: func(t *testing.T) func(pubsub.Handler) pubsub.Broker {
			url, prefix := redistest.ClusterURL(t)
			return func(h pubsub.Handler) pubsub.Broker { return newRedis(t, url, prefix, h, nil) }
		},
		Sharded: true,
	})
}

func TestClusterRegistry(t *testing.T) {
	pubsubtest.RunRegistry(t, pubsubtest.RegistryFactory{
		Cluster: func(t *testing.T) func() pubsub.Registry {
			url, prefix := redistest.ClusterURL(t)
			return func() pubsub.Registry { return newRedis(t, url, prefix, nil, nil) }
		},
		Close: func(r pubsub.Registry) error { return r.(*pubsub.Redis).Close() },
	})
}

func TestClusterHistory(t *testing.T) {
	pubsubtest.RunHistory(t, pubsubtest.BackendFactory{
		Cluster: func(t *testing.T, h pubsub.HistoryOptions) (func(pubsub.Handler) pubsub.Backend, func()) {
			url, prefix := redistest.ClusterURL(t)
			open := func(handler pubsub.Handler) pubsub.Backend {
				return newRedis(t, url, prefix, handler, func(o *pubsub.RedisOptions) { o.History = h })
			}
			return open, func() { wipeClusterPrefix(t, url, prefix) }
		},
	})
}

// wipeClusterPrefix deletes every key under prefix on every primary.
func wipeClusterPrefix(t *testing.T, url, prefix string) {
	t.Helper()
	c, err := pubsub.NewClient(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.(*redis.ClusterClient).ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error {
		iter := m.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := m.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}
