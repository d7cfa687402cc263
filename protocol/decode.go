package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// DecodeError is a request that cannot be understood (code bad_request).
// ID is the request's id when the frame carried a valid one, so that the
// error can be matched to the request.
type DecodeError struct {
	ID     string
	Reason string
}

func (e *DecodeError) Error() string { return "bad request: " + e.Reason }

// wireRequest tells a missing field (nil) from an empty one. A string
// field of the wrong JSON type stays nil and is reported by encoding/json
// as an UnmarshalTypeError, while the other fields are still decoded, so a
// valid id survives a bad field. The v2 arguments are kept raw: "after" is
// a number for history and a string for members.
type wireRequest struct {
	Type    *string         `json:"type"`
	ID      *string         `json:"id"`
	Action  *string         `json:"action"`
	Target  *string         `json:"target"`
	Message *string         `json:"message"`
	Before  json.RawMessage `json:"before"`
	After   json.RawMessage `json:"after"`
	Limit   json.RawMessage `json:"limit"`
	Seq     json.RawMessage `json:"seq"`
}

// DecodeRequest parses one client frame. It checks the frame's shape (a JSON
// object, a known type and action, every required field present and of the
// right JSON type, numbers in range, a valid id) but not the values of
// target and message, which the server checks in the order of the error
// table. Unknown fields, and fields that the request's action does not
// take, are ignored. A field that is null counts as absent.
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
		if !knownAction(req.Action) {
			return bad(fmt.Sprintf("unknown action %q", truncate(req.Action)))
		}
		if w.Target == nil {
			return bad(`"target" is missing`)
		}
		req.Target = *w.Target
		if reason := req.arguments(&w); reason != "" {
			return bad(reason)
		}
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

func knownAction(a string) bool {
	switch a {
	case ActionCreate, ActionDestroy, ActionJoin, ActionLeave, ActionHistory, ActionMembers, ActionTyping, ActionRead:
		return true
	}
	return false
}

// arguments reads the v2 arguments of req's action from w, and returns why
// they are not acceptable, or "".
func (req *Request) arguments(w *wireRequest) string {
	switch req.Action {
	case ActionHistory:
		var ok bool
		if req.Before, ok = integer(w.Before, 1); !ok {
			return `"before" must be an integer of at least 1`
		}
		if req.After, ok = integer(w.After, 0); !ok {
			return `"after" must be an integer of at least 0`
		}
		if req.Before != nil && req.After != nil {
			return `give "before" or "after", not both`
		}
		return req.limit(w.Limit, MaxHistoryLimit)
	case ActionMembers:
		if !null(w.After) {
			var name string
			if w.After[0] != '"' || json.Unmarshal(w.After, &name) != nil {
				return `"after" must be a string (a username)`
			}
			req.AfterName = &name
		}
		return req.limit(w.Limit, MaxMembersLimit)
	case ActionRead:
		seq, ok := integer(w.Seq, 0)
		if !ok || seq == nil {
			return `"seq" must be an integer of at least 0`
		}
		req.Seq = seq
	}
	return ""
}

func (req *Request) limit(raw json.RawMessage, most uint64) string {
	n, ok := integer(raw, 1)
	if !ok || n != nil && *n > most {
		return fmt.Sprintf(`"limit" must be an integer from 1 to %d`, most)
	}
	if n != nil {
		l := int(*n)
		req.Limit = &l
	}
	return ""
}

// integer reads raw as a whole number of at least least: nil if absent
// (or null), false if it is no such number.
func integer(raw json.RawMessage, least uint64) (*uint64, bool) {
	if null(raw) {
		return nil, true
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return nil, false // a sign, a fraction, an exponent, or not a number
		}
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || n < least {
		return nil, false
	}
	return &n, true
}

func null(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

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
