// Package chatclient is the Go client of the chat server (docs/protocol.md):
// for bots, integrations, load tests and front ends. It does the parts that
// every client needs and that are easy to get wrong:
//
//   - login: a session token, or the server's dev login;
//   - requests that return when the server has answered: Create, Destroy,
//     Join, Leave, Send (the message's seq), History, Members, Typing and
//     Read; a refusal is an *Error carrying the protocol's code, which
//     errors.Is matches with ErrNotFound and its siblings;
//   - one ordered stream of what happens (Updates): messages, events, and
//     the connection's ups and downs;
//   - reconnecting by itself, to any of the nodes it was given, with
//     jittered exponential backoff, when a node shuts down (close 1001),
//     dies or cannot be reached; it stops for good only when reconnecting
//     would not help: logged out (1000), closed by the server's policy
//     (1008: too slow, or the session expired), a token refused (401);
//   - resume: after a reconnect each conversation carries on where the
//     caller left it, read back from the server's history, so the caller
//     sees each message once, in order;
//   - messages that are not lost and not doubled by a failure (below).
//
// The package lives in the folder client and is named chatclient, so that
// it leaves the name client to programs (chatbench and the gateway's tests
// have types of that name):
//
//	import chatclient "github.com/wirechat/chat/client"
//
// # Connecting
//
//	c, err := chatclient.Dial(ctx, []string{"https://chat.example.com"}, chatclient.Options{Token: token})
//	if err != nil { ... }
//	defer c.Close()
//	for u := range c.Updates() {
//		if m := u.Message; m != nil {
//			fmt.Printf("%s %s: %s\n", m.Conversation, m.Username, m.Text)
//		}
//	}
//
// Membership belongs to the user on the server, so a reconnect joins
// nothing again: the new connection's welcome lists the channels, and
// their messages flow.
//
// # Messages once and in order
//
// Every message of a conversation (a channel, or the private conversation
// of two users, which the client names "@" and the other user's name, as
// Message.Conversation does) carries a seq: 1, 2, 3 ... The client hands on
// each conversation's messages in seq order, each once. It follows a
// conversation from the first connection's welcome (Welcome.Latest: the
// newest seq of each joined channel and of the 100 most recent
// conversations) or from its first message; what came before is for
// History. A message that arrives with a gap before it is held while the
// missing ones are read from history. After a reconnect, every conversation
// whose newest seq moved while the client was away is read back the same
// way, after a Connected update and before anything newer of that
// conversation. Messages that the server no longer stores (its retention
// trimmed them while the client was away) are reported as a Gap. When the
// server's history store lost its data (a new epoch), the positions mean
// nothing, and the client follows every conversation anew
// (Connected.NewEpoch).
//
// A conversation that the client starts following while connected has a
// position before its first message arrives, so that a reconnect in
// between loses nothing: a channel the user joins, from the channel's
// newest seq (read from history right after the user's own join event; a
// message stored within that round trip, and lost with the connection
// before it arrived, is the one thing it can miss); a conversation the
// user writes to, from the seq before its message (the ack says).
//
// What resume cannot know: a conversation that the client never followed
// and that got messages while it was away (someone's first private
// message) is followed from the reconnect on; Connected.Unseen names
// them, so that a caller can read their history.
//
// # Requests across failures
//
// Every request carries an id, unique for the user (a random prefix per
// Client), because the server takes a repeated id as a retry. A request
// made while the client is reconnecting waits for the next connection (or
// for its ctx). When a connection breaks before a request's answer came:
//
//   - a message is sent again on the next connection with the same id: if
//     the first one was stored, the server answers with its seq and does
//     not deliver it again; so Send returns one seq, and every member sees
//     the message once;
//   - join, history, members, typing and read are sent again: doing them
//     twice is doing them once;
//   - create, destroy and leave fail with ErrInterrupted: whether they took
//     effect is unknown, and doing them again would not say.
//
// A message refused as unavailable (the server's backend is down) is tried
// again with the same id, with backoff, until it is stored or its ctx ends.
// Every other refusal is returned at once.
//
// # Concurrency
//
// A Client's methods may be called from any goroutine, also from the one
// that reads Updates: the client reads the connection on a goroutine of
// its own, and never waits for the caller to take an update (they queue,
// in memory, until taken). Requests are written in the order they are
// made; a user's requests take effect in that order.
//
// The package imports the protocol's types and coder/websocket, nothing
// of the server.
package chatclient
