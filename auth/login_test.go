package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// oauthTestCounts returns how many users and sessions the store holds.
func (m *Memory) oauthTestCounts() (users, sessions int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.users), len(m.sessions)
}

// testClock lets a test move a Service's clock forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// tamperStates lets a test change a login state on its way out of the
// store, as a stand-in for a wrong PKCE verifier.
type tamperStates struct {
	StateStore
	mu     sync.Mutex
	tamper func(*LoginState) // guarded by mu
}

func (s *tamperStates) Take(ctx context.Context, key string) (LoginState, error) {
	st, err := s.StateStore.Take(ctx, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.tamper != nil {
		s.tamper(&st)
	}
	return st, err
}

// loginEnv is a chat node (or several sharing one store) and three fake
// providers: github (as GitHub Enterprise Server), google (pointed at a
// fake issuer) and a generic OpenID Connect issuer named "corp".
type loginEnv struct {
	t       *testing.T
	store   Store
	tune    func(*Config) // if set, changes every node's Config
	states  *tamperStates
	clock   *testClock
	gh      *fakeAS
	google  *fakeAS
	corp    *fakeAS
	base    string // the public URL: node A's address
	ps      []Provider
	app     *httptest.Server // node A
	httpCli *http.Client     // trusts the fakes' certificate
	logs    *syncBuffer      // what the nodes logged
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLoginEnv(t *testing.T) *loginEnv {
	return newLoginEnvWith(t, loginOptions{})
}

func newLoginEnvStates(t *testing.T, states StateStore) *loginEnv {
	return newLoginEnvWith(t, loginOptions{states: states})
}

// loginOptions change a loginEnv; a zero field means the default.
type loginOptions struct {
	states StateStore    // if nil, a StateMemory
	store  Store         // if nil, a Memory
	tune   func(*Config) // if set, changes every node's Config
}

func newLoginEnvWith(t *testing.T, o loginOptions) *loginEnv {
	t.Helper()
	if o.states == nil {
		o.states = NewStateMemory(0)
	}
	if o.store == nil {
		o.store = NewMemory()
	}
	e := &loginEnv{t: t, store: o.store, tune: o.tune, states: &tamperStates{StateStore: o.states}, clock: &testClock{}, logs: &syncBuffer{}}
	e.gh = newFakeGitHub(t)
	e.google = newFakeIssuer(t, func(f *fakeAS) { f.authMethods = []string{"client_secret_post"} })
	e.corp = newFakeIssuer(t, func(f *fakeAS) { f.issParam = true })
	e.httpCli = e.gh.srv.Client() // every httptest TLS server has the same certificate

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + l.Addr().String()
	e.ps, err = ProvidersFromConfig(t.Context(), ProvidersConfig{
		PublicURL:          e.base,
		GitHubClientID:     e.gh.clientID,
		GitHubClientSecret: e.gh.secret,
		GitHubURL:          e.gh.srv.URL,
		GitHubAPIURL:       e.gh.srv.URL + "/api/v3",
		GoogleClientID:     e.google.clientID,
		GoogleClientSecret: e.google.secret,
		googleIssuer:       e.google.srv.URL,
		OIDCIssuer:         e.corp.srv.URL,
		OIDCClientID:       e.corp.clientID,
		OIDCClientSecret:   e.corp.secret,
		OIDCName:           "corp",
	}, e.httpCli)
	if err != nil {
		t.Fatalf("ProvidersFromConfig: %v", err)
	}
	e.app = httptest.NewUnstartedServer(e.newService(e.states, false).Handler())
	e.app.Listener.Close()
	e.app.Listener = l
	e.app.Start()
	t.Cleanup(e.app.Close)
	return e
}

func (e *loginEnv) newService(states StateStore, secure bool) *Service {
	cfg := Config{Providers: e.ps, States: states, SecureCookie: secure}
	if e.tune != nil {
		e.tune(&cfg)
	}
	svc := New(cfg, e.store,
		slog.New(slog.NewTextHandler(io.MultiWriter(e.t.Output(), e.logs), &slog.HandlerOptions{Level: slog.LevelDebug})))
	svc.now = e.clock.now
	return svc
}

// addNode starts another node on the same user store with states.
func (e *loginEnv) addNode(states StateStore) *httptest.Server {
	srv := httptest.NewServer(e.newService(states, false).Handler())
	e.t.Cleanup(srv.Close)
	return srv
}

// counts returns how many users and sessions the env's Memory holds.
func (e *loginEnv) counts() (users, sessions int) { return e.store.(*Memory).oauthTestCounts() }

func (e *loginEnv) tokenRequests() int {
	return e.gh.tokenRequests() + e.google.tokenRequests() + e.corp.tokenRequests()
}

// browser is a user agent with its own cookie jar that does not follow
// redirects by itself, so that the test sees every step.
type browser struct {
	t *testing.T
	c *http.Client
}

func (e *loginEnv) newBrowser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &browser{t: e.t, c: &http.Client{
		Jar:           jar,
		Transport:     e.httpCli.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// get GETs u and returns the response with its body read.
func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	return resp, string(body)
}

func (b *browser) cookie(u, name string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, c := range b.c.Jar.Cookies(pu) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func location(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("%s %s: status %d, want 302", resp.Request.Method, resp.Request.URL, resp.StatusCode)
	}
	u, err := resp.Location()
	if err != nil {
		t.Fatalf("%s: %v", resp.Request.URL, err)
	}
	return u
}

// startLogin GETs /auth/{provider}/login and returns the response and the
// provider's authorization URL it redirects to.
func (e *loginEnv) startLogin(b *browser, provider string) (*http.Response, *url.URL) {
	e.t.Helper()
	resp, _ := b.get(e.base + "/auth/" + provider + "/login")
	return resp, location(e.t, resp)
}

// beginLogin starts a login in b and lets the provider's authorization page
// answer; it returns the callback URL the provider sends the browser to.
func (e *loginEnv) beginLogin(b *browser, provider string) *url.URL {
	e.t.Helper()
	_, authURL := e.startLogin(b, provider)
	resp, _ := b.get(authURL.String())
	return location(e.t, resp)
}

type me struct {
	Identifier string `json:"identifier"`
	Username   string `json:"username"`
	Provider   string `json:"provider"`
}

// finishLogin GETs the callback and checks that it logged b in as
// username with provider; it returns /auth/me's answer and the token.
func (e *loginEnv) finishLogin(b *browser, callback *url.URL, provider, username string) (me, string) {
	e.t.Helper()
	resp, body := b.get(callback.String())
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("callback: status %d, want 302; body:\n%s", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); loc != "/" {
		e.t.Errorf("callback redirects to %q, want /", loc)
	}
	var sess, login *http.Cookie
	for _, c := range resp.Cookies() {
		switch c.Name {
		case CookieName:
			sess = c
		case loginCookie:
			login = c
		}
	}
	if sess == nil || len(sess.Value) < 43 || !sess.HttpOnly || sess.Path != "/" || sess.SameSite != http.SameSiteLaxMode || sess.Secure {
		e.t.Errorf("session cookie %+v: want a token, HttpOnly, Path=/, SameSite=Lax, not Secure on http", sess)
	}
	if login == nil || login.MaxAge >= 0 || login.Path != "/auth/" {
		e.t.Errorf("login cookie %+v: want it cleared on Path=/auth/", login)
	}
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		e.t.Errorf("callback Referrer-Policy %q, want no-referrer", got)
	}
	if b.cookie(e.base+"/auth/", loginCookie) != nil {
		e.t.Error("the browser still holds the login cookie")
	}
	m := e.me(b, "")
	if m.Username != username || m.Provider != provider {
		e.t.Errorf("/auth/me = %+v, want username %q, provider %q", m, username, provider)
	}
	if _, err := uuid.Parse(m.Identifier); err != nil {
		e.t.Errorf("identifier %q: %v", m.Identifier, err)
	}
	var token string
	if sess != nil {
		token = sess.Value
	}
	return m, token
}

// checkIdentity checks that the user m is the one linked to the account
// (provider, subject), and that its identifier is derived from it.
func (e *loginEnv) checkIdentity(m me, provider, subject string) {
	e.t.Helper()
	u, err := e.store.UserForIdentity(e.t.Context(), provider, subject, "someone-else", uuid.NewString())
	if err != nil || u.ID != m.Identifier {
		e.t.Errorf("identity %s/%s is %+v, %v; want user %s", provider, subject, u, err, m.Identifier)
	}
	if want := deriveUserID(identityNamespace(""), provider, subject); m.Identifier != want {
		e.t.Errorf("identifier %s, want %s derived from %s/%s", m.Identifier, want, provider, subject)
	}
}

// me GETs /auth/me with b's cookies, or with token as Bearer if set.
func (e *loginEnv) me(b *browser, token string) me {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.base+"/auth/me", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("/auth/me: status %d", resp.StatusCode)
	}
	var m me
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// login logs a fresh browser in with provider as user and checks the
// username it gets.
func (e *loginEnv) login(provider string, f *fakeAS, user fakeUser, username string) (me, string) {
	e.t.Helper()
	f.set(func(f *fakeAS) { f.user = user })
	b := e.newBrowser()
	return e.finishLogin(b, e.beginLogin(b, provider), provider, username)
}

// checkAuthorize checks the parameters of a request to the provider's
// authorization endpoint.
func (e *loginEnv) checkAuthorize(f *fakeAS, authURL *url.URL, provider, scope string, oidc bool) {
	e.t.Helper()
	q := authURL.Query()
	want := map[string]string{
		"client_id":             f.clientID,
		"redirect_uri":          e.base + "/auth/" + provider + "/callback",
		"response_type":         "code",
		"code_challenge_method": "S256",
	}
	for k, v := range want {
		if q.Get(k) != v {
			e.t.Errorf("authorization request %s = %q, want %q", k, q.Get(k), v)
		}
	}
	for _, k := range []string{"state", "code_challenge"} {
		if len(q.Get(k)) != 43 {
			e.t.Errorf("authorization request %s = %q, want 43 characters of base64url", k, q.Get(k))
		}
	}
	if oidc != (len(q.Get("nonce")) == 43) {
		e.t.Errorf("authorization request nonce = %q, want one (43 characters) for OpenID Connect only", q.Get("nonce"))
	}
	if q.Get("scope") != scope || q.Has("scope") != (scope != "") {
		e.t.Errorf("authorization request scope = %q, want %q", q.Get("scope"), scope)
	}
	if q.Get("state") == q.Get("nonce") || q.Get("state") == q.Get("code_challenge") {
		e.t.Error("state, nonce and challenge must be independent")
	}
	if !strings.HasPrefix(authURL.String(), f.srv.URL+"/") {
		e.t.Errorf("login redirects to %s, not to the provider %s", authURL, f.srv.URL)
	}
}

func checkLoginCookie(t *testing.T, resp *http.Response, secure bool) {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name != loginCookie {
			continue
		}
		if len(c.Value) < 43 || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/auth/" ||
			c.MaxAge != 600 || c.Secure != secure {
			t.Errorf("login cookie %+v: want a random value, HttpOnly, SameSite=Lax, Path=/auth/, Max-Age=600, Secure=%v", c, secure)
		}
		return
	}
	t.Errorf("login sets no %s cookie", loginCookie)
}

func TestLoginGitHub(t *testing.T) {
	e := newLoginEnv(t)
	e.gh.set(func(f *fakeAS) { f.user = fakeUser{ID: 4242, Login: "Octo.Cat"} })
	b := e.newBrowser()
	resp, authURL := e.startLogin(b, "github")
	if !strings.HasPrefix(authURL.String(), e.gh.srv.URL+"/login/oauth/authorize?") {
		t.Errorf("login redirects to %s", authURL)
	}
	e.checkAuthorize(e.gh, authURL, "github", "", false)
	checkLoginCookie(t, resp, false)
	if c := b.cookie(e.base+"/auth/github/callback", loginCookie); c == nil || c.Value == authURL.Query().Get("state") {
		t.Errorf("login cookie %+v: want one, unlike the state", c)
	}

	r, _ := b.get(authURL.String())
	cb := location(t, r)
	m, _ := e.finishLogin(b, cb, "github", "octo-cat")
	if n := e.gh.apiCalls("/api/v3/user"); n != 1 {
		t.Errorf("%d calls to /api/v3/user, want 1", n)
	}
	// The account is keyed on GitHub's numeric id.
	e.checkIdentity(m, "github", "4242")
	if users, sessions := e.counts(); users != 1 || sessions != 1 {
		t.Errorf("%d users, %d sessions; want 1, 1", users, sessions)
	}
}

func TestLoginOIDC(t *testing.T) {
	e := newLoginEnv(t)
	e.corp.set(func(f *fakeAS) {
		f.user = fakeUser{Sub: "248289761001", PreferredUsername: "Alice", Email: "a.l@example.com"}
	})
	b := e.newBrowser()
	resp, authURL := e.startLogin(b, "corp")
	if !strings.HasPrefix(authURL.String(), e.corp.srv.URL+"/authorize?") {
		t.Errorf("login redirects to %s", authURL)
	}
	e.checkAuthorize(e.corp, authURL, "corp", "openid profile email", true)
	checkLoginCookie(t, resp, false)

	r, _ := b.get(authURL.String())
	cb := location(t, r)
	if cb.Query().Get("iss") != e.corp.srv.URL {
		t.Fatalf("the fake issuer sent no iss parameter: %s", cb)
	}
	m, _ := e.finishLogin(b, cb, "corp", "alice")
	if n := e.corp.apiCalls("/userinfo"); n != 0 {
		t.Errorf("%d userinfo calls; want none, the ID token has preferred_username", n)
	}
	// The account is keyed on issuer and subject.
	e.checkIdentity(m, "corp", e.corp.srv.URL+"#248289761001")
}

func TestLoginGoogle(t *testing.T) {
	e := newLoginEnv(t)
	// Google's ID tokens carry no preferred_username: userinfo is asked,
	// has none either, and the e-mail's local part is used.
	e.google.set(func(f *fakeAS) {
		f.user = fakeUser{Sub: "110169484474386276334", Email: "bob.smith@gmail.com", Name: "Bob Smith"}
	})
	b := e.newBrowser()
	resp, authURL := e.startLogin(b, "google")
	e.checkAuthorize(e.google, authURL, "google", "openid profile email", true)
	checkLoginCookie(t, resp, false)
	r, _ := b.get(authURL.String())
	m, _ := e.finishLogin(b, location(t, r), "google", "bob-smith")
	if n := e.google.apiCalls("/userinfo"); n != 1 {
		t.Errorf("%d userinfo calls, want 1", n)
	}
	e.checkIdentity(m, "google", e.google.srv.URL+"#110169484474386276334")
}

func TestLoginOIDCUsername(t *testing.T) {
	e := newLoginEnv(t)
	for i, tc := range []struct {
		user fakeUser
		want string
	}{
		{fakeUser{PreferredUsername: "Carol", Email: "c@example.com", Name: "C"}, "carol"},
		{fakeUser{PreferredUsername: "dan", Email: "d@example.com", InUserinfo: true}, "dan"},
		{fakeUser{Email: "Erin.X@example.com", Name: "Erin", InUserinfo: true}, "erin-x"},
		{fakeUser{Email: "frank@example.com", Name: "Frank"}, "frank"},
		{fakeUser{Name: "Grace Hopper"}, "grace-hopper"},
		{fakeUser{Name: "Héctor", InUserinfo: true}, "h-ctor"},
		{fakeUser{}, "user"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			tc.user.Sub = "sub-" + string(rune('a'+i))
			e.login("corp", e.corp, tc.user, tc.want)
		})
	}
}

