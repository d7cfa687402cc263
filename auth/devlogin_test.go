package auth

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func newDevService(t *testing.T, cfg Config) (*Service, *Memory, *httptest.Server) {
	t.Helper()
	store := NewMemory()
	svc := New(cfg, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return svc, store, srv
}

func devLogin(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url+"/auth/dev/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestDevLogin(t *testing.T) {
	_, store, srv := newDevService(t, Config{DevLogin: true, SecureCookie: true})
	resp := devLogin(t, srv.URL, `{"username":"Alice"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %s", resp.Status)
	}
	var got struct{ Token, Identifier, Username string }
	json.NewDecoder(resp.Body).Decode(&got)
	if got.Username != "alice" || len(got.Token) < 43 || got.Identifier == "" {
		t.Fatalf("login answer %+v", got)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != got.Token || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" {
		t.Fatalf("cookie %+v", cookie)
	}
	// Stored only as a hash.
	if _, err := store.Session(t.Context(), got.Token); err == nil {
		t.Fatal("the raw token is a store key")
	}
	if s, err := store.Session(t.Context(), hashToken(got.Token)); err != nil || s.UserID != got.Identifier || s.Provider != "dev" {
		t.Fatalf("stored session %+v %v", s, err)
	}
	// The same username is the same user, with a new token.
	resp2 := devLogin(t, srv.URL, `{"username":"alice"}`)
	var again struct{ Token, Identifier string }
	json.NewDecoder(resp2.Body).Decode(&again)
	if again.Identifier != got.Identifier || again.Token == got.Token {
		t.Fatalf("second login %+v", again)
	}

	for _, body := range []string{``, `{}`, `{"username":""}`, `{"username":"a b"}`, `{"username":7}`, `{"username":"` + strings.Repeat("x", 40) + `"}`} {
		if r := devLogin(t, srv.URL, body); r.StatusCode != http.StatusBadRequest {
			t.Errorf("body %q: %s, want 400", body, r.Status)
		}
	}

	// me with cookie and with bearer; logout; me again.
	for _, auth := range []func(*http.Request){
		func(r *http.Request) { r.AddCookie(&http.Cookie{Name: CookieName, Value: got.Token}) },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+got.Token) },
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/auth/me", nil)
		auth(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var me map[string]string
		json.NewDecoder(resp.Body).Decode(&me)
		resp.Body.Close()
		if me["identifier"] != got.Identifier || me["username"] != "alice" || me["provider"] != "dev" {
			t.Fatalf("me: %v", me)
		}
	}
	// Tokens are never taken from the URL.
	if resp, _ := http.Get(srv.URL + "/auth/me?token=" + got.Token); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token in URL accepted: %s", resp.Status)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+got.Token)
	out, _ := http.DefaultClient.Do(req)
	if out.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %s", out.Status)
	}
	req, _ = http.NewRequest("GET", srv.URL+"/auth/me", nil)
	req.Header.Set("Authorization", "Bearer "+got.Token)
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("me after logout: %s", resp.Status)
	}
}

func TestDevLoginOff(t *testing.T) {
	_, _, srv := newDevService(t, Config{})
	if r := devLogin(t, srv.URL, `{"username":"alice"}`); r.StatusCode != http.StatusNotFound {
		t.Fatalf("dev login while off: %s", r.Status)
	}
	resp, err := http.Get(srv.URL + "/auth/providers")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != `{"providers":[]}` {
		t.Fatalf("providers: %s", b)
	}
}

func TestSessionExpires(t *testing.T) {
	svc, _, srv := newDevService(t, Config{DevLogin: true, SessionTTL: time.Hour})
	resp := devLogin(t, srv.URL, `{"username":"bob"}`)
	var got struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&got)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+got.Token)
	if _, err := svc.Authenticate(req); err != nil {
		t.Fatal(err)
	}
	svc.store.(*Memory).now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := svc.Authenticate(req); err != ErrNoSession {
		t.Fatalf("expired session: %v", err)
	}
}

// post POSTs body to url with the given Content-Type and Origin (each
// left out when empty) and token as Bearer (when set).
func post(t *testing.T, url, contentType, origin, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// A cross-site form or no-cors fetch can send only text/plain, form or
// multipart bodies without a preflight: dev login takes JSON alone.
func TestDevLoginContentType(t *testing.T) {
	_, store, srv := newDevService(t, Config{DevLogin: true})
	body := `{"username":"alice"}`
	for _, ct := range []string{"", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonp", "application/json;;"} {
		if r := post(t, srv.URL+"/auth/dev/login", ct, "", "", body); r.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: %s, want 415", ct, r.Status)
		}
	}
	if users, sessions := store.oauthTestCounts(); users != 0 || sessions != 0 {
		t.Fatalf("refused logins made %d users, %d sessions", users, sessions)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
		if r := post(t, srv.URL+"/auth/dev/login", ct, "", "", body); r.StatusCode != http.StatusOK {
			t.Errorf("Content-Type %q: %s, want 200", ct, r.Status)
		}
	}
}

// Dev login and logout refuse another site's requests by the websocket
// upgrade's rule: same host, an allowed pattern, or no Origin at all.
func TestDevLoginAndLogoutOrigin(t *testing.T) {
	_, store, srv := newDevService(t, Config{DevLogin: true, AllowedOrigins: []string{"*.example.org"}})
	const body = `{"username":"alice"}`
	const evil = "https://evil.example"
	if r := post(t, srv.URL+"/auth/dev/login", "application/json", evil, "", body); r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin dev login: %s, want 403", r.Status)
	}
	if len(post(t, srv.URL+"/auth/dev/login", "text/plain", evil, "", body).Cookies()) != 0 {
		t.Fatal("a refused dev login set a cookie")
	}
	if users, sessions := store.oauthTestCounts(); users != 0 || sessions != 0 {
		t.Fatalf("refused logins made %d users, %d sessions", users, sessions)
	}
	var tokens []string
	for _, o := range []string{"", srv.URL, "https://app.example.org"} {
		r := post(t, srv.URL+"/auth/dev/login", "application/json", o, "", body)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("dev login with Origin %q: %s, want 200", o, r.Status)
		}
		var got struct{ Token string }
		json.NewDecoder(r.Body).Decode(&got)
		tokens = append(tokens, got.Token)
	}

	if r := post(t, srv.URL+"/auth/logout", "", evil, tokens[0], ""); r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin logout: %s, want 403", r.Status)
	}
	if _, err := store.Session(t.Context(), hashToken(tokens[0])); err != nil {
		t.Fatalf("a refused logout revoked the session: %v", err)
	}
	for i, o := range []string{"", srv.URL, "https://app.example.org"} {
		if r := post(t, srv.URL+"/auth/logout", "", o, tokens[i], ""); r.StatusCode != http.StatusNoContent {
			t.Fatalf("logout with Origin %q: %s, want 204", o, r.Status)
		}
	}
}

// A login past MaxLoginsPerUser revokes the user's oldest session, and
// OnLogout closes its websockets as at logout.
func TestLoginsPerUser(t *testing.T) {
	var mu sync.Mutex
	var closed []Session
	_, _, srv := newDevService(t, Config{DevLogin: true, MaxLoginsPerUser: 2, OnLogout: func(ctx context.Context, s Session) {
		mu.Lock()
		defer mu.Unlock()
		closed = append(closed, s)
	}})
	type answer struct{ Token, Identifier string }
	var logins []answer
	for range 3 {
		var a answer
		json.NewDecoder(devLogin(t, srv.URL, `{"username":"alice"}`).Body).Decode(&a)
		logins = append(logins, a)
	}
	var bob answer
	json.NewDecoder(devLogin(t, srv.URL, `{"username":"bob"}`).Body).Decode(&bob)
	me := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/auth/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, want := range []int{http.StatusUnauthorized, http.StatusOK, http.StatusOK} {
		if got := me(logins[i].Token); got != want {
			t.Errorf("alice's login %d: /auth/me %d, want %d", i, got, want)
		}
	}
	if me(bob.Token) != http.StatusOK {
		t.Error("bob's session was revoked")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(closed) != 1 || closed[0].UserID != logins[0].Identifier {
		t.Fatalf("OnLogout got %+v, want alice's first session", closed)
	}
}
