package deploy

import (
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// root is the repository root, seen from this package's folder.
const root = ".."

// defaultAddr is chatd's listen address when CHAT_ADDR is not set and dev
// login is off; with dev login on it is loopback only (127.0.0.1:8080), so a
// container that must be reached from outside itself sets CHAT_ADDR.
const defaultAddr = ":8080"

// envName matches a CHAT_ variable name written as a Go string literal.
var envName = regexp.MustCompile(`"(CHAT_[A-Z0-9_]+)"`)

// knownEnv returns the names of every CHAT_ variable the server reads,
// taken from the string literals of its settings table, cmd/chatd/settings.go.
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	path := filepath.Join(root, "cmd", "chatd", "settings.go")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the server's settings are read from %s: %v", path, err)
	}
	known := map[string]bool{}
	for _, m := range envName.FindAllSubmatch(src, -1) {
		known[string(m[1])] = true
	}
	if !known["CHAT_ADDR"] || !known["CHAT_REDIS_URL"] {
		t.Fatalf("%s names neither CHAT_ADDR nor CHAT_REDIS_URL as a string literal; found %v", path, sortedKeys(known))
	}
	return known
}

// checkKnown reports every CHAT_ name in names that the server does not read.
// Names without the CHAT_ prefix (GOMEMLIMIT, say) are not the server's and
// are let through.
func checkKnown(t *testing.T, where string, names []string) {
	t.Helper()
	known := knownEnv(t)
	for _, n := range names {
		if strings.HasPrefix(n, "CHAT_") && !known[n] {
			t.Errorf("%s names %s, which chatd does not read (cmd/chatd/settings.go)", where, n)
		}
	}
}

// addrPort returns the TCP port of a CHAT_ADDR value; an empty value is the
// server's default.
func addrPort(t *testing.T, addr string) int {
	t.Helper()
	if addr == "" {
		addr = defaultAddr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("CHAT_ADDR %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		t.Fatalf("CHAT_ADDR %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return n
}

// checkAllInterfaces reports a listen address that other hosts (a proxy, a
// kubelet, Prometheus) cannot reach: one not set, or on loopback.
func checkAllInterfaces(t *testing.T, what, addr string) {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s %q: %v", what, addr, err)
		return
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("%s %q listens on %s only: set it to every interface (e.g. :8080)", what, addr, host)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func readFile(t *testing.T, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{root}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
