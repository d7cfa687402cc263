package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// protoError is a failed request, as the client is told about it.
type protoError struct {
	code protocol.Code
	msg  string
}

func (e *protoError) Error() string { return string(e.code) + ": " + e.msg }

func errorf(code protocol.Code, format string, args ...any) error {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...)}
}

// toProto maps an error from a backend to the protocol error the client
// gets. Backend errors that the gateway does not expect become internal.
func toProto(err error, target string) *protoError {
	var pe *protoError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, pubsub.ErrNotFound):
		return &protoError{protocol.CodeNotFound, fmt.Sprintf("channel %s does not exist", target)}
	case errors.Is(err, auth.ErrNoUser):
		return &protoError{protocol.CodeNotFound, fmt.Sprintf("user %s does not exist", target)}
	case errors.Is(err, pubsub.ErrExists):
		return &protoError{protocol.CodeAlreadyExists, fmt.Sprintf("channel %s already exists", target)}
	case errors.Is(err, pubsub.ErrForbidden):
		return &protoError{protocol.CodeForbidden, fmt.Sprintf("only the owner of %s may destroy it", target)}
	case errors.Is(err, pubsub.ErrNotMember):
		return &protoError{protocol.CodeNotMember, fmt.Sprintf("you are not a member of %s", target)}
	case errors.Is(err, pubsub.ErrUnavailable), errors.Is(err, auth.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, pubsub.ErrClosed):
		return &protoError{protocol.CodeUnavailable, "the chat backend is unavailable, try again"}
	default:
		return &protoError{protocol.CodeInternal, "internal error"}
	}
}
