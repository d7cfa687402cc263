package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ProvidersConfig is the social login configuration of a server. Each
// provider is enabled when its client id and secret are set; a provider
// with only one of them is a configuration error. The URLs and the name of
// a provider that is not enabled are ignored (they may hold defaults). The comments name the
// environment variable cmd/chatd reads each field from.
type ProvidersConfig struct {
	// PublicURL is the server's public address, CHAT_PUBLIC_URL; the
	// redirect URI of provider NAME is PublicURL + "/auth/NAME/callback".
	PublicURL string

	GitHubClientID     string // CHAT_GITHUB_CLIENT_ID
	GitHubClientSecret string // CHAT_GITHUB_CLIENT_SECRET
	GitHubURL          string // CHAT_GITHUB_URL; if empty, https://github.com
	GitHubAPIURL       string // CHAT_GITHUB_API_URL; if empty, https://api.github.com

	GoogleClientID     string // CHAT_GOOGLE_CLIENT_ID
	GoogleClientSecret string // CHAT_GOOGLE_CLIENT_SECRET

	OIDCIssuer       string // CHAT_OIDC_ISSUER
	OIDCClientID     string // CHAT_OIDC_CLIENT_ID
	OIDCClientSecret string // CHAT_OIDC_CLIENT_SECRET
	OIDCName         string // CHAT_OIDC_NAME; if empty, "oidc"

	// googleIssuer replaces GoogleIssuer in tests.
	googleIssuer string
}

// ProvidersFromConfig returns the enabled providers, in the order github,
// google, oidc. OpenID Connect issuers are discovered now, with ctx, and
// client makes every request to the providers (if nil, one with a 15 s
// timeout). An error names the environment variable to fix; the server
// must not start with it.
func ProvidersFromConfig(ctx context.Context, cfg ProvidersConfig, client *http.Client) ([]Provider, error) {
	base, err := publicBase(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	redirect := func(name string) string { return base + "/auth/" + name + "/callback" }
	var ps []Provider

	if on, err := enabled("CHAT_GITHUB", cfg.GitHubClientID, cfg.GitHubClientSecret); err != nil {
		return nil, err
	} else if on {
		p, err := NewGitHub(GitHubConfig{
			OAuth2Config: OAuth2Config{ClientID: cfg.GitHubClientID, ClientSecret: cfg.GitHubClientSecret, RedirectURL: redirect("github")},
			URL:          cfg.GitHubURL,
			APIURL:       cfg.GitHubAPIURL,
		}, client)
		if err != nil {
			return nil, fmt.Errorf("%w (check CHAT_GITHUB_URL, CHAT_GITHUB_API_URL)", err)
		}
		ps = append(ps, p)
	}

	if on, err := enabled("CHAT_GOOGLE", cfg.GoogleClientID, cfg.GoogleClientSecret); err != nil {
		return nil, err
	} else if on {
		p, err := NewGoogle(ctx, GoogleConfig{
			OAuth2Config: OAuth2Config{ClientID: cfg.GoogleClientID, ClientSecret: cfg.GoogleClientSecret, RedirectURL: redirect("google")},
			issuer:       cfg.googleIssuer,
		}, client)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}

	if on, err := enabled("CHAT_OIDC", cfg.OIDCClientID, cfg.OIDCClientSecret); err != nil {
		return nil, err
	} else if on {
		name := cfg.OIDCName
		if name == "" {
			name = "oidc"
		}
		if !validProviderName(name) {
			return nil, fmt.Errorf("CHAT_OIDC_NAME %q: use 1 to 39 characters of a-z 0-9 _ -", name)
		}
		for _, p := range ps {
			if p.Name() == name {
				return nil, fmt.Errorf("CHAT_OIDC_NAME %q is already the name of a built-in provider", name)
			}
		}
		if cfg.OIDCIssuer == "" {
			return nil, errors.New("CHAT_OIDC_CLIENT_ID is set but CHAT_OIDC_ISSUER is not")
		}
		p, err := NewOIDC(ctx, OIDCConfig{
			OAuth2Config: OAuth2Config{ClientID: cfg.OIDCClientID, ClientSecret: cfg.OIDCClientSecret, RedirectURL: redirect(name)},
			Name:         name,
			Issuer:       cfg.OIDCIssuer,
		}, client)
		if err != nil {
			return nil, fmt.Errorf("%w (check CHAT_OIDC_ISSUER)", err)
		}
		ps = append(ps, p)
	} else if cfg.OIDCIssuer != "" {
		return nil, errors.New("CHAT_OIDC_ISSUER is set but CHAT_OIDC_CLIENT_ID and CHAT_OIDC_CLIENT_SECRET are not")
	}
	return ps, nil
}

// enabled reports whether a provider's id and secret are both set; one
// without the other is an error.
func enabled(prefix, id, secret string) (bool, error) {
	switch {
	case id != "" && secret == "":
		return false, fmt.Errorf("%s_CLIENT_ID is set but %s_CLIENT_SECRET is empty", prefix, prefix)
	case id == "" && secret != "":
		return false, fmt.Errorf("%s_CLIENT_SECRET is set but %s_CLIENT_ID is empty", prefix, prefix)
	}
	return id != "", nil
}

// publicBase checks CHAT_PUBLIC_URL and returns it without a trailing
// slash.
func publicBase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("CHAT_PUBLIC_URL %q: want an absolute http(s) URL without query, e.g. https://chat.example.com", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// validProviderName reports whether name can be a provider's name in URLs.
// "dev" is dev login's.
func validProviderName(name string) bool {
	if len(name) < 1 || len(name) > 39 || name == DevProvider {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
