package auth

import (
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// This file holds in-process fake providers that speak the real protocols
// over TLS: an OAuth2 authorization server with PKCE (RFC 6749, RFC 7636),
// dressed either as GitHub (its endpoint paths, its 200-with-error token
// responses, GET /api/v3/user as on GitHub Enterprise Server) or as an
// OpenID Connect issuer (discovery, JWKS, RS256-signed ID tokens, userinfo).

// fakeUser is the account that "logs in" at the fake's authorization page.
type fakeUser struct {
	ID                int64  // GitHub's numeric id
	Sub               string // OpenID Connect subject
	Login             string // GitHub login
	PreferredUsername string // OIDC claims; in the ID token unless InUserinfo
	Email             string
	Name              string
	InUserinfo        bool // the OIDC claims are only in userinfo, not in the ID token
}

type fakeGrant struct {
	clientID, redirectURI, challenge, nonce string
	user                                    fakeUser
}

// fakeAS is a fake authorization server. Its knobs are set by a test
// before the login it affects.
type fakeAS struct {
	t      *testing.T
	srv    *httptest.Server
	github bool // GitHub's dialect; else OpenID Connect

	clientID, secret string
	authMethods      []string // immutable after start; OIDC: token_endpoint_auth_methods_supported
	issParam         bool     // immutable after start; OIDC: sends iss in the authorization response (RFC 9207)

	key     *rsa.PrivateKey // signs ID tokens; its public half is in the JWKS
	kid     string
	mu      sync.Mutex
	user    fakeUser                   // guarded by mu: who logs in next
	deny    bool                       // guarded by mu: the user refuses
	failAPI bool                       // guarded by mu: /user or /userinfo answers 500
	claims  func(c map[string]any)     // guarded by mu: rewrites ID token claims
	signer  *rsa.PrivateKey            // guarded by mu: if set, signs ID tokens instead of key
	uiSub   string                     // guarded by mu: if set, userinfo's sub
	noIDTok bool                       // guarded by mu: token response without id_token
	codes   map[string]fakeGrant       // guarded by mu
	tokens  map[string]fakeGrant       // guarded by mu: access token -> grant
	authz   []url.Values               // guarded by mu: every authorization request
	tokReqs int                        // guarded by mu: number of token requests
	apiHits map[string]int             // guarded by mu: profile calls by path
	extra   map[string]json.RawMessage // guarded by mu: added to the discovery document
}

var (
	testKeyOnce sync.Once
	testKeys    [2]*rsa.PrivateKey
)

// testKey returns one of two RSA keys, generated once per test binary.
func testKey(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	testKeyOnce.Do(func() {
		for i := range testKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys[i] = k
		}
	})
	return testKeys[i]
}

func newFakeGitHub(t *testing.T) *fakeAS {
	return newFakeAS(t, true, nil)
}

// newFakeIssuer returns a fake OpenID Connect issuer; opt, if set, sets
// its immutable options before it starts.
func newFakeIssuer(t *testing.T, opt func(f *fakeAS)) *fakeAS {
	return newFakeAS(t, false, opt)
}

func newFakeAS(t *testing.T, github bool, opt func(f *fakeAS)) *fakeAS {
	f := &fakeAS{
		t:           t,
		github:      github,
		clientID:    "client-" + newToken()[:8],
		secret:      "secret-" + newToken(),
		authMethods: []string{"client_secret_basic"},
		key:         testKey(t, 0),
		kid:         "key-1",
		codes:       make(map[string]fakeGrant),
		tokens:      make(map[string]fakeGrant),
		apiHits:     make(map[string]int),
	}
	mux := http.NewServeMux()
	if github {
		mux.HandleFunc("GET /login/oauth/authorize", f.handleAuthorize)
		mux.HandleFunc("POST /login/oauth/access_token", f.handleToken)
		mux.HandleFunc("GET /api/v3/user", f.handleGitHubUser)
	} else {
		mux.HandleFunc("GET /.well-known/openid-configuration", f.handleDiscovery)
		mux.HandleFunc("GET /authorize", f.handleAuthorize)
		mux.HandleFunc("POST /token", f.handleToken)
		mux.HandleFunc("GET /jwks", f.handleJWKS)
		mux.HandleFunc("GET /userinfo", f.handleUserinfo)
	}
	if github {
		f.user = fakeUser{ID: 1, Login: "octocat"}
	} else {
		f.user = fakeUser{Sub: "sub-1", PreferredUsername: "pat"}
	}
	if opt != nil {
		opt(f)
	}
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAS) set(fn func(f *fakeAS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAS) lastAuthorize() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.authz) == 0 {
		return nil
	}
	return f.authz[len(f.authz)-1]
}

func (f *fakeAS) tokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokReqs
}

func (f *fakeAS) apiCalls(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apiHits[path]
}

