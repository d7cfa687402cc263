package pubsub

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// History is where messages are kept (spec section 5). Every message is
// stored in a log, its target's: a channel's ("#go"), or the conversation
// of two users (Conversation). A log numbers its messages from 1, one more
// for each, and the numbering goes on when a channel is destroyed and
// created again. Storing is part of publishing (Registry.PublishMessage
// and PublishDirect): a message is stored if and only if it is published.
//
// A log keeps its newest HistoryOptions.Limit messages and, with a TTL,
// none older than that; destroying a channel deletes its messages. The
// store has an epoch, which changes only when it lost its data (Redis came
// back empty; in memory, every start): seqs of one epoch mean nothing in
// another.
type History interface {
	// Range returns stored messages of log, as q asks, in increasing seq.
	Range(ctx context.Context, log string, q Query) (Page, error)

	// Latest returns the newest seq stored in each of logs (0: none).
	// Many logs cost one round trip.
	Latest(ctx context.Context, logs ...string) ([]uint64, error)

	// Last returns the last seq given in each of logs (0: none), whether
	// its message is still stored or not: where the numbering stands.
	// Many logs cost one round trip.
	Last(ctx context.Context, logs ...string) ([]uint64, error)

	// Epoch names the store, minting a name if it has none.
	Epoch(ctx context.Context) (string, error)
}

// HistoryOptions are a backend's retention. A zero field means its default.
type HistoryOptions struct {
	// Limit is how many messages each log keeps, the newest. If zero,
	// DefaultHistoryLimit.
	Limit int

	// TTL, if set, is how long a message is kept at most.
	TTL time.Duration
}

// DefaultHistoryLimit is the messages a log keeps by default.
const DefaultHistoryLimit = 10000

// IdempotencyWindow is how long a message request's id is remembered: a
// message with the same sender, log and id within it is not stored or
// published again (spec 5: idempotent sends).
const IdempotencyWindow = 5 * time.Minute

// RecentConversations is how many of a user's conversations a View lists:
// the most recently active, in either direction.
const RecentConversations = 100

// Conversation returns the log of the private conversation of the users
// a and b (their UUIDs): the same for both.
func Conversation(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

// Query asks History.Range for a page of a log: the newest messages (the
// zero Query), those just older than Before, or those just newer than
// After (with FromAfter set; After may be 0).
type Query struct {
	Before    uint64
	After     uint64
	FromAfter bool
	Limit     int // at least 1
}

// Page is what History.Range found.
type Page struct {
	// First is the oldest seq still stored in the log: its newest seq
	// plus one when none is (0 plus one for a log never written).
	First uint64
	// Messages are the stored frames, in increasing seq.
	Messages []Entry
	// More says whether more stored messages lie beyond Messages in the
	// direction asked (older for Before and the newest, newer for After).
	More bool
}

// Entry is one stored message.
type Entry struct {
	Seq   uint64
	Frame []byte
}

// Message is a message to store and publish in one step.
type Message struct {
	// From is the sender's UUID.
	From string
	// ID is the request's id, "" for none. A message with an id is
	// stored and published at most once per sender, log and id within
	// IdempotencyWindow: a repeat returns the first one's seq.
	ID string
	// Head is the frame, without its closing brace: the stored frame is
	// Head, then `,"seq":N}` with the message's seq N.
	Head []byte
	// Topics are published on, in order; each payload is Prefix, the seq
	// in decimal, a newline, then the stored frame.
	Topics []string
	Prefix []byte
}

// frame is the stored frame of m with seq.
func (m Message) frame(seq uint64) []byte {
	b := make([]byte, 0, len(m.Head)+32)
	b = append(b, m.Head...)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '}')
}

// payload is what m publishes with seq.
func (m Message) payload(seq uint64, frame []byte) []byte {
	b := make([]byte, 0, len(m.Prefix)+24+len(frame))
	b = append(b, m.Prefix...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '\n')
	return append(b, frame...)
}

// Stored is the outcome of publishing a message.
type Stored struct {
	Seq uint64
	// Duplicate is set when the message repeated an earlier one's id: it
	// was neither stored nor published again, and Seq is the earlier's.
	Duplicate bool
}

// Peer is the other user of a private conversation.
type Peer struct {
	ID       string
	Username string
}

// View is what a user's new session is told (its welcome): memberships,
// recent conversations, the newest seq of each and the store's epoch.
type View struct {
	Joined []string // channels the user is a member of, sorted
	Owned  []string // channels the user owns, sorted
	// Peers are the user's RecentConversations most recently active
	// conversations, newest first.
	Peers []Peer
	// Latest is the newest seq stored of each of Joined and of the Peers'
	// conversations, by log; logs without messages are left out.
	Latest map[string]uint64
	// Last is the last seq given in each of those logs, by log (see
	// History.Last); logs never written are left out.
	Last map[string]uint64
	// Read is the user's read marker of each of those logs that has one,
	// by log.
	Read  map[string]uint64
	Epoch string
}

// ErrBadQuery means a History.Range query is out of range.
var ErrBadQuery = errors.New("pubsub: bad history query")

func (q Query) check() error {
	if q.Limit < 1 || q.FromAfter && q.Before != 0 {
		return ErrBadQuery
	}
	return nil
}
