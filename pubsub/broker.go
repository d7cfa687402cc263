// Package pubsub holds the contracts between a chatd node and the state it
// shares with the other nodes of a cluster, and their implementations:
// memory (one process, the embedded default) and Redis (a cluster).
//
// Two contracts: a Broker moves bytes between nodes on named topics, and a
// Registry keeps the shared state (channels, owners, memberships and the
// places that count a user's open sessions). Both are safe for concurrent
// use. Neither knows anything about websockets or the wire protocol: the
// gateway decides what a topic means and what a payload holds.
package pubsub

import (
	"context"
	"errors"
)

// Handler receives every payload published on a topic that the node is
// subscribed to. A Broker calls it with a topic's payloads from one
// goroutine, in the order in which they were published (for payloads
// published from different nodes: the order in which the backend received
// them), so every node sees a topic's payloads in the same order. Memory
// and a single Redis call it from one goroutine for all topics; a Redis
// Cluster from one per shard, so payloads of different topics may be
// handled at once, and in another order than they were published.
//
// Handler must not block: it hands the payload on and returns. It must not
// modify payload, and may keep it: each payload is given to the handler
// alone.
type Handler func(topic string, payload []byte)

// Backend is a node's whole connection to what it shares with the other
// nodes: one value is the Broker, the Registry and the History, so that a
// change of the registry and the payload that announces it (a notice, a
// stored message) can be one atomic step. Memory and Redis are Backends.
type Backend interface {
	Broker
	Registry
	History
}

// Broker is a node's connection to the cluster's pub/sub.
//
// Delivery is at most once: a payload published while a node's connection
// to the backend is down is lost for that node (see docs/cluster.md for what a
// client can miss). A node receives a payload only if it was subscribed to
// the topic when the backend processed the publish.
//
// Subscriptions are per node, not per caller: the gateway's router counts
// its local users of a topic and subscribes once.
type Broker interface {
	// Publish sends payload to every node subscribed to topic, this one
	// included. It returns once the backend has accepted the payload. The
	// caller must not modify payload afterwards.
	Publish(ctx context.Context, topic string, payload []byte) error

	// PublishAll is Publish to each of topics (distinct names), in that
	// order and in one atomic step: no other publish comes between them,
	// and either all of them happen or none does. (On a Redis Cluster,
	// only topics of one hash slot are one step; others are published one
	// after the other.) A private message uses
	// it, so that the recipient's copy and the sender's go out together;
	// the gateway also sends one notice to many users' topics with it.
	PublishAll(ctx context.Context, topics []string, payload []byte) error

	// Subscribe starts delivery of topic to the Handler. It returns only
	// once the backend has confirmed the subscription, so that a payload
	// published by any node after Subscribe returns reaches this node.
	// Subscribing to a topic twice is the same as once.
	Subscribe(ctx context.Context, topic string) error

	// Unsubscribe stops delivery of topic. Payloads already on their way
	// may still arrive.
	Unsubscribe(ctx context.Context, topic string) error

	// Subscribers reports, for each of topics, how many nodes are
	// subscribed to it, this one included: how many would receive a
	// payload published now. The gateway uses it to know how many nodes
	// must answer a control notice, and how many hold a user's sessions.
	// Many topics cost one round trip.
	Subscribers(ctx context.Context, topics ...string) ([]int, error)

	// Healthy reports whether the node's pub/sub path works end to end.
	// For a backend that can fail independently of its caller (Redis), a
	// failing heartbeat makes it false.
	Healthy() bool

	// Outages counts the times the node's pub/sub path has gone down
	// since the broker started. What was published meanwhile may be lost
	// for this node; a changed count tells the caller to look for what it
	// missed, even if Healthy is true again by the time it looks.
	Outages() uint64

	// Close stops delivery and releases the broker's connections. Calls
	// after Close return ErrClosed.
	Close() error
}

// Errors shared by every implementation. Implementations wrap them, so test
// with errors.Is.
var (
	// ErrClosed is returned by calls on a closed Broker or Registry.
	ErrClosed = errors.New("pubsub: closed")

	// ErrUnavailable means the backend could not be reached or did not
	// answer in time; the call had no effect.
	ErrUnavailable = errors.New("pubsub: backend unavailable")
)