// handleAuthorize is the authorization page: the user is already logged
// in at the provider and consents (or, with deny, refuses) at once.
func (f *fakeAS) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.authz = append(f.authz, q)
	user, deny := f.user, f.deny
	f.mu.Unlock()

	// Errors about the client or the redirect URI are shown to the user,
	// never redirected (RFC 6749 4.1.2.1).
	if q.Get("client_id") != f.clientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !redirect.IsAbs() {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := redirect.Query()
	back.Set("state", q.Get("state"))
	if f.issParam {
		back.Set("iss", f.srv.URL)
	}
	switch {
	case deny:
		back.Set("error", "access_denied")
		back.Set("error_description", "The user has denied your application access.")
	case q.Get("response_type") != "code":
		back.Set("error", "unsupported_response_type")
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		back.Set("error", "invalid_request")
	default:
		code := "code-" + newToken()
		f.mu.Lock()
		f.codes[code] = fakeGrant{
			clientID:    f.clientID,
			redirectURI: redirect.String(),
			challenge:   q.Get("code_challenge"),
			nonce:       q.Get("nonce"),
			user:        user,
		}
		f.mu.Unlock()
		back.Set("code", code)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// handleToken is the token endpoint: client authentication, a code that is
// used once, the same redirect URI, and a verifier whose S256 is the
// challenge.
func (f *fakeAS) handleToken(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.tokReqs++
	f.mu.Unlock()
	if err := r.ParseForm(); err != nil {
		f.tokenError(w, "invalid_request")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	method := "client_secret_post"
	if basic {
		method = "client_secret_basic"
	}
	if !f.github && !slices.Contains(f.authMethods, method) {
		f.tokenError(w, "invalid_client")
		return
	}
	if id != f.clientID || subtle.ConstantTimeCompare([]byte(secret), []byte(f.secret)) != 1 {
		f.tokenError(w, "invalid_client")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		f.tokenError(w, "unsupported_grant_type")
		return
	}
	code := r.PostForm.Get("code")
	f.mu.Lock()
	g, ok := f.codes[code]
	delete(f.codes, code) // used once, whatever happens next
	f.mu.Unlock()
	if !ok || g.clientID != id || g.redirectURI != r.PostForm.Get("redirect_uri") {
		f.tokenError(w, "invalid_grant")
		return
	}
	if oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != g.challenge {
		f.tokenError(w, "invalid_grant")
		return
	}
	access := "access-" + newToken()
	f.mu.Lock()
	f.tokens[access] = g
	noIDTok := f.noIDTok
	f.mu.Unlock()
	resp := map[string]any{"access_token": access, "token_type": "bearer", "scope": ""}
	if !f.github {
		resp["token_type"] = "Bearer"
		resp["expires_in"] = 3600
		if !noIDTok {
			resp["id_token"] = f.idToken(g, access)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(resp)
}

func (f *fakeAS) tokenError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	if f.github {
		// GitHub answers a bad code with 200 and an error in the body.
		json.NewEncoder(w).Encode(map[string]string{"error": "bad_verification_code", "error_description": code})
		return
	}
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// grantFor returns the grant of the request's Bearer access token.
func (f *fakeAS) grantFor(r *http.Request) (fakeGrant, bool) {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		return fakeGrant{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.tokens[strings.TrimPrefix(h, "Bearer ")]
	return g, ok
}

func (f *fakeAS) handleGitHubUser(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.apiHits[r.URL.Path]++
	fail := f.failAPI
	f.mu.Unlock()
	g, ok := f.grantFor(r)
	if !ok {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	if fail {
		http.Error(w, `{"message":"Server Error"}`, http.StatusInternalServerError)
		return
	}
	if r.Header.Get("Accept") != "application/vnd.github+json" {
		http.Error(w, "want Accept: application/vnd.github+json", http.StatusNotAcceptable)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{
		"login": g.user.Login, "id": g.user.ID, "node_id": "MDQ6VXNlcjE=", "type": "User",
		"name": g.user.Name, "email": nil,
	})
}

func (f *fakeAS) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	iss := f.srv.URL
	doc := map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"jwks_uri":                              iss + "/jwks",
		"userinfo_endpoint":                     iss + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": f.authMethods,
		"scopes_supported":                      []string{"openid", "profile", "email"},
	}
	if f.issParam {
		doc["authorization_response_iss_parameter_supported"] = true
	}
	f.mu.Lock()
	for k, v := range f.extra {
		doc[k] = v
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(doc)
}

func (f *fakeAS) handleJWKS(w http.ResponseWriter, r *http.Request) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: "RS256", Use: "sig"}}}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}

func (f *fakeAS) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.apiHits[r.URL.Path]++
	fail, sub := f.failAPI, f.uiSub
	f.mu.Unlock()
	g, ok := f.grantFor(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if fail {
		http.Error(w, "unavailable", http.StatusInternalServerError)
		return
	}
	c := map[string]any{"sub": cmp.Or(sub, g.user.Sub)}
	if g.user.InUserinfo {
		addProfileClaims(c, g.user)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c)
}

// idToken returns an ID token for the grant, signed RS256, with the nonce
// of the authorization request and at_hash of the access token.
func (f *fakeAS) idToken(g fakeGrant, access string) string {
	now := time.Now()
	sum := sha256.Sum256([]byte(access))
	c := map[string]any{
		"iss":     f.srv.URL,
		"sub":     g.user.Sub,
		"aud":     f.clientID,
		"exp":     now.Add(time.Hour).Unix(),
		"iat":     now.Unix(),
		"nonce":   g.nonce,
		"at_hash": base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2]),
	}
	if !g.user.InUserinfo {
		addProfileClaims(c, g.user)
	}
	f.mu.Lock()
	rewrite, key := f.claims, f.signer
	f.mu.Unlock()
	if rewrite != nil {
		rewrite(c)
	}
	if key == nil {
		key = f.key
	}
	return signJWT(f.t, key, f.kid, c)
}

func addProfileClaims(c map[string]any, u fakeUser) {
	if u.PreferredUsername != "" {
		c["preferred_username"] = u.PreferredUsername
	}
	if u.Email != "" {
		c["email"] = u.Email
		c["email_verified"] = true
	}
	if u.Name != "" {
		c["name"] = u.Name
	}
}

func signJWT(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Errorf("signer: %v", err)
		return ""
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Errorf("claims: %v", err)
		return ""
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Errorf("sign: %v", err)
		return ""
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Errorf("serialize: %v", err)
	}
	return raw
}
