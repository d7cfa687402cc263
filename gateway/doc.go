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
// Each Session has one goroutine of its own, the reader, started after the
// upgrade (the HTTP handler returns): it reads frames and handles requests
// one at a time, so a user's requests on one connection take effect in
// order. Writing is a role (Session.writing, under Session.qmu): whoever
// queues a frame for a session that nobody is writing to starts a writer
// goroutine, which sends each batch with one system call (frameConn) and
// exits when the queue is empty. With Config.WriteDelay, the writer of a
// connection that is busy and behind (Session.behind) keeps the role for
// the delay after each write (pause), so that what arrives meanwhile shares
// the next one; a queue half full and close end the pause early. Only the
// role holder writes data frames and only it performs the close handshake.
// Everyone else hands frames over
// through send, which never blocks: a full queue closes the session with
// 1008 (the client cannot keep up) and leaves everyone else untouched.
//
// The router's topic table is guarded by router.mu. Broker subscriptions
// are changed under a per-topic shard lock (router.subMu), so that the
// first local subscriber subscribes and the last one to go unsubscribes,
// without holding router.mu across a network round trip.
//
// The router keeps a book of the channels the node's sessions have been
// told exist (channelBook): welcomes list it, and the !create and !destroy
// notices keep it. When the node's pub/sub path comes back after an outage
// (the broker's outage count moved), the book is compared with the
// registry and the events missed meanwhile are sent (resync.go).
//
// Lock order: channelBook.mu before router.mu before Session.qmu;
// router.subMu[i] before router.mu; router.dirtyMu is taken alone or last;
// Server.mu alone. A Session's closeOnce is taken under router.mu (the
// fan-out closes slow consumers) and takes Session.qmu. frameConn.mu is
// taken last, by the writer and by the websocket library.
package gateway
