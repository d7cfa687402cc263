// Package web serves the browser client, embedded in the binary so that
// chatd needs no Node.js and no internet at run time.
//
// Every response carries the security headers of spec section 9: a strict
// Content-Security-Policy (the client has no inline script or style, loads
// nothing from elsewhere and talks only to its own origin), nosniff, a
// referrer policy and a refusal to be framed.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"regexp"

	"github.com/wirechat/chat/auth"
)

//go:embed static
var static embed.FS

// SessionHintPath answers whether the browser sent a session cookie, which
// the page cannot see itself (the cookie is HttpOnly). It validates nothing:
// it spares a signed-out page load the 401 of GET /auth/me, which a browser
// reports as an error in its console.
const SessionHintPath = "/session-hint"

// Handler serves the client's files and the session hint; the gateway
// mounts it at "/".
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	mux := http.NewServeMux()
	mux.Handle("/", files)
	mux.Handle("GET "+ClientModulePath, importable(files))
	mux.HandleFunc("GET "+SessionHintPath, sessionHint)
	return secure(mux)
}

// ClientModulePath is chat-client.js, the client library as an ES module
// (docs/clients.md), which pages of other origins may import from here.
const ClientModulePath = "/chat-client.js"

// importable lets a page of any origin load h's response as a module
// script: a browser fetches a module with CORS, and refuses it without
// Access-Control-Allow-Origin. The file is public and the same for
// everyone, and the fetch carries no credentials, so any origin may have
// it. This does not let another origin talk to the chat: its websocket
// still has to pass CHAT_ALLOWED_ORIGINS.
func importable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h.ServeHTTP(w, r)
	})
}

func sessionHint(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if c, err := r.Cookie(auth.CookieName); err == nil && c.Value != "" {
		w.Write([]byte(`{"cookie":true}`))
		return
	}
	w.Write([]byte(`{"cookie":false}`))
}

// policy is the Content-Security-Policy without its connect-src, which
// names the page's own websocket (see connectSrc).
const policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// hostPattern is what a Host header may hold to be named in the policy:
// a name or an address and a port, nothing that could end the directive.
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

// connectSrc allows fetches to the page's origin and its websocket.
// CSP level 3 lets 'self' cover ws: and wss: of the same host, and current
// browsers follow it; older ones (Safari before 15.4) need the websocket
// named, so it is, after the Host the browser asked for. A Host that does
// not look like one leaves 'self' alone.
func connectSrc(r *http.Request) string {
	if !hostPattern.MatchString(r.Host) {
		return "connect-src 'self'"
	}
	return "connect-src 'self' ws://" + r.Host + " wss://" + r.Host
}

// secure adds the security headers to every response of h.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", policy+"; "+connectSrc(r))
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on the page's own POSTs (Fetch, "serializing a
		// request origin"), and the server refuses those as cross-origin.
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}
