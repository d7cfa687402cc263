package chattest

import (
	"runtime"
	"strings"
	"time"
)

// Leaked waits up to d for the goroutines whose stacks name marker (a
// package path and a dot, e.g. "wirechat/chat/client.") to end, and returns
// the stacks of those still running, or "" when none is. A TestMain calls
// it after the tests, to fail a package whose goroutines outlive them.
func Leaked(marker string, d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaks []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, marker) && !strings.Contains(g, "chattest.Leaked") {
				leaks = append(leaks, g)
			}
		}
		if len(leaks) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
