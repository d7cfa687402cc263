package chatclient

import (
	"errors"
	"fmt"
	"testing"

	"github.com/coder/websocket"
)

// TestErrorFrames: an error frame decodes to the *Error of its code, with
// its id, whatever the code; internal, which no test can provoke from
// outside, included.
func TestErrorFrames(t *testing.T) {
	for _, s := range []*Error{ErrRateLimited, ErrBadRequest, ErrInvalidTarget, ErrInvalidMessage, ErrNotFound,
		ErrAlreadyExists, ErrForbidden, ErrNotMember, ErrUnavailable, ErrInternal} {
		in, err := decodeFrame([]byte(`{"type":"error","code":"` + string(s.Code) + `","message":"it failed","id":"p.7"}`))
		if err != nil || in.ID != "p.7" || in.Error == nil || !errors.Is(in.Error, s) || in.Error.Message != "it failed" {
			t.Errorf("%s: %+v, %v", s.Code, in, err)
		}
	}
}

// TestUnknownFrames: a frame of a type the client does not know is an error
// (skipped by the reader); unknown fields of a known type are ignored.
func TestUnknownFrames(t *testing.T) {
	if _, err := decodeFrame([]byte(`{"type":"poll","id":"1"}`)); err == nil {
		t.Error("an unknown type decoded")
	}
	if _, err := decodeFrame([]byte(`[1]`)); err == nil {
		t.Error("a non-object decoded")
	}
	in, err := decodeFrame([]byte(`{"type":"ack","id":"a.1","seq":9,"new":{"x":1}}`))
	if err != nil || in.Ack == nil || in.Ack.Seq != 9 || in.ID != "a.1" {
		t.Errorf("ack with a new field: %+v, %v", in, err)
	}
}

// TestCloseCodes: which closes by the server end the client, and which
// make it reconnect.
func TestCloseCodes(t *testing.T) {
	for code, final := range map[websocket.StatusCode]bool{
		1000: true, 1008: true, 1002: true, 1003: true, 1007: true, 1009: true,
		1001: false, 1011: false, 1013: false, 1006: false, 1012: false,
	} {
		err := fmt.Errorf("read: %w", websocket.CloseError{Code: code, Reason: "r"})
		ce := closeError(err)
		if (ce != nil) != final {
			t.Errorf("close %d: final %v, want %v", code, ce != nil, final)
			continue
		}
		if ce != nil && (ce.Code != int(code) || errors.Is(ce, ErrLoggedOut) != (code == 1000) || errors.Is(ce, ErrPolicy) != (code == 1008)) {
			t.Errorf("close %d: %+v", code, ce)
		}
	}
	if closeError(errors.New("EOF")) != nil {
		t.Error("a network error is final")
	}
}
