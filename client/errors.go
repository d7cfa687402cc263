package chatclient

import (
	"errors"
	"fmt"

	"github.com/wirechat/chat/protocol"
)

// Error is a request that the server refused: its error frame (spec 3.4).
// A refused request changed nothing. Match a code with errors.Is and the
// sentinels below, or read Code after errors.As:
//
//	if errors.Is(err, chatclient.ErrAlreadyExists) { ... }
//	var e *chatclient.Error
//	if errors.As(err, &e) { log.Print(e.Code, e.Message) }
type Error struct {
	// Code is the protocol's error code.
	Code protocol.Code `json:"code"`
	// Message is the server's explanation, for people.
	Message string `json:"message"`
	// ID is the id of the request it answers.
	ID string `json:"id,omitempty"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "chatclient: " + string(e.Code)
	}
	return "chatclient: " + string(e.Code) + ": " + e.Message
}

// Is reports whether target is the sentinel of e's code: an *Error with
// the same code and no message or id.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.ID == "" && t.Code == e.Code
}

// The sentinels of the protocol's error codes, for errors.Is. Each matches
// every *Error with its code.
var (
	// ErrRateLimited: the user sent more requests than the server's
	// CHAT_RATE_LIMIT allows; the request had no effect.
	ErrRateLimited = &Error{Code: protocol.CodeRateLimited}
	// ErrBadRequest: a request the server cannot take (a number out of
	// range, both before and after, or an action it does not support).
	ErrBadRequest = &Error{Code: protocol.CodeBadRequest}
	// ErrInvalidTarget: a target that breaks the name rules, or a channel
	// where a user is needed and the reverse.
	ErrInvalidTarget = &Error{Code: protocol.CodeInvalidTarget}
	// ErrInvalidMessage: empty, white-space-only or over-long text.
	ErrInvalidMessage = &Error{Code: protocol.CodeInvalidMessage}
	// ErrNotFound: the channel or user does not exist.
	ErrNotFound = &Error{Code: protocol.CodeNotFound}
	// ErrAlreadyExists: create of a channel that exists.
	ErrAlreadyExists = &Error{Code: protocol.CodeAlreadyExists}
	// ErrForbidden: destroy by someone other than the owner.
	ErrForbidden = &Error{Code: protocol.CodeForbidden}
	// ErrNotMember: a request about a channel the user is not in.
	ErrNotMember = &Error{Code: protocol.CodeNotMember}
	// ErrUnavailable: the server's backend cannot be reached; the request
	// had no effect.
	ErrUnavailable = &Error{Code: protocol.CodeUnavailable}
	// ErrInternal: the server failed; the request had no effect.
	ErrInternal = &Error{Code: protocol.CodeInternal}
)

// Errors of the client itself.
var (
	// ErrClosed: the client was closed (Close), or has ended (see Err).
	ErrClosed = errors.New("chatclient: closed")

	// ErrInterrupted: the connection broke after a create, destroy or
	// leave was sent and before its answer came, so whether it took
	// effect is unknown. (Messages and the other requests are sent again
	// after the reconnect instead: that is safe for them.)
	ErrInterrupted = errors.New("chatclient: connection lost before the answer: the request may or may not have taken effect")

	// ErrTooLarge: the request would be a frame larger than
	// Options.MaxFrameBytes, which the server answers by closing the
	// connection (1009); it was not sent.
	ErrTooLarge = errors.New("chatclient: request larger than the server's frame limit")

	// ErrLoggedOut matches the CloseError of a connection the server
	// closed with 1000: the login session was revoked (a logout, or a
	// login past the user's limit). The client ends: a new login is needed.
	ErrLoggedOut = errors.New("chatclient: logged out")

	// ErrPolicy matches the CloseError of a connection the server closed
	// with 1008: the client did not read fast enough, or its login
	// session expired. The client ends.
	ErrPolicy = errors.New("chatclient: closed by the server's policy")
)

// CloseError is a close of the connection by the server after which the
// client does not reconnect (Client.Err returns it): 1000 (logged out),
// 1008 (too slow, or the session expired), or a close that says this
// client broke the protocol (1002, 1003, 1007, 1009). Every other close,
// 1001 (the node is shutting down) first of all, makes the client
// reconnect.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("chatclient: connection closed by the server with %d %q", e.Code, e.Reason)
}

// Is makes ErrLoggedOut match 1000 and ErrPolicy match 1008.
func (e *CloseError) Is(target error) bool {
	return target == ErrLoggedOut && e.Code == 1000 || target == ErrPolicy && e.Code == 1008
}

// StatusError is an HTTP request of the client that the server refused: a
// dev login, or a websocket upgrade (401: no valid session; 403: the
// Origin is not allowed; 429: the user holds too many websockets; 503: the
// node is shutting down or full).
type StatusError struct {
	// Op is what was refused: "dev login", "logout" or "upgrade".
	Op string
	// URL is where the request went.
	URL string
	// Status is the HTTP status code.
	Status int
	// Body is the start of the answer's body, for people.
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("chatclient: %s at %s: HTTP %d %s", e.Op, e.URL, e.Status, e.Body)
}

// final reports whether a refusal will not change by trying again: bad
// credentials, a forbidden origin, a dev login that is off or refuses the
// name. Anything else (429, 503, a proxy's 502) may pass on the next try
// or at another node.
func (e *StatusError) final() bool {
	switch e.Status {
	case 401, 403:
		return true
	case 400, 404, 415:
		return e.Op == opLogin
	}
	return false
}

// The operations of a StatusError.
const (
	opLogin   = "dev login"
	opLogout  = "logout"
	opUpgrade = "upgrade"
)
