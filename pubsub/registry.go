package pubsub

import (
	"context"
	"errors"
	"time"
)

// Registry is the state that all nodes share: which channels exist, who owns
// them, who is a member of which, how many websockets each user holds open
// across the cluster (and so who is online), and where each user has read
// to.
//
// Every method that changes state is atomic in the backend: two nodes racing
// to create the same channel get exactly one success; destroying a channel
// removes it and every membership in one step. A method that returns an
// error changed nothing.
//
// On a Redis Cluster a change is atomic where it decides (the channel's
// hash slot: existence, owner, members, a message's membership check and
// store), and what is derived from it elsewhere (a user's list of
// channels, the channel listing, a notice on another slot's topic)
// follows in later steps, repaired if a node stops between them
// (docs/cluster.md). A method that returns an error made no change that
// decides; one that made it returns no error, even if a later step failed
// and is left to the repairs.
//
// Names are passed in their canonical form (lower case, with sigil for
// channels); users are identified by their UUID.
type Registry interface {
	// CreateChannel creates channel owned by owner and publishes n in the
	// same atomic step. ErrExists if the channel already exists.
	CreateChannel(ctx context.Context, channel, owner string, n Notice) error

	// DestroyChannel removes channel, all its memberships and its stored
	// messages if by owns it (its numbering goes on if it is created
	// again), publishes n in the same atomic step, and returns the users
	// that were members. ErrNotFound if the channel does not exist, ErrForbidden if
	// by is not its owner.
	DestroyChannel(ctx context.Context, channel, by string, n Notice) (members []string, err error)

	// Join makes user a member of channel and reports whether it was not
	// one already. ErrNotFound if the channel does not exist.
	Join(ctx context.Context, channel string, user Peer) (added bool, err error)

	// Leave ends user's membership of channel, drops the user's read
	// marker of it and publishes n in the same atomic step. ErrNotFound if
	// the channel does not exist, ErrNotMember if user is not a member.
	Leave(ctx context.Context, channel, user string, n Notice) error

	// Members returns a page of channel's members, by username: at most
	// limit of those whose usernames are greater than after (all, for
	// ""), each with whether it is online, and whether more follow.
	// ErrNotFound if the channel does not exist.
	Members(ctx context.Context, channel, after string, limit int) (members []Member, more bool, err error)

	// CheckMember returns nil if user is a member of channel, ErrNotFound if
	// the channel does not exist and ErrNotMember otherwise.
	CheckMember(ctx context.Context, channel, user string) error

	// PublishMessage stores m in channel's log and publishes it (see
	// Message) if m.From is a member, in one atomic step with the check,
	// so that a leave or destroy racing the message cannot let a
	// non-member's message through, and a message is stored if and only
	// if it is published. ErrNotFound if the channel does not exist,
	// ErrNotMember if m.From is not a member; then nothing is stored or
	// published.
	PublishMessage(ctx context.Context, channel string, m Message) (Stored, error)

	// PublishDirect stores m in the conversation of from and to and
	// publishes it (see Message), in one atomic step, and makes the
	// conversation the most recently active of both users.
	PublishDirect(ctx context.Context, from, to Peer, m Message) (Stored, error)

	// Sizes returns how many members each of channels has (0 for one
	// that does not exist). Many channels cost one round trip.
	Sizes(ctx context.Context, channels ...string) ([]int, error)

	// Channels returns every existing channel, sorted.
	Channels(ctx context.Context) ([]string, error)

	// Memberships returns the channels user is a member of and the ones it
	// owns, each sorted.
	Memberships(ctx context.Context, user string) (joined, owned []string, err error)

	// View returns what a new session of user is told: its memberships,
	// its recent conversations, the newest seq of each, and the history
	// store's epoch.
	View(ctx context.Context, user string) (View, error)

	// Joined returns, for each of users, the channels it is a member of,
	// sorted. Many users cost one round trip: a node resyncing after an
	// outage reads them all.
	Joined(ctx context.Context, users ...string) ([][]string, error)

	// AcquirePlace records an open websocket conn of user, unless the user
	// already holds limit places (ErrTooManySessions). A place not refreshed
	// within ttl lapses, so that the places of a node that died are freed.
	// It reports whether the user came online with it: it held no place
	// and was not in the grace of going offline (ReleasePlace).
	AcquirePlace(ctx context.Context, user Peer, conn string, limit int, ttl time.Duration) (online bool, err error)

	// RefreshPlaces extends by ttl the places of the given conns of each
	// user (user -> conns) that are still held. A place released meanwhile
	// is not taken again, so a refresh racing a close cannot hold a freed
	// place.
	RefreshPlaces(ctx context.Context, places map[string][]string, ttl time.Duration) error

	// ReleasePlace frees the place of conn. Releasing a place that is not
	// held is not an error. If it was the user's last, the user goes
	// offline once grace has passed without a new place (SweepPresence).
	ReleasePlace(ctx context.Context, user, conn string, grace time.Duration) error

	// SweepPresence returns (at most limit of) the users that have gone
	// offline: their grace passed without a new place, or their places
	// lapsed (their node died). Each goes offline once, for one caller in
	// the cluster; a user is online from the AcquirePlace that said so to
	// the SweepPresence that returns it.
	SweepPresence(ctx context.Context, limit int) ([]Peer, error)

	// MarkRead moves user's read marker of log (a channel the user is a
	// member of, or a conversation) to seq if that is higher, publishes n
	// in the same atomic step if it moved, and reports whether it did.
	MarkRead(ctx context.Context, user, log string, seq uint64, n Notice) (moved bool, err error)

	// Throttle reports whether key may pass now: at most once every
	// every, across the cluster.
	Throttle(ctx context.Context, key string, every time.Duration) (bool, error)

	// Allow takes one token from user's rate bucket, which refills at
	// rate tokens a second up to burst, and reports whether there was
	// one; a refusal takes nothing. Every node shares a user's bucket: the
	// gateway uses it while the user has sessions on more than one node.
	// Rates above a million a second count as a million.
	Allow(ctx context.Context, user string, rate float64, burst int) (bool, error)

	// Ping checks that the backend answers.
	Ping(ctx context.Context) error
}

// Member is a member of a channel, as Members lists it.
type Member struct {
	ID       string
	Username string
	Online   bool
}

// Notice is a payload published on a broker topic in the same atomic step
// as a change of the registry: the event that announces the change reaches
// the cluster if and only if the change was made. (On a Redis Cluster: in
// the step that makes the change if the topic is in its hash slot, else
// in the step that derives the listing from it, or right after.) The zero
// Notice publishes nothing.
type Notice struct {
	Topic   string
	Payload []byte
}

// Registry errors. Implementations wrap them, so test with errors.Is.
var (
	// ErrExists means the channel already exists.
	ErrExists = errors.New("pubsub: channel exists")

	// ErrNotFound means the channel does not exist.
	ErrNotFound = errors.New("pubsub: channel not found")

	// ErrForbidden means the user does not own the channel.
	ErrForbidden = errors.New("pubsub: not the owner")

	// ErrNotMember means the user is not a member of the channel.
	ErrNotMember = errors.New("pubsub: not a member")

	// ErrTooManySessions means the user holds its limit of places.
	ErrTooManySessions = errors.New("pubsub: too many sessions")
)
