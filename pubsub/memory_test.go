package pubsub_test

import (
	"testing"

	"github.com/wirechat/chat/pubsub"
	"github.com/wirechat/chat/pubsub/pubsubtest"
)

func TestMemoryBroker(t *testing.T) {
	pubsubtest.RunBroker(t, pubsubtest.BrokerFactory{
		SingleNode: true,
		Cluster: func(t *testing.T) func(pubsub.Handler) pubsub.Broker {
			return func(h pubsub.Handler) pubsub.Broker {
				m := pubsub.NewMemory(h)
				t.Cleanup(func() { m.Close() })
				return m
			}
		},
	})
}

func TestMemoryRegistry(t *testing.T) {
	pubsubtest.RunRegistry(t, pubsubtest.RegistryFactory{
		Cluster: func(t *testing.T) func() pubsub.Registry {
			m := pubsub.NewMemory(nil)
			return func() pubsub.Registry { return m }
		},
		Close: func(r pubsub.Registry) error { return r.(*pubsub.Memory).Close() },
	})
}
