package auth

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
)

// GitHubConfig configures the github provider.
type GitHubConfig struct {
	OAuth2Config

	// URL is GitHub's web address, where the authorization and token
	// endpoints are. If empty, https://github.com. For GitHub Enterprise
	// Server, https://HOSTNAME.
	URL string

	// APIURL is the REST API's address. If empty, https://api.github.com.
	// For GitHub Enterprise Server, https://HOSTNAME/api/v3.
	APIURL string
}

// NewGitHub returns the "github" provider: OAuth2 with PKCE, then GET
// {APIURL}/user. The account is keyed on GitHub's numeric user id, which
// never changes; the login (which can be renamed and then taken by someone
// else) only suggests the username. No scope is requested: the public
// profile needs none. client makes every request to GitHub; if nil, a
// client with a 15 s timeout.
func NewGitHub(cfg GitHubConfig, client *http.Client) (Provider, error) {
	web := strings.TrimSuffix(cmp.Or(cfg.URL, "https://github.com"), "/")
	api := strings.TrimSuffix(cmp.Or(cfg.APIURL, "https://api.github.com"), "/")
	if err := checkEndpoint("github", "API URL", api); err != nil {
		return nil, err
	}
	ep := oauth2.Endpoint{
		AuthURL:   web + "/login/oauth/authorize",
		TokenURL:  web + "/login/oauth/access_token",
		AuthStyle: oauth2.AuthStyleInParams,
	}
	c, err := newOAuthClient("github", cfg.OAuth2Config, ep, nil, client)
	if err != nil {
		return nil, err
	}
	userURL := api + "/user"
	return &oauth2Provider{oauthClient: c, profile: func(ctx context.Context, c *oauthClient, tok *oauth2.Token) (Identity, error) {
		var user struct {
			ID    int64  `json:"id"`
			Login string `json:"login"`
		}
		h := http.Header{}
		h.Set("Accept", "application/vnd.github+json")
		h.Set("X-GitHub-Api-Version", "2022-11-28")
		if err := c.getJSON(ctx, userURL, tok, h, &user); err != nil {
			return Identity{}, err
		}
		if user.ID <= 0 {
			return Identity{}, errors.New("github: user has no id")
		}
		return Identity{Subject: strconv.FormatInt(user.ID, 10), Login: user.Login}, nil
	}}, nil
}
