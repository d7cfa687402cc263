// Package origin decides whether a browser's request comes from another
// site, by the rule of the websocket upgrade (spec section 3), so that the
// upgrade and the state-changing /auth/ endpoints (spec section 9) apply
// the same rule.
//
// A request is same-origin, and allowed, when it has no Origin header (a
// non-browser client: curl, scripts, bots), or when its Origin's host
// (host[:port], without the scheme) is the request's Host, ignoring case.
// Otherwise it is allowed only when that host, lower-cased, matches one of
// the configured patterns (CHAT_ALLOWED_ORIGINS) by path.Match, as in
// "chat.example.com", "*.example.com" or "localhost:*" ('*' matches any
// run of characters, dots included, so "*.example.com" also matches
// "a.b.example.com", but not "example.com"). An Origin that is
// not a URL, and the opaque origin "null", have no host, which only the
// pattern "*" matches.
package origin

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// Allowed reports whether r is same-origin or comes from an origin whose
// host matches one of patterns (see the package comment).
func Allowed(r *http.Request, patterns []string) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	host := strings.ToLower(u.Host)
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}
