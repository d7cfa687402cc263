// Package rediserr tells apart the errors of a Redis call: those Redis
// itself answered (a script's bug, a wrong type), which a retry would meet
// again, from those that mean Redis could not be reached or could not
// serve the call just now, after which the call may be tried again.
package rediserr

import (
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Unavailable reports whether err means that Redis could not serve the
// call now: the network failed, the call timed out, or Redis answered with
// an error it gives while starting, failing over or busy (LOADING,
// READONLY, MASTERDOWN, BUSY, TRYAGAIN, CLUSTERDOWN), or a redirection
// (MOVED, ASK) that reached the caller because the cluster client ran out
// of redirects while slots changed hands: the call did not run. Any other
// error is Redis's answer to the call itself.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	return !Answered(err) || transient(err)
}

// Answered reports whether err is an error reply of Redis, as opposed to a
// failure to get a reply at all.
func Answered(err error) bool {
	var re redis.Error
	var ne net.Error
	return errors.As(err, &re) && !errors.As(err, &ne)
}

func transient(err error) bool {
	msg := err.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MOVED ", "ASK "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
