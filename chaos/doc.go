// Package chaos holds the chaos check of the cluster (issue 17): a test,
// and nothing else. TestChaos runs three real chatd processes on one
// redis-server of its own (append-only file on, so a restart keeps the
// data), each node's Redis link through a toxiproxy of the test. Many
// clients of its own (a minimal client that records exactly what arrived)
// send channel messages, private messages, joins and leaves, some users
// with sessions on two nodes, while the test injects faults at seeded
// random moments: a node killed (SIGKILL), a node drained (SIGTERM), Redis
// killed and restarted, every pub/sub connection killed (CLIENT KILL TYPE
// pubsub), and a node's Redis link blackholed. Clients reconnect with
// backoff, resume from history (spec section 5) and resend what was not
// acknowledged, with the same id.
//
// Then a checker proves, from what every client received and from Redis,
// that every acknowledged message reached every member connected
// throughout exactly once and in seq order, that every device that
// reconnected holds it once it resumed, that one seq is one message for
// everyone, that a sender's messages keep its order, that memberships in
// Redis are what the acks said, and that history holds every acknowledged
// message once, and no refused one.
//
// Settings (environment):
//
//	CHAT_TEST_CHAOS_SEED      the seed of the fault schedule and of the load
//	                          (printed by every run; default: a random one)
//	CHAT_TEST_CHAOS_DURATION  how long faults are injected (default 40s: the
//	                          short run of CI; e.g. 10m for a soak)
//
// Every violation fails the run: the check tolerates no known bug.
//
// The seed fixes which faults come when, on which node and for how long,
// and what each client sends; the interleaving of the processes is the
// machine's, so a replay repeats the schedule, not every race. With the
// race detector on (go test -race), the chatd nodes are built with it too,
// and a race report of a node fails the test.
package chaos
