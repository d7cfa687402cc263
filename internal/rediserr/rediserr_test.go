package rediserr

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
)

// replyError is a Redis error reply, as go-redis returns one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ redis.Error = replyError("")

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a script's bug", replyError("ERR user_script:1: oops"), false},
		{"wrong type", replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"read only replica", replyError("READONLY You can't write against a read only replica."), true},
		{"busy script", replyError("BUSY Redis is busy running a script."), true},
		{"cluster down", replyError("CLUSTERDOWN The cluster is down"), true},
		{"try again", replyError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"moved, out of redirects", replyError("MOVED 11636 127.0.0.1:34725"), true},
		{"ask, out of redirects", replyError("ASK 11636 127.0.0.1:34725"), true},
		{"network", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"timeout", context.DeadlineExceeded, true},
		{"closed client", redis.ErrClosed, true},
	} {
		if got := Unavailable(tc.err); got != tc.want {
			t.Errorf("%s: Unavailable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
