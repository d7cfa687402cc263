// Package gateway terminates the chat's websockets: it authenticates the
// upgrade, runs one Session per connection, handles the protocol's commands
// and messages against the shared state (pubsub.Registry), and fans out what
// arrives from the cluster (pubsub.Broker) to the local sessions that need
// it.
//
// # Topics
//
// The gateway gives the broker's topics their meaning:
//
//	cluster       create and destroy events; every node subscribes
//	c:#name       one chat channel: messages, join and left events
//	u:<uuid>      one user: private messages and control notices
//	n:<random>    one node: answers to the join notices it sent
//
// A payload that starts with '{' is a wire frame: it is written as is to
// every local session subscribed to the topic. A payload that starts with
// '!' is a control notice (router.go) that changes which local sessions
// receive which topic; it may carry a frame after its first line.
//
// # Concurrency
//
// Each Session has two goroutines. The reader (the HTTP handler's
// goroutine) reads frames and handles requests one at a time, so a user's
// requests on one connection take effect in order. The writer is the only
// goroutine that writes data frames to the socket; everyone else hands it
// frames through send, which never blocks: a full queue closes the session
// with 1008 (the client cannot keep up) and leaves everyone else untouched.
//
// The router's topic table is guarded by router.mu. Broker subscriptions
// are changed under a per-topic shard lock (router.subMu), so that the
// first local subscriber subscribes and the last one to go unsubscribes,
// without holding router.mu across a network round trip.
//
// Lock order: router.subMu[i] before router.mu before Server.mu. A Session's
// closeOnce is taken under any of them and takes none.
package gateway