func TestLoginSameAccountSameUser(t *testing.T) {
	e := newLoginEnv(t)
	octo := fakeUser{ID: 7, Login: "octo"}
	m1, tok1 := e.login("github", e.gh, octo, "octo")
	// Renamed at GitHub: still the same account, the same user and name.
	octo.Login = "octo-renamed"
	m2, tok2 := e.login("github", e.gh, octo, "octo")
	if m1.Identifier != m2.Identifier {
		t.Errorf("the same GitHub account became two users: %s, %s", m1.Identifier, m2.Identifier)
	}
	if tok1 == tok2 {
		t.Error("two logins got the same session token")
	}
	b := e.newBrowser()
	for _, tok := range []string{tok1, tok2} {
		if m := e.me(b, tok); m.Identifier != m1.Identifier {
			t.Errorf("token opens %+v", m)
		}
	}
	if users, sessions := e.counts(); users != 1 || sessions != 2 {
		t.Errorf("%d users, %d sessions; want 1, 2", users, sessions)
	}
}

func TestLoginUsernameCollision(t *testing.T) {
	e := newLoginEnv(t)
	a1, _ := e.login("github", e.gh, fakeUser{ID: 1, Login: "alice"}, "alice")
	a2, _ := e.login("github", e.gh, fakeUser{ID: 2, Login: "Alice"}, "alice-2")
	a3, _ := e.login("corp", e.corp, fakeUser{Sub: "alice", PreferredUsername: "ALICE"}, "alice-3")
	a4, _ := e.login("google", e.google, fakeUser{Sub: "1", Email: "alice@gmail.com"}, "alice-4")
	again, _ := e.login("github", e.gh, fakeUser{ID: 2, Login: "alice"}, "alice-2")
	ids := map[string]bool{a1.Identifier: true, a2.Identifier: true, a3.Identifier: true, a4.Identifier: true}
	if len(ids) != 4 || again.Identifier != a2.Identifier {
		t.Errorf("identifiers %v, again %s: want 4 users, the last one the second", ids, again.Identifier)
	}
}

