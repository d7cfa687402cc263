package auth

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig configures an OpenID Connect provider found by discovery.
type OIDCConfig struct {
	OAuth2Config

	// Name is the provider's name in URLs (/auth/{name}/login). If empty,
	// "oidc".
	Name string

	// Issuer is the issuer URL; {Issuer}/.well-known/openid-configuration
	// must serve its discovery document, whose "issuer" must be exactly
	// this.
	Issuer string

	// Scopes are requested at login. If nil: openid, profile, email.
	Scopes []string
}

// oidcProvider is an OpenID Connect provider: the account is the ID token's
// issuer and subject, and the ID token is verified (signature, issuer,
// audience, expiry, nonce) before anything in it is believed.
type oidcProvider struct {
	oauthClient
	issuer   string
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier

	// issParam is the discovery document's
	// authorization_response_iss_parameter_supported: the provider names
	// itself in the callback (RFC 9207), which we then require.
	issParam bool
}

// NewOIDC returns an OpenID Connect provider for cfg.Issuer. It fetches the
// discovery document now, with ctx: an issuer that cannot be reached or
// whose document is wrong is an error, so a server fails at start and not
// at its first login. client makes every request to the issuer (discovery,
// keys, token, userinfo); if nil, a client with a 15 s timeout.
func NewOIDC(ctx context.Context, cfg OIDCConfig, client *http.Client) (Provider, error) {
	name := cmp.Or(cfg.Name, "oidc")
	if !validProviderName(name) {
		return nil, fmt.Errorf("oidc: name %q: use 1 to 39 characters of a-z 0-9 _ -", name)
	}
	return newOIDC(ctx, name, cfg.Issuer, cfg.OAuth2Config, cfg.Scopes, client)
}

func newOIDC(ctx context.Context, name, issuer string, cfg OAuth2Config, scopes []string, client *http.Client) (Provider, error) {
	if issuer == "" {
		return nil, fmt.Errorf("%s: no issuer", name)
	}
	if err := checkEndpoint(name, "issuer", issuer); err != nil {
		return nil, err
	}
	if client == nil {
		client = defaultHTTPClient
	}
	if err := cfg.check(name); err != nil {
		return nil, err
	}
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		// go-oidc's error may carry the response body: keep the message
		// to one short line for the operator.
		msg := strings.Join(strings.Fields(err.Error()), " ")
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return nil, fmt.Errorf("%s: discovery at %s failed: %s", name, issuer, msg)
	}
	var meta struct {
		JWKSURL          string   `json:"jwks_uri"`
		AuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
		IssParam         bool     `json:"authorization_response_iss_parameter_supported"`
		ChallengeMethods []string `json:"code_challenge_methods_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("%s: discovery at %s: %w", name, issuer, err)
	}
	if err := checkEndpoint(name, "jwks_uri", meta.JWKSURL); err != nil {
		return nil, err
	}
	if u := op.UserInfoEndpoint(); u != "" {
		if err := checkEndpoint(name, "userinfo endpoint", u); err != nil {
			return nil, err
		}
	}
	if len(meta.ChallengeMethods) > 0 && !slices.Contains(meta.ChallengeMethods, "S256") {
		return nil, fmt.Errorf("%s: the issuer does not support PKCE with S256", name)
	}
	ep := op.Endpoint()
	// The default is client_secret_basic (OpenID Connect Discovery 1.0, 3).
	switch {
	case len(meta.AuthMethods) == 0 || slices.Contains(meta.AuthMethods, "client_secret_basic"):
		ep.AuthStyle = oauth2.AuthStyleInHeader
	case slices.Contains(meta.AuthMethods, "client_secret_post"):
		ep.AuthStyle = oauth2.AuthStyleInParams
	default:
		return nil, fmt.Errorf("%s: the issuer supports neither client_secret_basic nor client_secret_post", name)
	}
	if scopes == nil {
		scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	c, err := newOAuthClient(name, cfg, ep, scopes, client)
	if err != nil {
		return nil, err
	}
	return &oidcProvider{
		oauthClient: c,
		issuer:      issuer,
		oidc:        op,
		verifier:    op.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		issParam:    meta.IssParam,
	}, nil
}

// AuthCodeURL implements Provider.
func (p *oidcProvider) AuthCodeURL(state, verifier, nonce string) string {
	return p.conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
}

// authorizationIssuer implements issuerChecker.
func (p *oidcProvider) authorizationIssuer() (string, bool) { return p.issuer, p.issParam }

// oidcClaims are the claims we read, from the ID token or userinfo.
type oidcClaims struct {
	PreferredUsername string `json:"preferred_username"`
	Email             string `json:"email"`
	Name              string `json:"name"`
	AuthorizedParty   string `json:"azp"`
}

// Identify implements Provider.
func (p *oidcProvider) Identify(ctx context.Context, code, verifier, nonce string) (Identity, error) {
	ctx = p.ctx(ctx)
	tok, err := p.exchange(ctx, code, verifier)
	if err != nil {
		return Identity{}, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, errors.New("token response has no id_token")
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("verify ID token: %w", err)
	}
	// go-oidc leaves the nonce to us: it ties the ID token to this login
	// (OpenID Connect Core 3.1.3.7, step 11).
	if nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return Identity{}, errors.New("verify ID token: wrong nonce")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Identity{}, fmt.Errorf("verify ID token: %w", err)
		}
	}
	if idt.Subject == "" {
		return Identity{}, errors.New("verify ID token: no subject")
	}
	var c oidcClaims
	if err := idt.Claims(&c); err != nil {
		return Identity{}, fmt.Errorf("verify ID token: %w", err)
	}
	// go-oidc checks that we are among the audiences, not that the token
	// was issued to us (OpenID Connect Core 3.1.3.7, steps 4 and 5).
	if (len(idt.Audience) > 1 || c.AuthorizedParty != "") && c.AuthorizedParty != p.conf.ClientID {
		return Identity{}, fmt.Errorf("verify ID token: authorized party %q is not us", c.AuthorizedParty)
	}
	if c.PreferredUsername == "" && p.oidc.UserInfoEndpoint() != "" {
		ui, err := p.oidc.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return Identity{}, fmt.Errorf("read userinfo: %w", err)
		}
		// OpenID Connect Core 5.3.2: userinfo may be believed only for
		// the ID token's subject.
		if ui.Subject != idt.Subject {
			return Identity{}, errors.New("read userinfo: subject differs from the ID token's")
		}
		var uc oidcClaims
		if err := ui.Claims(&uc); err != nil {
			return Identity{}, fmt.Errorf("read userinfo: %w", err)
		}
		c.PreferredUsername = uc.PreferredUsername
		c.Email = cmp.Or(c.Email, uc.Email)
		c.Name = cmp.Or(c.Name, uc.Name)
	}
	login := c.PreferredUsername
	if login == "" {
		login, _, _ = strings.Cut(c.Email, "@")
	}
	if login == "" {
		login = c.Name
	}
	// The issuer has no fragment, so "#" cannot occur in it: the key is
	// unambiguous. The configured issuer, not the token's iss claim, which
	// go-oidc lets differ for Google ("accounts.google.com").
	return Identity{Subject: p.issuer + "#" + idt.Subject, Login: login}, nil
}
