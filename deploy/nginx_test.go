package deploy

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nginx is what the tests need to know of deploy/nginx/nginx.conf.
type nginx struct {
	listen   int
	upstream []string          // host:port of each server in upstream chatd
	proxy    map[string]string // proxy_* directives of the server block: name (and header) -> value
	// locations maps each location ("= /metrics", "/") to its directives,
	// one a line without the semicolon.
	locations map[string][]string
}

// nginxConfig reads deploy/nginx/nginx.conf. It is no full nginx parser: it
// reads one directive a line, which is how the file is written.
func nginxConfig(t *testing.T) nginx {
	t.Helper()
	src := readFile(t, "deploy", "nginx", "nginx.conf")
	cfg := nginx{proxy: map[string]string{}, locations: map[string][]string{}}
	inUpstream := false
	location := ""
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		f := strings.Fields(strings.TrimSuffix(line, ";"))
		if len(f) == 0 {
			continue
		}
		// Blocks: the upstream's servers, and each location's directives.
		switch {
		case f[0] == "upstream" && len(f) > 1 && f[1] == "chatd":
			inUpstream = true
			continue
		case inUpstream && f[0] == "}":
			inUpstream = false
			continue
		case inUpstream && f[0] == "server" && len(f) > 1:
			cfg.upstream = append(cfg.upstream, f[1])
			continue
		case f[0] == "location" && f[len(f)-1] == "{":
			location = strings.Join(f[1:len(f)-1], " ")
			cfg.locations[location] = nil
			continue
		case location != "" && f[0] == "}":
			location = ""
			continue
		}
		if location != "" {
			cfg.locations[location] = append(cfg.locations[location], strings.Join(f, " "))
		}
		switch {
		case f[0] == "listen" && len(f) > 1:
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("nginx.conf: listen %q", f[1])
			}
			cfg.listen = n
		case f[0] == "proxy_set_header" && len(f) > 2:
			cfg.proxy["proxy_set_header "+f[1]] = strings.Join(f[2:], " ")
		case strings.HasPrefix(f[0], "proxy_") && len(f) > 1:
			cfg.proxy[f[0]] = strings.Join(f[1:], " ")
		}
	}
	return cfg
}

func TestNginxWebsocketProxy(t *testing.T) {
	cfg := nginxConfig(t)
	for directive, want := range map[string]string{
		"proxy_http_version": "1.1",
		// The websocket upgrade passes through.
		"proxy_set_header Upgrade":    "$http_upgrade",
		"proxy_set_header Connection": "$connection_upgrade",
		// chatd compares Origin with Host, port included.
		"proxy_set_header Host": "$http_host",
		"proxy_pass":            "http://chatd",
	} {
		if got := cfg.proxy[directive]; got != want {
			t.Errorf("nginx.conf: %s %q, want %q", directive, got, want)
		}
	}
	if !regexp.MustCompile(`(^|\s)http_503(\s|$)`).MatchString(cfg.proxy["proxy_next_upstream"]) {
		t.Errorf("nginx.conf: proxy_next_upstream %q does not retry a draining node's 503", cfg.proxy["proxy_next_upstream"])
	}
	// Idle websockets see a ping every CHAT_PING_INTERVAL (20s by default);
	// the proxy must wait far longer than that before it cuts one.
	for _, d := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
		v := cfg.proxy[d]
		got, err := time.ParseDuration(v)
		if err != nil {
			t.Errorf("nginx.conf: %s %q: %v", d, v, err)
			continue
		}
		if got < 10*time.Minute {
			t.Errorf("nginx.conf: %s %v is too short for websockets", d, got)
		}
	}
}

// /metrics never leaves through the proxy, whatever the nodes do with it
// (they serve it on their own metrics port and answer 404 here).
func TestNginxHidesMetrics(t *testing.T) {
	cfg := nginxConfig(t)
	if got := cfg.locations["= /metrics"]; !slices.Equal(got, []string{"return 404"}) {
		t.Errorf("nginx.conf: location = /metrics has %q, want return 404", got)
	}
	for loc, directives := range cfg.locations {
		if strings.Contains(loc, "metrics") && slices.ContainsFunc(directives, func(d string) bool { return strings.HasPrefix(d, "proxy_pass") }) {
			t.Errorf("nginx.conf: location %s passes metrics on", loc)
		}
	}
	if _, ok := cfg.locations["/"]; !ok {
		t.Errorf("nginx.conf: no location / for the chat (found %v)", sortedKeys(cfg.locations))
	}
}

// shutdownTimeout is the value of CHAT_SHUTDOWN_TIMEOUT, or its default when
// v is nil or empty.
func shutdownTimeout(t *testing.T, v *string) time.Duration {
	t.Helper()
	s := "10s"
	if v != nil && *v != "" {
		s = *v
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("CHAT_SHUTDOWN_TIMEOUT %q: %v", s, err)
	}
	return d
}