// TestLoginFailures runs every way a login can fail and checks that each
// answers a page with a link back and creates neither user nor session.
func TestLoginFailures(t *testing.T) {
	// Each case sets up a login in a fresh environment and returns the
	// browser and URL of the request that must fail.
	type setup func(t *testing.T, e *loginEnv) (*browser, string)
	with := func(q map[string]string, drop ...string) func(*url.URL) string {
		return func(u *url.URL) string {
			v := u.Query()
			for k, x := range q {
				v.Set(k, x)
			}
			for _, k := range drop {
				v.Del(k)
			}
			u.RawQuery = v.Encode()
			return u.String()
		}
	}
	// plain starts a login with provider after knob and returns its
	// callback, rewritten by edit if set.
	plain := func(provider string, knob func(e *loginEnv), edit func(*url.URL) string) setup {
		return func(t *testing.T, e *loginEnv) (*browser, string) {
			if knob != nil {
				knob(e)
			}
			b := e.newBrowser()
			cb := e.beginLogin(b, provider)
			if edit != nil {
				return b, edit(cb)
			}
			return b, cb.String()
		}
	}
	corpClaims := func(f func(c map[string]any)) func(e *loginEnv) {
		return func(e *loginEnv) { e.corp.set(func(a *fakeAS) { a.claims = f }) }
	}
	cases := []struct {
		name     string
		status   int
		exchange bool   // the code reaches the token endpoint
		why      string // in the log: the login failed for the right reason
		setup    setup
	}{
		{"github access_denied", 401, false, `error=access_denied`, plain("github", func(e *loginEnv) { e.gh.set(func(f *fakeAS) { f.deny = true }) }, nil)},
		{"oidc access_denied", 401, false, `error=access_denied`, plain("corp", func(e *loginEnv) { e.corp.set(func(f *fakeAS) { f.deny = true }) }, nil)},
		{"missing state", 400, false, `reason="no state"`, plain("github", nil, with(nil, "state"))},
		{"unknown state", 400, false, `reason="unknown, used or expired state"`, plain("github", nil, with(map[string]string{"state": newToken()}))},
		{"missing code", 400, false, `reason="no code"`, plain("github", nil, with(nil, "code"))},
		{"reused state", 400, false, `reason="unknown, used or expired state"`, func(t *testing.T, e *loginEnv) (*browser, string) {
			e.gh.set(func(f *fakeAS) { f.user = fakeUser{ID: 1, Login: "a"} })
			b := e.newBrowser()
			cb := e.beginLogin(b, "github")
			e.finishLogin(b, cb, "github", "a")
			// The attacker (or a reload) replays the callback with a
			// fresh login cookie of its own.
			b2 := e.newBrowser()
			e.startLogin(b2, "github")
			return b2, cb.String()
		}},
		{"state for another provider", 400, false, `reason="state issued for github"`, plain("github", nil, func(u *url.URL) string {
			u.Path = "/auth/corp/callback"
			return u.String()
		})},
		{"oidc state at github's callback", 400, false, `reason="state issued for corp"`, plain("corp", nil, func(u *url.URL) string {
			u.Path = "/auth/github/callback"
			return u.String()
		})},
		{"missing login cookie", 400, false, `reason="login cookie missing or wrong"`, func(t *testing.T, e *loginEnv) (*browser, string) {
			cb := e.beginLogin(e.newBrowser(), "github")
			return e.newBrowser(), cb.String()
		}},
		{"another browser's login cookie", 400, false, `reason="login cookie missing or wrong"`, func(t *testing.T, e *loginEnv) (*browser, string) {
			// Login CSRF: the attacker's callback URL in the victim's
			// browser, which has a login of its own under way.
			victim, attacker := e.newBrowser(), e.newBrowser()
			e.startLogin(victim, "github")
			return victim, e.beginLogin(attacker, "github").String()
		}},
		{"expired state", 400, false, `reason="state expired"`, func(t *testing.T, e *loginEnv) (*browser, string) {
			b := e.newBrowser()
			cb := e.beginLogin(b, "github")
			e.clock.advance(loginTTL + time.Second)
			return b, cb.String()
		}},
		{"failed exchange", 401, true, `bad_verification_code`, plain("github", nil, with(map[string]string{"code": "code-" + newToken()}))},
		{"wrong PKCE verifier github", 401, true, `bad_verification_code`, plain("github", func(e *loginEnv) {
			e.states.mu.Lock()
			e.states.tamper = func(st *LoginState) { st.Verifier = oauth2.GenerateVerifier() }
			e.states.mu.Unlock()
		}, nil)},
		{"wrong PKCE verifier oidc", 401, true, `invalid_grant`, plain("corp", func(e *loginEnv) {
			e.states.mu.Lock()
			e.states.tamper = func(st *LoginState) { st.Verifier = oauth2.GenerateVerifier() }
			e.states.mu.Unlock()
		}, nil)},
		{"failed profile call", 401, true, `500 Internal Server Error`, plain("github", func(e *loginEnv) { e.gh.set(func(f *fakeAS) { f.failAPI = true }) }, nil)},
		{"github user without id", 401, true, `user has no id`, plain("github", func(e *loginEnv) { e.gh.set(func(f *fakeAS) { f.user = fakeUser{Login: "ghost"} }) }, nil)},
		{"failed userinfo call", 401, true, `read userinfo: 500`, plain("corp", func(e *loginEnv) {
			e.corp.set(func(f *fakeAS) {
				f.user = fakeUser{Sub: "s", PreferredUsername: "x", InUserinfo: true}
				f.failAPI = true
			})
		}, nil)},
		{"userinfo of another subject", 401, true, `subject differs`, plain("corp", func(e *loginEnv) {
			e.corp.set(func(f *fakeAS) {
				f.user = fakeUser{Sub: "s", PreferredUsername: "x", InUserinfo: true}
				f.uiSub = "other"
			})
		}, nil)},
		{"no ID token", 401, true, `no id_token`, plain("corp", func(e *loginEnv) { e.corp.set(func(f *fakeAS) { f.noIDTok = true }) }, nil)},
		{"bad ID token signature", 401, true, `failed to verify signature`, plain("corp", func(e *loginEnv) { e.corp.set(func(f *fakeAS) { f.signer = testKey(t, 1) }) }, nil)},
		{"bad ID token signature google", 401, true, `failed to verify signature`, plain("google", func(e *loginEnv) { e.google.set(func(f *fakeAS) { f.signer = testKey(t, 1) }) }, nil)},
		{"wrong audience", 401, true, `expected audience`, plain("corp", corpClaims(func(c map[string]any) { c["aud"] = "someone-else" }), nil)},
		{"wrong audience google", 401, true, `expected audience`, plain("google", func(e *loginEnv) {
			e.google.set(func(f *fakeAS) { f.claims = func(c map[string]any) { c["aud"] = e.corp.clientID } })
		}, nil)},
		{"another authorized party", 401, true, `authorized party`, plain("corp", corpClaims(func(c map[string]any) {
			c["aud"] = []any{c["aud"], "someone-else"}
			c["azp"] = "someone-else"
		}), nil)},
		{"wrong issuer", 401, true, `issued by a different provider`, plain("corp", corpClaims(func(c map[string]any) { c["iss"] = "https://evil.example" }), nil)},
		{"expired ID token", 401, true, `token is expired`, plain("corp", corpClaims(func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		}), nil)},
		{"wrong nonce", 401, true, `wrong nonce`, plain("corp", corpClaims(func(c map[string]any) { c["nonce"] = newToken() }), nil)},
		{"no nonce", 401, true, `wrong nonce`, plain("corp", corpClaims(func(c map[string]any) { delete(c, "nonce") }), nil)},
		{"wrong at_hash", 401, true, `access token hash does not match`, plain("corp", corpClaims(func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }), nil)},
		{"wrong iss parameter", 400, false, `missing or wrong iss parameter`, plain("corp", nil, with(map[string]string{"iss": "https://evil.example"}))},
		{"missing iss parameter", 400, false, `missing or wrong iss parameter`, plain("corp", nil, with(nil, "iss"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newLoginEnv(t)
			b, u := tc.setup(t, e)
			users, sessions := e.counts()
			exchanges := e.tokenRequests()

			resp, body := b.get(u)

			if !strings.Contains(e.logs.String(), tc.why) {
				t.Errorf("the log does not say %q:\n%s", tc.why, e.logs.String())
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body:\n%s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if !strings.Contains(body, `href="/"`) || !strings.Contains(body, "/login") {
				t.Errorf("the page links neither back nor to the login:\n%s", body)
			}
			for _, c := range resp.Cookies() {
				if c.Name == CookieName {
					t.Errorf("a failed login set a session cookie")
				}
			}
			if got := e.tokenRequests() - exchanges; (got > 0) != tc.exchange {
				t.Errorf("%d token requests; want the code exchanged: %v", got, tc.exchange)
			}
			if u2, s2 := e.counts(); u2 != users || s2 != sessions {
				t.Errorf("users %d -> %d, sessions %d -> %d: a failed login created some", users, u2, sessions, s2)
			}
			if b.cookie(e.base+"/", CookieName) != nil {
				t.Error("the browser holds a session cookie")
			}
			r, _ := b.get(e.base + "/auth/me")
			if r.StatusCode != http.StatusUnauthorized {
				t.Errorf("/auth/me: %d, want 401", r.StatusCode)
			}
		})
	}
}

