package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLoginLimiter(t *testing.T) {
	l := newLoginLimiter(3)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		if wait, _ := l.allow("192.0.2.1", t0); wait != 0 {
			t.Fatalf("login %d of a full bucket refused", i+1)
		}
	}
	wait, first := l.allow("192.0.2.1", t0)
	if wait != 20*time.Second || !first {
		t.Fatalf("4th login: wait %v, first refusal %v; want 20s, true", wait, first)
	}
	if wait, first := l.allow("192.0.2.1", t0.Add(10*time.Second)); wait != 10*time.Second || first {
		t.Fatalf("5th login: wait %v, first refusal %v; want 10s, false", wait, first)
	}
	if wait, _ := l.allow("192.0.2.2", t0); wait != 0 {
		t.Fatal("another address shares the bucket")
	}
	// Refused logins took nothing: one more after 20 s, not after 40 s.
	if wait, _ := l.allow("192.0.2.1", t0.Add(20*time.Second)); wait != 0 {
		t.Fatal("refused logins counted")
	}
	if wait, first := l.allow("192.0.2.1", t0.Add(20*time.Second)); wait != 20*time.Second || !first {
		t.Fatalf("after an allowed login: wait %v, first refusal %v; want 20s, true", wait, first)
	}
	// A minute later the bucket is full again.
	for i := range 3 {
		if wait, _ := l.allow("192.0.2.1", t0.Add(80*time.Second)); wait != 0 {
			t.Fatalf("login %d a minute later refused", i+1)
		}
	}
}

// The buckets of idle addresses are dropped, and no more than
// maxLoginAddrs are kept: past that, new addresses share one bucket.
func TestLoginLimiterMemory(t *testing.T) {
	l := newLoginLimiter(2)
	t0 := time.Unix(1_700_000_000, 0)
	addr := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
	for i := range maxLoginAddrs {
		l.allow(addr(i), t0)
	}
	if n := len(l.addrs); n != maxLoginAddrs {
		t.Fatalf("%d buckets, want %d", n, maxLoginAddrs)
	}
	// Full: newcomers share the overflow bucket, which holds two logins.
	for i, want := range []bool{true, true, false} {
		wait, _ := l.allow(addr(maxLoginAddrs+i), t0)
		if (wait == 0) != want {
			t.Fatalf("newcomer %d: wait %v, want allowed %v", i, wait, want)
		}
	}
	if wait, _ := l.allow(addr(0), t0); wait != 0 {
		t.Fatal("an address with a bucket of its own was refused")
	}
	if n := len(l.addrs); n != maxLoginAddrs {
		t.Fatalf("%d buckets, want %d", n, maxLoginAddrs)
	}
	// A minute later every bucket is full again, as good as none: the
	// next newcomer's login sweeps them away and gets its own.
	later := t0.Add(time.Minute)
	if wait, _ := l.allow("192.0.2.9", later); wait != 0 {
		t.Fatal("a newcomer was refused after the table emptied")
	}
	if n := len(l.addrs); n != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", n)
	}
	// Below the bound, buckets are swept as the table doubles.
	for i := range 3000 {
		l.allow(addr(i), later)
	}
	for i := range 3000 {
		l.allow(addr(100_000+i), later.Add(time.Minute))
	}
	if n := len(l.addrs); n > 4096 {
		t.Fatalf("%d buckets: the idle ones were not dropped", n)
	}
}

func TestClientAddr(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"@", "@"},
		{"", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if got := clientAddr(r); got != tc.want {
			t.Errorf("clientAddr(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

func TestDevLoginRateLimit(t *testing.T) {
	svc, store, srv := newDevService(t, Config{DevLogin: true, LoginRateLimit: 2})
	clock := &testClock{}
	svc.now = clock.now
	for i := range 2 {
		if r := devLogin(t, srv.URL, fmt.Sprintf(`{"username":"u%d"}`, i)); r.StatusCode != http.StatusOK {
			t.Fatalf("login %d: %s", i, r.Status)
		}
	}
	r := devLogin(t, srv.URL, `{"username":"u2"}`)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "30" || len(r.Cookies()) != 0 {
		t.Fatalf("3rd login: %s, Retry-After %q, cookies %v; want 429, 30, none", r.Status, r.Header.Get("Retry-After"), r.Cookies())
	}
	if users, sessions := store.oauthTestCounts(); users != 2 || sessions != 2 {
		t.Fatalf("%d users, %d sessions; want 2, 2", users, sessions)
	}
	// Another address is not limited by this one's logins.
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/auth/dev/login", strings.NewReader(`{"username":"u3"}`))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "192.0.2.7:5555"
	svc.Handler().ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("login from another address: %d", w.Code)
	}
	clock.advance(30 * time.Second)
	if r := devLogin(t, srv.URL, `{"username":"u2"}`); r.StatusCode != http.StatusOK {
		t.Fatalf("login after the wait: %s", r.Status)
	}
}

// A social login takes two from the bucket: the start and the callback.
// A callback refused for the limit keeps its state and cookie, so the
// same callback works after the wait.
func TestSocialLoginRateLimit(t *testing.T) {
	e := newLoginEnvWith(t, loginOptions{tune: func(c *Config) { c.LoginRateLimit = 3 }})
	e.gh.set(func(f *fakeAS) { f.user = fakeUser{ID: 5, Login: "five"} })
	b := e.newBrowser()
	e.finishLogin(b, e.beginLogin(b, "github"), "github", "five") // 2
	cb := e.beginLogin(b, "github")                               // 3
	resp, body := b.get(cb.String())                              // 4: refused
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "20" {
		t.Fatalf("callback over the limit: %d, Retry-After %q; want 429, 20\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("refused callback's Referrer-Policy %q, want no-referrer", got)
	}
	if !strings.Contains(body, `href="/"`) {
		t.Errorf("the page links nowhere:\n%s", body)
	}
	if r, _ := b.get(e.base + "/auth/github/login"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("login start over the limit: %d, want 429", r.StatusCode)
	}
	if n := e.gh.tokenRequests(); n != 1 {
		t.Fatalf("%d code exchanges, want 1: a refused callback reached the provider", n)
	}
	e.clock.advance(20 * time.Second)
	e.finishLogin(b, cb, "github", "five")
}
