package auth_test

import (
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/auth/authtest"
	"github.com/wirechat/chat/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestMemoryStore(t *testing.T) {
	authtest.RunStore(t, func(t *testing.T) func() auth.Store {
		m := auth.NewMemory()
		return func() auth.Store { return m }
	})
}

func TestRedisStore(t *testing.T) {
	authtest.RunStore(t, func(t *testing.T) func() auth.Store {
		url, prefix := redistest.URL(t)
		return func() auth.Store {
			opts, err := redis.ParseURL(url)
			if err != nil {
				t.Fatal(err)
			}
			opts.ContextTimeoutEnabled = true
			opts.ReadTimeout, opts.WriteTimeout = time.Second, time.Second
			opts.MaxRetries = -1
			c := redis.NewClient(opts)
			t.Cleanup(func() { c.Close() })
			return auth.NewRedis(c, auth.RedisOptions{Prefix: prefix})
		}
	})
}

func TestRedisClusterStore(t *testing.T) {
	authtest.RunStore(t, func(t *testing.T) func() auth.Store {
		url, prefix := redistest.ClusterURL(t)
		return func() auth.Store {
			return auth.NewRedis(auth.ClusterClient(t, url), auth.RedisOptions{Prefix: prefix})
		}
	})
}
