package pubsub_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

func TestRedisHistory(t *testing.T) {
	pubsubtest.RunHistory(t, pubsubtest.BackendFactory{
		Cluster: func(t *testing.T, h pubsub.HistoryOptions) (func(pubsub.Handler) pubsub.Backend, func()) {
			url, prefix := redistest.URL(t)
			open := func(handler pubsub.Handler) pubsub.Backend {
				return newRedis(t, url, prefix, handler, func(o *pubsub.RedisOptions) { o.History = h })
			}
			return open, func() { wipePrefix(t, url, prefix) }
		},
	})
}

// wipePrefix deletes every key under prefix, as a Redis that came back
// without its data has none.
func wipePrefix(t *testing.T, url, prefix string) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := t.Context()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
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

// TestRedisIdempotencyWindow: a message id is kept in Redis for
// IdempotencyWindow, so that it lapses there on Redis's clock.
func TestRedisIdempotencyWindow(t *testing.T) {
	url, prefix := redistest.URL(t)
	r := newRedis(t, url, prefix, nil, nil)
	ctx := t.Context()
	const user = "00000000-0000-4000-8000-00000000000a"
	if err := r.CreateChannel(ctx, "#w", user, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Join(ctx, "#w", pubsub.Peer{ID: user, Username: "u" + user[len(user)-3:]}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PublishMessage(ctx, "#w", pubsub.Message{From: user, ID: "a", Head: []byte("{")}); err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ttl, err := c.PTTL(ctx, prefix+"{c:#w}:idem:"+user+":a").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= pubsub.IdempotencyWindow-10*time.Second || ttl > pubsub.IdempotencyWindow {
		t.Fatalf("the id lapses in %v, want about %v", ttl, pubsub.IdempotencyWindow)
	}
}

// TestRedisMigratesRosters: channels whose members were recorded by
// version 1 (a set of UUIDs, no roster) list them by name once a node has
// started.
func TestRedisMigratesRosters(t *testing.T) {
	url, prefix := redistest.URL(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := t.Context()
	const a, b = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
	c.SAdd(ctx, prefix+"channels", "#old")
	c.HSet(ctx, prefix+"owner", "#old", a)
	c.SAdd(ctx, prefix+"members:#old", a, b)
	c.HSet(ctx, prefix+"user:"+a, "id", a, "username", "alice")
	c.HSet(ctx, prefix+"user:"+b, "id", b, "username", "bob")
	r := newRedis(t, url, prefix, nil, nil)
	members, _, err := r.Members(ctx, "#old", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[0].Username != "alice" || members[1].Username != "bob" {
		t.Fatalf("members of a version 1 channel: %+v", members)
	}
	// Leaving works on migrated members.
	if err := r.Leave(ctx, "#old", a, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	if members, _, _ := r.Members(ctx, "#old", "", 10); len(members) != 1 {
		t.Fatalf("after alice left: %+v", members)
	}
}

// TestRedisMessageAfterScriptFlush: a message's script is sent by its
// hash; a Redis that forgot its scripts (restarted, or SCRIPT FLUSH)
// answers NOSCRIPT, and the message is stored all the same, once. The
// Redis is the test's own: a flush would reach other tests.
func TestRedisMessageAfterScriptFlush(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := newRedis(t, srv.URL, "flush:", nil, nil)
	ctx := t.Context()
	const user = "00000000-0000-4000-8000-00000000000a"
	if err := r.CreateChannel(ctx, "#f", user, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Join(ctx, "#f", pubsub.Peer{ID: user, Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	for i, id := range []string{"a", "b", "b"} {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		st, err := r.PublishMessage(ctx, "#f", pubsub.Message{From: user, ID: id, Head: []byte("{")})
		if err != nil {
			t.Fatalf("message %d after SCRIPT FLUSH: %v", i+1, err)
		}
		if want := min(uint64(i+1), 2); st.Seq != want || st.Duplicate != (i == 2) {
			t.Fatalf("message %d: %+v, want seq %d", i+1, st, want)
		}
	}
}
