// Package auth logs people in and keeps their sessions: users (a stable
// UUID and a unique username), the identities that providers vouch for, and
// opaque session tokens stored only as hashes. Its HTTP handlers serve
// /auth/*; the gateway asks it who holds a request's token.
package auth

import (
	"context"
	"errors"
	"time"
)

// User is a person known to the chat.
type User struct {
	ID       string // UUID, derived from the account at the first login (identity.go)
	Username string // unique, canonical (lower case)
}

// Session is a logged-in browser or client. The token that opens it is never
// stored: the store knows it only by its hash.
type Session struct {
	ID       string // public id (UUID), used to address the session's websockets
	UserID   string
	Username string
	Provider string // the name in the login URL; "dev" for dev login
	Expires  time.Time

	key string // the token's hash, set by Service.Authenticate for Check
}

// Store keeps users, identities and sessions. Memory serves a single node;
// Redis a cluster. Methods are safe for concurrent use, also by several
// nodes at once: two nodes never hand out the same username, or link one
// account to two users. On a single Redis each method is one atomic step;
// on Redis Cluster some are several, whose failure in between leaves no
// state that breaks these guarantees (docs/cluster.md).
type Store interface {
	// UserByName returns the user with that canonical username, or
	// ErrNoUser.
	UserByName(ctx context.Context, username string) (User, error)

	// UserByID returns the user with that UUID, or ErrNoUser.
	UserByID(ctx context.Context, id string) (User, error)

	// UserForName returns the user with exactly that username, creating it
	// with id newID if there is none. Dev login uses it.
	UserForName(ctx context.Context, username, newID string) (User, error)

	// UserForIdentity returns the user linked to the provider account
	// (provider, subject). The first time it links the account to the user
	// newID, creating that user named after login (sanitised, with "-2",
	// "-3" … appended when taken). newID is derived from the account, so
	// after a loss of data the same account comes back with the same id:
	// a user newID that outlived its link (a partial loss) is linked
	// again and keeps its username, unless another user holds that now.
	UserForIdentity(ctx context.Context, provider, subject, login, newID string) (User, error)

	// CreateSession stores s under the hash of its token; it lapses at
	// s.Expires. If keep > 0 and the user then holds more than keep
	// unexpired sessions, the oldest of them (never s) are deleted and
	// returned, oldest first, so that the caller can close their
	// websockets as at logout. If keep is zero, no session is deleted.
	// Logins of one user racing on several nodes leave at most keep
	// sessions between them once they have returned, and each deleted
	// session is returned by exactly one call; that may be a later login
	// of the user, when the call that chose to delete it failed first.
	//
	// On an error the caller must not hand out the token (s may be
	// stored, but is not counted as the user's: it is deleted if the
	// backend can still be reached); revoked then holds the sessions that
	// were deleted all the same, which the caller closes as well.
	CreateSession(ctx context.Context, tokenHash string, s Session, keep int) (revoked []Session, err error)

	// Session returns the unexpired session stored under tokenHash, or
	// ErrNoSession.
	Session(ctx context.Context, tokenHash string) (Session, error)

	// LiveSessions reports, for each token hash, whether an unexpired
	// session is stored under it. It costs a few round trips for any
	// number of hashes, where Session costs one each.
	LiveSessions(ctx context.Context, tokenHashes []string) ([]bool, error)

	// DeleteSession removes the session stored under tokenHash and returns
	// it, or ErrNoSession.
	DeleteSession(ctx context.Context, tokenHash string) (Session, error)
}

// Store errors.
var (
	// ErrNoUser means no such user exists.
	ErrNoUser = errors.New("auth: no such user")

	// ErrNoSession means the token is unknown, revoked or expired.
	ErrNoSession = errors.New("auth: no such session")

	// ErrUnavailable means the store's backend cannot be reached.
	ErrUnavailable = errors.New("auth: store unavailable")
)
