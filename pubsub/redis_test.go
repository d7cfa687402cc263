package pubsub_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
	"github.com/wirechat/chat/pubsub/pubsubtest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// newRedis opens a Redis backend for t on url under prefix, closed when t
// ends.
func newRedis(t testing.TB, url, prefix string, h pubsub.Handler, mod func(*pubsub.RedisOptions)) *pubsub.Redis {
	t.Helper()
	opts := pubsub.RedisOptions{
		URL:     url,
		Prefix:  prefix,
		NodeID:  t.Name(),
		Handler: h,
		Logger:  testLogger(t),
	}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := pubsub.NewRedis(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func TestRedisBroker(t *testing.T) {
	pubsubtest.RunBroker(t, pubsubtest.BrokerFactory{
		Cluster: func(t *testing.T) func(pubsub.Handler) pubsub.Broker {
			url, prefix := redistest.URL(t)
			return func(h pubsub.Handler) pubsub.Broker { return newRedis(t, url, prefix, h, nil) }
		},
	})
}

func TestRedisRegistry(t *testing.T) {
	pubsubtest.RunRegistry(t, pubsubtest.RegistryFactory{
		Cluster: func(t *testing.T) func() pubsub.Registry {
			url, prefix := redistest.URL(t)
			return func() pubsub.Registry { return newRedis(t, url, prefix, nil, nil) }
		},
		Close: func(r pubsub.Registry) error { return r.(*pubsub.Redis).Close() },
	})
}

// BenchmarkRedisPublish measures publishes from many goroutines at once,
// which the broker sends to Redis in pipelines.
func BenchmarkRedisPublish(b *testing.B) {
	url, prefix := redistest.URL(b)
	r := newRedis(b, url, prefix, nil, nil)
	payload := []byte(`{"type":"message","emitter":"participant","target":"#bench","message":"hello"}`)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := r.Publish(ctx, "c:#bench", payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
