package deploy

import (
	"regexp"
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
}

// nginxConfig reads deploy/nginx/nginx.conf. It is no full nginx parser: it
// reads one directive a line, which is how the file is written.
func nginxConfig(t *testing.T) nginx {
	t.Helper()
	src := readFile(t, "deploy", "nginx", "nginx.conf")
	cfg := nginx{proxy: map[string]string{}}
	inUpstream := false
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		f := strings.Fields(strings.TrimSuffix(line, ";"))
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "upstream" && len(f) > 1 && f[1] == "chatd":
			inUpstream = true
		case inUpstream && f[0] == "}":
			inUpstream = false
		case inUpstream && f[0] == "server" && len(f) > 1:
			cfg.upstream = append(cfg.upstream, f[1])
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
