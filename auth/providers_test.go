package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestProvidersFromConfig(t *testing.T) {
	gh := newFakeGitHub(t)
	op := newFakeIssuer(t, nil)
	client := op.srv.Client()
	full := ProvidersConfig{
		PublicURL:          "https://chat.example.com/",
		GitHubClientID:     "gh-id",
		GitHubClientSecret: "gh-secret",
		GitHubURL:          gh.srv.URL,
		GitHubAPIURL:       gh.srv.URL + "/api/v3",
		GoogleClientID:     "g-id",
		GoogleClientSecret: "g-secret",
		googleIssuer:       op.srv.URL,
		OIDCIssuer:         op.srv.URL,
		OIDCClientID:       "o-id",
		OIDCClientSecret:   "o-secret",
	}
	ps, err := ProvidersFromConfig(t.Context(), full, client)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name())
		u, err := url.Parse(p.AuthCodeURL("s", "v", "n"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := u.Query().Get("redirect_uri"), "https://chat.example.com/auth/"+p.Name()+"/callback"; got != want {
			t.Errorf("%s: redirect_uri %q, want %q", p.Name(), got, want)
		}
	}
	if strings.Join(names, " ") != "github google oidc" {
		t.Errorf("providers %v, want github google oidc", names)
	}

	// cmd/chatd fills in the defaults of providers that are off.
	off := ProvidersConfig{PublicURL: "http://localhost:8080", GitHubURL: "https://github.com", GitHubAPIURL: "https://api.github.com", OIDCName: "oidc"}
	if ps, err := ProvidersFromConfig(t.Context(), off, nil); err != nil || len(ps) != 0 {
		t.Errorf("no provider configured: %v, %v", ps, err)
	}

	for _, tc := range []struct {
		name string
		edit func(c *ProvidersConfig)
		want string // in the error
	}{
		{"github id without secret", func(c *ProvidersConfig) { c.GitHubClientSecret = "" }, "CHAT_GITHUB_CLIENT_SECRET"},
		{"github secret without id", func(c *ProvidersConfig) { c.GitHubClientID = "" }, "CHAT_GITHUB_CLIENT_ID"},
		{"github URL not https", func(c *ProvidersConfig) { c.GitHubURL = "http://github.example.com" }, "CHAT_GITHUB_URL"},
		{"github API URL not a URL", func(c *ProvidersConfig) { c.GitHubAPIURL = "api.github.com" }, "CHAT_GITHUB_API_URL"},
		{"google id without secret", func(c *ProvidersConfig) { c.GoogleClientSecret = "" }, "CHAT_GOOGLE_CLIENT_SECRET"},
		{"google secret without id", func(c *ProvidersConfig) { c.GoogleClientID = "" }, "CHAT_GOOGLE_CLIENT_ID"},
		{"oidc id without secret", func(c *ProvidersConfig) { c.OIDCClientSecret = "" }, "CHAT_OIDC_CLIENT_SECRET"},
		{"oidc secret without id", func(c *ProvidersConfig) { c.OIDCClientID = "" }, "CHAT_OIDC_CLIENT_ID"},
		{"oidc without issuer", func(c *ProvidersConfig) { c.OIDCIssuer = "" }, "CHAT_OIDC_ISSUER"},
		{"oidc issuer without id", func(c *ProvidersConfig) { c.OIDCClientID, c.OIDCClientSecret = "", "" }, "CHAT_OIDC_ISSUER"},
		{"oidc issuer not https", func(c *ProvidersConfig) { c.OIDCIssuer = "http://id.example.com" }, "CHAT_OIDC_ISSUER"},
		{"oidc discovery fails", func(c *ProvidersConfig) { c.OIDCIssuer = gh.srv.URL + "/nothing" }, "CHAT_OIDC_ISSUER"},
		{"oidc name bad", func(c *ProvidersConfig) { c.OIDCName = "My IdP" }, "CHAT_OIDC_NAME"},
		{"oidc name dev", func(c *ProvidersConfig) { c.OIDCName = "dev" }, "CHAT_OIDC_NAME"},
		{"oidc name taken", func(c *ProvidersConfig) { c.OIDCName = "github" }, "CHAT_OIDC_NAME"},
		{"public URL bad", func(c *ProvidersConfig) { c.PublicURL = "chat.example.com" }, "CHAT_PUBLIC_URL"},
		{"public URL with query", func(c *ProvidersConfig) { c.PublicURL = "https://chat.example.com/?x=1" }, "CHAT_PUBLIC_URL"},
		{"google discovery fails", func(c *ProvidersConfig) { c.googleIssuer = gh.srv.URL }, "google: discovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := full
			tc.edit(&c)
			ps, err := ProvidersFromConfig(t.Context(), c, client)
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ProvidersFromConfig = %d providers, %v; want an error naming %s", len(ps), err, tc.want)
			}
		})
	}
}

// TestNewOIDCDiscovery checks what NewOIDC refuses in a discovery document.
func TestNewOIDCDiscovery(t *testing.T) {
	cfg := OAuth2Config{ClientID: "id", ClientSecret: "secret", RedirectURL: "https://chat.example.com/auth/oidc/callback"}
	for _, tc := range []struct {
		name string
		doc  func(iss string) map[string]any
		want string
	}{
		{"issuer mismatch", func(iss string) map[string]any {
			return map[string]any{"issuer": "https://other.example", "authorization_endpoint": iss + "/a", "token_endpoint": iss + "/t", "jwks_uri": iss + "/k"}
		}, "issuer"},
		{"no S256", func(iss string) map[string]any {
			return map[string]any{"issuer": iss, "authorization_endpoint": iss + "/a", "token_endpoint": iss + "/t", "jwks_uri": iss + "/k",
				"code_challenge_methods_supported": []string{"plain"}}
		}, "S256"},
		{"token endpoint not https", func(iss string) map[string]any {
			return map[string]any{"issuer": iss, "authorization_endpoint": iss + "/a", "token_endpoint": "http://id.example.com/t", "jwks_uri": iss + "/k"}
		}, "token endpoint"},
		{"no client authentication we speak", func(iss string) map[string]any {
			return map[string]any{"issuer": iss, "authorization_endpoint": iss + "/a", "token_endpoint": iss + "/t", "jwks_uri": iss + "/k",
				"token_endpoint_auth_methods_supported": []string{"private_key_jwt"}}
		}, "client_secret_basic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var iss string
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(tc.doc(iss))
			}))
			defer srv.Close()
			iss = srv.URL
			_, err := NewOIDC(t.Context(), OIDCConfig{OAuth2Config: cfg, Issuer: iss}, srv.Client())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewOIDC: %v; want an error about %s", err, tc.want)
			}
		})
	}
}
