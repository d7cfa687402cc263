package origin

import (
	"net/http/httptest"
	"testing"
)

func TestAllowed(t *testing.T) {
	cases := []struct {
		name     string
		host     string // the request's Host
		origin   string // "" sends no Origin header
		patterns []string
		want     bool
	}{
		{"no Origin header", "chat.example.com", "", nil, true},
		{"same host", "chat.example.com", "https://chat.example.com", nil, true},
		{"same host and port", "localhost:8080", "http://localhost:8080", nil, true},
		{"same host in other case", "Chat.Example.com", "https://chat.EXAMPLE.com", nil, true},
		{"scheme is not compared", "chat.example.com", "http://chat.example.com", nil, true},
		{"another host", "chat.example.com", "https://evil.example", nil, false},
		{"another port", "localhost:8080", "http://localhost:9090", nil, false},
		{"a sub-domain is another host", "example.com", "https://chat.example.com", nil, false},
		{"a suffix of the host is another host", "chat.example.com", "https://chat.example.com.evil.example", nil, false},
		{"null origin", "chat.example.com", "null", nil, false},
		{"not a URL", "chat.example.com", "http://%zz", nil, false},
		{"pattern matches exactly", "chat.example.com", "https://app.example.org", []string{"app.example.org"}, true},
		{"pattern with wildcard", "chat.example.com", "https://a.example.org", []string{"*.example.org"}, true},
		{"wildcard spans dots", "chat.example.com", "https://a.b.example.org", []string{"*.example.org"}, true},
		{"wildcard needs the dot", "chat.example.com", "https://example.org", []string{"*.example.org"}, false},
		{"pattern with port wildcard", "chat.example.com", "http://localhost:5173", []string{"localhost:*"}, true},
		{"pattern is case-insensitive", "chat.example.com", "https://APP.example.org", []string{"App.Example.ORG"}, true},
		{"no pattern matches", "chat.example.com", "https://evil.example", []string{"app.example.org", "*.example.net"}, false},
		{"second pattern matches", "chat.example.com", "https://x.example.net", []string{"app.example.org", "*.example.net"}, true},
		{"a bad pattern matches nothing", "chat.example.com", "https://evil.example", []string{"["}, false},
		{"star allows every origin", "chat.example.com", "https://evil.example", []string{"*"}, true},
		{"star allows the null origin", "chat.example.com", "null", []string{"*"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://"+tc.host+"/auth/logout", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if got := Allowed(r, tc.patterns); got != tc.want {
				t.Fatalf("Allowed(Host %q, Origin %q, %q) = %v, want %v", tc.host, tc.origin, tc.patterns, got, tc.want)
			}
		})
	}
}
