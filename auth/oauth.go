package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
)

// OAuth2Config is what every provider needs from the operator: the client
// registered at the provider and the redirect URI entered there.
type OAuth2Config struct {
	ClientID     string
	ClientSecret string

	// RedirectURL is {CHAT_PUBLIC_URL}/auth/{name}/callback, exactly as
	// registered with the provider.
	RedirectURL string
}

func (c OAuth2Config) check(name string) error {
	if c.ClientID == "" {
		return fmt.Errorf("%s: no client id", name)
	}
	if c.ClientSecret == "" {
		return fmt.Errorf("%s: no client secret", name)
	}
	u, err := url.Parse(c.RedirectURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("%s: redirect URL %q is not an absolute http(s) URL", name, c.RedirectURL)
	}
	return nil
}

// oauthClient is the part every provider shares: its name, the OAuth2
// client and the HTTP client it talks to the provider with.
type oauthClient struct {
	name   string
	conf   oauth2.Config
	client *http.Client
}

// defaultHTTPClient is used when a constructor is given a nil client: a
// provider that hangs must not hold a callback forever.
var defaultHTTPClient = &http.Client{Timeout: 15 * time.Second}

func newOAuthClient(name string, cfg OAuth2Config, ep oauth2.Endpoint, scopes []string, client *http.Client) (oauthClient, error) {
	if err := cfg.check(name); err != nil {
		return oauthClient{}, err
	}
	if err := checkEndpoint(name, "authorization endpoint", ep.AuthURL); err != nil {
		return oauthClient{}, err
	}
	if err := checkEndpoint(name, "token endpoint", ep.TokenURL); err != nil {
		return oauthClient{}, err
	}
	if client == nil {
		client = defaultHTTPClient
	}
	return oauthClient{
		name: name,
		conf: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     ep,
			RedirectURL:  cfg.RedirectURL,
			Scopes:       scopes,
		},
		client: client,
	}, nil
}

// Name implements Provider.
func (c *oauthClient) Name() string { return c.name }

// ctx makes x/oauth2 (and go-oidc, which reads the same key) use our HTTP
// client.
func (c *oauthClient) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.client)
}

// exchange trades the authorization code for tokens, proving with the PKCE
// verifier that we are the client that started this login (RFC 7636).
func (c *oauthClient) exchange(ctx context.Context, code, verifier string) (*oauth2.Token, error) {
	tok, err := c.conf.Exchange(c.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange code: %w", err)
	}
	return tok, nil
}

// maxProfileBytes bounds what we read of a profile response.
const maxProfileBytes = 1 << 20

// getJSON GETs url with the access token and decodes the JSON answer into
// v. Any status but 200 is an error.
func (c *oauthClient) getJSON(ctx context.Context, url string, tok *oauth2.Token, header http.Header, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	// Always "Bearer": we never send the token in a URL (RFC 9700 4.3.2).
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProfileBytes))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// oauth2Provider is a plain OAuth2 provider (no OpenID Connect): after the
// code exchange it learns who logged in from the provider's own profile API.
// GitHub is one; another is one small file giving the endpoints, the scopes
// and a profile function (see github.go).
type oauth2Provider struct {
	oauthClient
	profile func(ctx context.Context, c *oauthClient, tok *oauth2.Token) (Identity, error)
}

// AuthCodeURL implements Provider. nonce is an OpenID Connect notion and is
// not sent.
func (p *oauth2Provider) AuthCodeURL(state, verifier, nonce string) string {
	return p.conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
}

// Identify implements Provider.
func (p *oauth2Provider) Identify(ctx context.Context, code, verifier, nonce string) (Identity, error) {
	tok, err := p.exchange(ctx, code, verifier)
	if err != nil {
		return Identity{}, err
	}
	id, err := p.profile(ctx, &p.oauthClient, tok)
	if err != nil {
		return Identity{}, fmt.Errorf("read profile: %w", err)
	}
	if id.Subject == "" {
		return Identity{}, errors.New("read profile: no account id")
	}
	return id, nil
}

// checkEndpoint refuses a provider URL that is not https: codes, tokens and
// secrets cross it (RFC 9700 2.6). Plain http is allowed to a loopback
// host only, for a provider running on the same machine.
func checkEndpoint(name, what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("%s: %s %q is not an absolute URL", name, what, raw)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%s: %s %q must be https", name, what, raw)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
