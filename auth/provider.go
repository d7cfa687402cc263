package auth

import "context"

// Provider is a social login provider (OAuth2 or OpenID Connect).
type Provider interface {
	// Name is the provider's name in URLs: /auth/{name}/login.
	Name() string

	// AuthCodeURL returns the provider's authorization URL for state, the
	// PKCE verifier (sent as its S256 challenge) and, for OpenID Connect,
	// nonce.
	AuthCodeURL(state, verifier, nonce string) string

	// Identify exchanges code (with the PKCE verifier) and returns the
	// account. OpenID Connect providers verify the ID token and its nonce.
	Identify(ctx context.Context, code, verifier, nonce string) (Identity, error)
}

// Identity is a provider account.
type Identity struct {
	Subject string // stable and unique at the provider: GitHub's id, OIDC's issuer + subject
	Login   string // preferred username, to derive the chat username from
}

func (s *Service) provider(name string) Provider {
	for _, p := range s.cfg.Providers {
		if p.Name() == name {
			return p
		}
	}
	return nil
}