func TestLoginUnknownProvider(t *testing.T) {
	e := newLoginEnv(t)
	b := e.newBrowser()
	for _, p := range []string{"/auth/nope/login", "/auth/nope/callback?state=x&code=y", "/auth/dev/login"} {
		if r, _ := b.get(e.base + p); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
	if users, sessions := e.counts(); users != 0 || sessions != 0 {
		t.Errorf("%d users, %d sessions", users, sessions)
	}
}

func TestLoginCookieSecure(t *testing.T) {
	e := newLoginEnv(t)
	svc := e.newService(NewStateMemory(0), true)
	w := httptest.NewRecorder()
	svc.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://chat.example.com/auth/github/login", nil))
	if w.Code != http.StatusFound {
		t.Fatalf("status %d", w.Code)
	}
	checkLoginCookie(t, w.Result(), true)
}

// TestLoginAcrossNodes starts a login on node A and lets the provider send
// the browser back to node B: with a shared StateRedis it works; with
// per-node memory it cannot.
func TestLoginAcrossNodes(t *testing.T) {
	rdb, prefix := stateTestRedis(t)
	e := newLoginEnvStates(t, NewStateRedis(rdb, prefix))
	nodeB := e.addNode(NewStateRedis(rdb, prefix))
	e.gh.set(func(f *fakeAS) { f.user = fakeUser{ID: 9, Login: "nomad"} })

	b := e.newBrowser()
	cb := e.beginLogin(b, "github")
	bu, _ := url.Parse(nodeB.URL)
	cb.Host = bu.Host // the load balancer picks node B
	resp, body := b.get(cb.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback on node B: %d\n%s", resp.StatusCode, body)
	}
	if m := e.me(b, ""); m.Username != "nomad" { // asked of node A
		t.Errorf("/auth/me on node A: %+v", m)
	}

	t.Run("memory states", func(t *testing.T) {
		e := newLoginEnv(t)
		nodeB := e.addNode(NewStateMemory(0))
		b := e.newBrowser()
		cb := e.beginLogin(b, "github")
		bu, _ := url.Parse(nodeB.URL)
		cb.Host = bu.Host
		if resp, _ := b.get(cb.String()); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("callback on node B with its own memory: %d, want 400", resp.StatusCode)
		}
	})
}

func TestLoginStateStoreDown(t *testing.T) {
	e := newLoginEnv(t)
	dead := stateDeadRedis(t)
	node := e.addNode(NewStateRedis(dead, "x:"))
	b := e.newBrowser()
	resp, body := b.get(node.URL + "/auth/github/login")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `href="/"`) {
		t.Errorf("login with Redis down: %d\n%s", resp.StatusCode, body)
	}
	if n := len(e.gh.lastAuthorize()); n != 0 {
		t.Errorf("%d authorization requests", n)
	}
}
