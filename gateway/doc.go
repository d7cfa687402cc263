// Package gateway terminates the chat's websockets: it authenticates the
// upgrade, runs one Session per connection, carries out the protocol's
// requests against the shared state (pubsub.Backend), and fans out what
// arrives from the cluster to the local sessions that need it.
//
// # Who owns what
//
// The hot path, top to bottom: a Session's reader reads a frame and hands
// it to chat (handle.go), which charges the rate limit (limits), decodes
// and checks the request and carries it out on the backend, in one atomic
// step with what it publishes. The broker delivers what the node is
// subscribed to to the inbox, which passes frames to the router and
// notices to their owners; the router writes each frame to the outbox of
// every local session on the topic; the session's writer sends it.
//
//	Server        HTTP: admits upgrades (admit), opens sessions, drains
//	Session       one websocket: its reader, its writer, its close
//	outbox        a session's queued frames and its writer role
//	pacer         when a session's writer waits (Config.WriteDelay)
//	frameConn     the socket under a session, written in batches
//	chat          carries out requests; writes welcomes (welcome.go)
//	membership    create, destroy, join, leave, and when each is acked
//	waits         requests waiting for the cluster's signals
//	limits        the rate limit of each local user, and who is shared
//	router        topic -> local sessions; the fan-out
//	subscriptions the node's broker subscriptions, kept in step
//	inbox         deliveries: frames to the router, notices to owners
//	notice        the notices nodes send each other (codec)
//	channelBook   which channels the node's sessions were told exist
//	resyncer      repairs what an outage of the pub/sub path made missed
//	housekeeper   session places, login checks, shared-user recounts
//	sessionSet    the node's open sessions
//
// # Topics
//
// The gateway gives the broker's topics their meaning:
//
//	cluster       create and destroy; every node subscribes for its life
//	c:#name       one chat channel: messages, join and left events
//	u:<uuid>      one user: private messages and notices to its sessions
//	n:<uuid>      one node: answers to the join notices it sent
//
// A payload that starts with '{' is a wire frame, written as it is to every
// local session on the topic; one that starts with '!' is a notice
// (notice.go).
//
// # Concurrency
//
// Each Session's reader handles its requests one at a time, so a user's
// requests on one connection take effect in order. Only the holder of a
// session's writer role writes to its socket (outbox.go); everyone else
// queues frames without blocking, and a full queue closes that session
// with 1008 and leaves everyone else untouched. The broker calls the inbox
// from one goroutine per connection, in publish order.
//
// Lock order (a lock may be taken while holding those before it, never
// the reverse):
//
//	channelBook.mu -> router.mu -> Session.closeOnce -> outbox.mu
//	subscriptions.locks[i] -> router.mu
//	subscriptions.locks[i] -> subscriptions.mu
//	subscriptions.locks[i] -> feed.mu -> router.mu
//	sequencer.mu -> router.mu
//	frameConn.mu is taken last, by the writer role and the websocket
//	library. subscriptions.mu, sessionSet.mu, limits.mu and waits.mu are
//	leaves: nothing else is taken while one is held. A feed's mu (one
//	topic's delivery, sequencer.go) is held while its frames go out and
//	while a leave that waited in it takes effect (departure.go).
package gateway
