//go:build !unix

package gateway

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns nil: writes that do not wait are not available here, so
// every write is left to a writer goroutine.
func rawConn(net.Conn) syscall.RawConn { return nil }

// writeNowait is never called: rawConn returns nil.
func writeNowait(raw syscall.RawConn, p []byte) (int, error) {
	return 0, errors.ErrUnsupported
}
