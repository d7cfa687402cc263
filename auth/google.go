package auth

import (
	"cmp"
	"context"
	"net/http"
)

// GoogleIssuer is Google's OpenID Connect issuer.
const GoogleIssuer = "https://accounts.google.com"

// GoogleConfig configures the google provider.
type GoogleConfig struct {
	OAuth2Config

	// issuer replaces GoogleIssuer in tests, for a fake issuer.
	issuer string
}

// NewGoogle returns the "google" provider: OpenID Connect with Google's
// issuer, discovered now with ctx (see NewOIDC).
func NewGoogle(ctx context.Context, cfg GoogleConfig, client *http.Client) (Provider, error) {
	return newOIDC(ctx, "google", cmp.Or(cfg.issuer, GoogleIssuer), cfg.OAuth2Config, nil, client)
}
