package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
)

// DecodeError is a request that cannot be understood (code bad_request).
// ID is the request's id when the frame carried a valid one, so that the
// error can be matched to the request.
type DecodeError struct {
	ID     string
	Reason string
}

func (e *DecodeError) Error() string { return "bad request: " + e.Reason }

// wireRequest tells a missing field (nil) from an empty one. A field of the
// wrong JSON type stays nil and is reported by encoding/json as an
// UnmarshalTypeError, while the other fields are still decoded, so a valid
// id survives a bad field.
type wireRequest struct {
	Type    *string `json:"type"`
	ID      *string `json:"id"`
	Action  *string `json:"action"`
	Target  *string `json:"target"`
	Message *string `json:"message"`
}

// DecodeRequest parses one client frame. It checks the frame's shape (a JSON
// object, a known type and action, every required field present and a
// string, a valid id) but not the values of target and message, which the
// server checks in the order of the error table. Unknown fields are ignored.
func DecodeRequest(data []byte) (Request, error) {
	var w wireRequest
	err := json.Unmarshal(data, &w)
	var typeErr *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typeErr) {
		return Request{}, &DecodeError{Reason: "not valid JSON"}
	}
	if typeErr != nil && typeErr.Field == "" {
		return Request{}, &DecodeError{Reason: "a request is a JSON object"}
	}
	var req Request
	if w.ID != nil {
		if len(*w.ID) > MaxIDLen {
			return Request{}, &DecodeError{Reason: fmt.Sprintf(`"id" must be a string of at most %d characters`, MaxIDLen)}
		}
		req.ID = *w.ID
	}
	bad := func(reason string) (Request, error) {
		return Request{}, &DecodeError{ID: req.ID, Reason: reason}
	}
	if typeErr != nil && !ignored(typeErr.Field, w.Type) {
		if typeErr.Field == "id" {
			return Request{}, &DecodeError{Reason: fmt.Sprintf(`"id" must be a string of at most %d characters`, MaxIDLen)}
		}
		return bad(fmt.Sprintf("%q must be a string", typeErr.Field))
	}
	if w.Type == nil {
		return bad(`"type" is missing`)
	}
	req.Type = *w.Type
	switch req.Type {
	case TypeCommand:
		if w.Action == nil {
			return bad(`"action" is missing`)
		}
		req.Action = *w.Action
		switch req.Action {
		case ActionCreate, ActionDestroy, ActionJoin, ActionLeave:
		default:
			return bad(fmt.Sprintf("unknown action %q", truncate(req.Action)))
		}
		if w.Target == nil {
			return bad(`"target" is missing`)
		}
		req.Target = *w.Target
	case TypeMessage:
		if w.Target == nil {
			return bad(`"target" is missing`)
		}
		if w.Message == nil {
			return bad(`"message" is missing`)
		}
		req.Target, req.Message = *w.Target, *w.Message
	default:
		return bad(fmt.Sprintf("unknown type %q", truncate(req.Type)))
	}
	return req, nil
}

// ignored reports whether a field of the wrong JSON type does not matter:
// a field that the request's type does not have is an unknown field. (Only
// the first type error is reported; a later one leaves its field nil, which
// the checks below catch as missing.)
func ignored(field string, typ *string) bool {
	switch {
	case typ == nil:
		return false
	case *typ == TypeCommand:
		return field == "message"
	case *typ == TypeMessage:
		return field == "action"
	}
	return false
}

// truncateBytes is how much of a client-chosen string an error message
// quotes.
const truncateBytes = 32

// truncate keeps client-chosen strings short in error messages: a string
// longer than truncateBytes is cut to the longest prefix of whole
// characters that fits, and "…" is appended. Characters are those that
// `for range` sees, so an invalid byte counts as one and a valid character
// is never split.
func truncate(s string) string {
	if len(s) <= truncateBytes {
		return s
	}
	cut := 0
	for i := range s {
		if i > truncateBytes {
			break
		}
		cut = i // s[:i] ends on a character boundary
	}
	return s[:cut] + "…"
}
