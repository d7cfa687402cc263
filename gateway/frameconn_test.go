package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wirechat/chat/gateway"
)

// TestFrameLengths sends messages whose frames need each of the three
// length encodings of RFC 6455 (7 bits, 16 bits, 64 bits) and checks that a
// real websocket client reads them whole.
func TestFrameLengths(t *testing.T) {
	n := startNode(t, memoryBackend(), gateway.Config{MaxMessageBytes: 100000, MaxFrameBytes: 120000, RateLimit: 1000})
	alice := n.user("alice")
	alice.do("create", "#big")
	alice.expect("event")
	alice.do("join", "#big")
	alice.expect("event")
	for _, size := range []int{1, 20, 125, 126, 1000, 65535, 65536, 99999} {
		text := strings.Repeat("x", size)
		alice.send(fmt.Sprintf(`{"type":"message","target":"#big","message":"%s"}`, text))
		if m := alice.expect("message"); m["message"] != text {
			t.Fatalf("size %d: got %d bytes back", size, len(m["message"].(string)))
		}
	}
}
