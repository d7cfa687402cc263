package pubsub_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wirechat/chat/pubsub"
	"github.com/wirechat/chat/pubsub/pubsubtest"
)

func TestMemoryBroker(t *testing.T) {
	pubsubtest.RunBroker(t, pubsubtest.BrokerFactory{
		SingleNode: true,
		Cluster: func(t *testing.T) func(pubsub.Handler) pubsub.Broker {
			return func(h pubsub.Handler) pubsub.Broker {
				m := pubsub.NewMemory(h, pubsub.HistoryOptions{})
				t.Cleanup(func() { m.Close() })
				return m
			}
		},
	})
}

func TestMemoryRegistry(t *testing.T) {
	pubsubtest.RunRegistry(t, pubsubtest.RegistryFactory{
		Cluster: func(t *testing.T) func() pubsub.Registry {
			m := pubsub.NewMemory(nil, pubsub.HistoryOptions{})
			return func() pubsub.Registry { return m }
		},
		Close: func(r pubsub.Registry) error { return r.(*pubsub.Memory).Close() },
	})
}

func TestMemoryHistory(t *testing.T) {
	pubsubtest.RunHistory(t, pubsubtest.BackendFactory{
		Cluster: func(t *testing.T, h pubsub.HistoryOptions) (func(pubsub.Handler) pubsub.Backend, func()) {
			var once *pubsub.Memory
			var mu sync.Mutex
			var handlers []pubsub.Handler
			return func(handler pubsub.Handler) pubsub.Backend {
				// One process: every "node" is the same backend, and
				// each gets what the backend delivers.
				mu.Lock()
				defer mu.Unlock()
				if handler != nil {
					handlers = append(handlers, handler)
				}
				if once == nil {
					once = pubsub.NewMemory(func(topic string, payload []byte) {
						mu.Lock()
						hs := slices.Clone(handlers)
						mu.Unlock()
						for _, h := range hs {
							h(topic, payload)
						}
					}, h)
					t.Cleanup(func() { once.Close() })
				}
				return once
			}, nil // a process's memory is not wiped: it starts anew
		},
	})
}

// BenchmarkMemorySweepPresence: one sweep of the presence of 20,000 users
// online, each with one place, as a node's once-a-second sweep does. It
// holds the store's lock, which every message also takes.
func BenchmarkMemorySweepPresence(b *testing.B) {
	m := pubsub.NewMemory(func(string, []byte) {}, pubsub.HistoryOptions{})
	defer m.Close()
	ctx := context.Background()
	for i := range 20000 {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		if _, err := m.AcquirePlace(ctx, pubsub.Peer{ID: id, Username: fmt.Sprint("u", i)}, "conn", 20, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.SweepPresence(ctx, 1000); err != nil {
			b.Fatal(err)
		}
	}
}
