package auth

import (
	"context"
	"errors"
	"time"
)

// LoginState is what the server remembers between /auth/{provider}/login
// and the provider's redirect back to /auth/{provider}/callback. It is kept
// under the hash of the login's random state parameter, for one use only.
type LoginState struct {
	// Provider is the name of the provider the login was started for: a
	// state issued for one provider is refused at another's callback.
	Provider string `json:"provider"`

	// Verifier is the PKCE code verifier (RFC 7636); the provider saw
	// only its S256 challenge.
	Verifier string `json:"verifier"`

	// Nonce is the OpenID Connect nonce the ID token must carry; empty
	// for plain OAuth2 providers.
	Nonce string `json:"nonce,omitempty"`

	// Binding is the hash of the value of the short-lived cookie set on
	// the browser that started the login: the callback must come from
	// that same browser.
	Binding string `json:"binding"`

	// Created is when the login started; the Service refuses a state
	// older than its lifetime even if the store still has it.
	Created time.Time `json:"created"`
}

// StateStore keeps pending logins between the login redirect and the
// callback, which may reach another node: Memory serves a single node,
// Redis a cluster. Methods are safe for concurrent use.
type StateStore interface {
	// Put stores st under key for ttl. The key is never reused; Put fails
	// if it is already taken.
	Put(ctx context.Context, key string, st LoginState, ttl time.Duration) error

	// Take removes the state stored under key and returns it, atomically:
	// of any number of concurrent Takes of one key, on any nodes, at most
	// one gets it. ErrNoState if there is none, it was taken or it expired.
	Take(ctx context.Context, key string) (LoginState, error)
}

// State store errors.
var (
	// ErrNoState means the login state is unknown, used or expired.
	ErrNoState = errors.New("auth: no such login state")

	// ErrStateFull means the store refuses more pending logins for now.
	ErrStateFull = errors.New("auth: too many pending logins")
)
