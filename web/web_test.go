package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/wirechat/chat/auth"
)

// The client is ES modules: a browser refuses a module served with a type
// other than JavaScript, and an import of a file that is not embedded
// breaks the whole page.
func TestHandlerServesTheClient(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()

	get := func(path string) (string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return resp.Header.Get("Content-Type"), string(body)
	}

	typ, index := get("/")
	if !strings.HasPrefix(typ, "text/html") || !strings.Contains(index, `<script type="module" src="app.js">`) {
		t.Fatalf("GET /: %s\n%s", typ, index)
	}
	if typ, _ := get("/style.css"); !strings.HasPrefix(typ, "text/css") {
		t.Errorf("style.css served as %s", typ)
	}

	imports := regexp.MustCompile(`(?m)^import .* from '\./([a-z-]+\.js)';$`)
	files, err := fs.Glob(static, "static/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no modules embedded: %v", err)
	}
	found := 0
	for _, f := range files {
		name := strings.TrimPrefix(f, "static/")
		typ, body := get("/" + name)
		if !strings.HasPrefix(typ, "text/javascript") && !strings.HasPrefix(typ, "application/javascript") {
			t.Errorf("%s served as %s", name, typ)
		}
		for _, m := range imports.FindAllStringSubmatch(body, -1) {
			found++
			if _, err := fs.Stat(static, "static/"+m[1]); err != nil {
				t.Errorf("%s imports %s, which is not embedded", name, m[1])
			}
		}
	}
	if found == 0 {
		t.Error("found no imports between the modules: the pattern is stale")
	}
}

// chat-client.js may be imported by a page of another origin (a module
// script is fetched with CORS); nothing else is shared that way.
func TestClientModuleIsImportable(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for path, want := range map[string]string{ClientModulePath: "*", "/app.js": "", "/": "", SessionHintPath: ""} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Origin", "https://app.example.org")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q, want %q", path, got, want)
		}
	}
}

// Spec section 9 and issue 17: the page and every asset carry a strict
// policy. Nothing inline may run or style the page, nothing is loaded from
// elsewhere, the page cannot be framed, and the only connections are to
// its own origin and websocket.
func TestSecurityHeaders(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	paths := []string{"/", "/index.html", "/app.js", ClientModulePath, "/style.css", "/icon.svg", SessionHintPath, "/no-such-file"}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			resp, err := http.Get(srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := map[string]string{
				"X-Content-Type-Options": "nosniff",
				"X-Frame-Options":        "DENY",
				"Referrer-Policy":        "same-origin",
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			csp := directives(t, resp.Header.Get("Content-Security-Policy"))
			for name, want := range map[string]string{
				"default-src":     "'self'",
				"script-src":      "'self'",
				"style-src":       "'self'",
				"img-src":         "'self'",
				"object-src":      "'none'",
				"base-uri":        "'none'",
				"frame-ancestors": "'none'",
				"connect-src":     "'self' ws://" + host + " wss://" + host,
			} {
				if got := csp[name]; got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			for name, v := range csp {
				if strings.Contains(v, "unsafe") || strings.Contains(v, "*") || strings.Contains(v, "data:") {
					t.Errorf("%s allows too much: %q", name, v)
				}
			}
		})
	}
}

// A Host header that does not look like a host is not copied into the
// policy: connect-src falls back to 'self' alone.
func TestPolicyIgnoresAStrangeHost(t *testing.T) {
	for _, host := range []string{"evil.example; script-src *", "a b", "x'y", ""} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		Handler().ServeHTTP(rec, req)
		csp := rec.Header().Get("Content-Security-Policy")
		if got := directives(t, csp)["connect-src"]; got != "'self'" {
			t.Errorf("Host %q: connect-src %q in %q", host, got, csp)
		}
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "[::1]:8080"
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	if got := directives(t, rec.Header().Get("Content-Security-Policy"))["connect-src"]; got != "'self' ws://[::1]:8080 wss://[::1]:8080" {
		t.Errorf("an IPv6 host: connect-src %q", got)
	}
}

// directives splits a policy into its directives, each named once.
func directives(t *testing.T, policy string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range strings.Split(policy, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		if name == "" {
			continue
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s twice in %q", name, policy)
		}
		out[name] = value
	}
	return out
}

// The page never carries inline script, inline style or data: URLs, which
// the policy refuses: an HTML file that had them would break in a browser.
func TestPageHasNothingInline(t *testing.T) {
	page, err := fs.ReadFile(static, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`), // a script with a body
		regexp.MustCompile(`<style[\s>]`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`(?:href|src)="(?:data|javascript):`),
	} {
		if m := bad.Find(page); m != nil {
			t.Errorf("index.html has %q, which the policy refuses", m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAll(page, -1) {
		if !strings.Contains(string(tag), ` src="`) {
			t.Errorf("index.html has an inline script: %s", tag)
		}
	}
}

// The session hint says whether a session cookie came, without judging it.
func TestSessionHint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cookie *http.Cookie
		want   string
	}{
		{"no cookie", nil, `{"cookie":false}`},
		{"another cookie", &http.Cookie{Name: "other", Value: "x"}, `{"cookie":false}`},
		{"a session cookie", &http.Cookie{Name: auth.CookieName, Value: "anything"}, `{"cookie":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", SessionHintPath, nil)
			if tc.cookie != nil {
				req.AddCookie(tc.cookie)
			}
			rec := httptest.NewRecorder()
			Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.String() != tc.want {
				t.Errorf("%d %s, want 200 %s", rec.Code, rec.Body, tc.want)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q", got)
			}
		})
	}
}
