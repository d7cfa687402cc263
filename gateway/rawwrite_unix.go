//go:build unix

package gateway

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns the descriptor of the socket under nc for writeNowait,
// or nil if nc is not a plain socket (a TLS connection, a pipe in tests).
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// writeNowait writes as much of p to the socket under raw as its send
// buffer takes at once, without waiting for room: n may be short of
// len(p), and a full buffer is not an error.
func writeNowait(raw syscall.RawConn, p []byte) (n int, err error) {
	werr := raw.Write(func(fd uintptr) bool {
		for {
			n, err = syscall.Write(int(fd), p)
			if !errors.Is(err, syscall.EINTR) {
				return true // done, whatever the socket took: never wait
			}
		}
	})
	if errors.Is(err, syscall.EAGAIN) {
		n, err = 0, nil
	}
	if n < 0 {
		n = 0
	}
	if err == nil {
		err = werr
	}
	return n, err
}
