package auth

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/redistest"
)

// stateTestRedis returns a client of the tests' Redis (internal/redistest)
// and a key prefix of the test's own, whose keys are deleted when the test
// ends. No Redis is a failure, not a skip.
func stateTestRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	url, prefix := redistest.URL(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb, prefix
}

// stateDeadRedis returns a client of a Redis that is not there.
func stateDeadRedis(t *testing.T) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock"), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// stateStoreUnderTest is a StateStore and a way to make a key's TTL pass.
type stateStoreUnderTest struct {
	StateStore
	expire func(t *testing.T, key string)
}

// testStateStore is the StateStore conformance suite.
func testStateStore(t *testing.T, newStore func(t *testing.T) stateStoreUnderTest) {
	st := LoginState{Provider: "github", Verifier: "v", Nonce: "n", Binding: "b", Created: time.Now().Round(0)}

	t.Run("put and take once", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if err := s.Put(ctx, "k1", st, time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := s.Take(ctx, "k1")
		if err != nil || got.Provider != st.Provider || got.Verifier != st.Verifier || got.Nonce != st.Nonce ||
			got.Binding != st.Binding || !got.Created.Equal(st.Created) {
			t.Fatalf("Take = %+v, %v; want %+v", got, err, st)
		}
		if _, err := s.Take(ctx, "k1"); !errors.Is(err, ErrNoState) {
			t.Errorf("second Take: %v, want ErrNoState", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Take(t.Context(), "nope"); !errors.Is(err, ErrNoState) {
			t.Errorf("Take: %v, want ErrNoState", err)
		}
	})
	t.Run("key taken", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if err := s.Put(ctx, "k", st, time.Minute); err != nil {
			t.Fatal(err)
		}
		other := st
		other.Provider = "google"
		if err := s.Put(ctx, "k", other, time.Minute); err == nil {
			t.Error("a second Put of one key succeeded")
		}
		if got, err := s.Take(ctx, "k"); err != nil || got.Provider != "github" {
			t.Errorf("Take = %+v, %v; want the first state", got, err)
		}
	})
	t.Run("expires", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if err := s.Put(ctx, "k", st, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "keep", st, time.Minute); err != nil {
			t.Fatal(err)
		}
		s.expire(t, "k")
		if _, err := s.Take(ctx, "k"); !errors.Is(err, ErrNoState) {
			t.Errorf("Take after the TTL: %v, want ErrNoState", err)
		}
		if _, err := s.Take(ctx, "keep"); err != nil {
			t.Errorf("Take of an unexpired state: %v", err)
		}
	})
	t.Run("one of many concurrent takes wins", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		const keys, takers = 8, 16
		for k := range keys {
			if err := s.Put(ctx, fmt.Sprint("k", k), st, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		wins := make(map[string]int)
		var wg sync.WaitGroup
		for k := range keys {
			for range takers {
				wg.Go(func() {
					key := fmt.Sprint("k", k)
					_, err := s.Take(ctx, key)
					if err != nil && !errors.Is(err, ErrNoState) {
						t.Errorf("Take: %v", err)
					}
					if err == nil {
						mu.Lock()
						wins[key]++
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		for k := range keys {
			if n := wins[fmt.Sprint("k", k)]; n != 1 {
				t.Errorf("key k%d taken %d times, want once", k, n)
			}
		}
	})
}

func TestStateMemory(t *testing.T) {
	testStateStore(t, func(t *testing.T) stateStoreUnderTest {
		m := NewStateMemory(0)
		c := &testClock{}
		m.now = c.now
		return stateStoreUnderTest{m, func(t *testing.T, key string) { c.advance(time.Second) }}
	})
}

func TestStateMemoryFull(t *testing.T) {
	m := NewStateMemory(2)
	c := &testClock{}
	m.now = c.now
	ctx := t.Context()
	for _, k := range []string{"a", "b"} {
		if err := m.Put(ctx, k, LoginState{}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Put(ctx, "c", LoginState{}, time.Minute); !errors.Is(err, ErrStateFull) {
		t.Fatalf("Put beyond the maximum: %v, want ErrStateFull", err)
	}
	c.advance(2 * time.Minute) // a and b expire and make room
	if err := m.Put(ctx, "c", LoginState{}, time.Minute); err != nil {
		t.Fatalf("Put after expiry: %v", err)
	}
}

func TestStateRedis(t *testing.T) {
	testStateStore(t, func(t *testing.T) stateStoreUnderTest {
		rdb, prefix := stateTestRedis(t)
		return stateRedisUnderTest(rdb, prefix)
	})
}

// TestStateRedisCluster: each login state is one key, and Put and Take
// one command each, so the store needs no hash tags on Redis Cluster.
func TestStateRedisCluster(t *testing.T) {
	testStateStore(t, func(t *testing.T) stateStoreUnderTest {
		url, prefix := redistest.ClusterURL(t)
		return stateRedisUnderTest(clusterClient(t, url), prefix)
	})
}

// stateRedisUnderTest returns a StateRedis on rdb under prefix.
func stateRedisUnderTest(rdb redis.Cmdable, prefix string) stateStoreUnderTest {
	s := NewStateRedis(rdb, prefix)
	return stateStoreUnderTest{s, func(t *testing.T, key string) {
		// Wait for Redis to expire the key, without taking it.
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := rdb.Exists(t.Context(), s.prefix+key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("key %s never expired", key)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}}
}

func TestStateRedisKeys(t *testing.T) {
	rdb, prefix := stateTestRedis(t)
	s := NewStateRedis(rdb, prefix)
	ctx := t.Context()
	if err := s.Put(ctx, "k", LoginState{Provider: "github"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ttl, err := rdb.PTTL(ctx, prefix+"oauth:state:k").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("key %soauth:state:k has TTL %v, %v; want (0, 1m]", prefix, ttl, err)
	}
}

func TestStateRedisDown(t *testing.T) {
	s := NewStateRedis(stateDeadRedis(t), "x:")
	if err := s.Put(t.Context(), "k", LoginState{}, time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Put: %v, want ErrUnavailable", err)
	}
	if _, err := s.Take(t.Context(), "k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Take: %v, want ErrUnavailable", err)
	}
}
