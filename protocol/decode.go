package protocol

import (
	"bytes"
	"encoding/json"
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

// rawRequest keeps every known field raw so that a field of the wrong JSON
// type is told apart from a missing one, and a valid id survives a bad field.
type rawRequest struct {
	Type    json.RawMessage `json:"type"`
	ID      json.RawMessage `json:"id"`
	Action  json.RawMessage `json:"action"`
	Target  json.RawMessage `json:"target"`
	Message json.RawMessage `json:"message"`
}

// DecodeRequest parses one client frame. It checks the frame's shape (a JSON
// object, a known type and action, every required field present and a
// string, a valid id) but not the values of target and message, which the
// server checks in the order of the error table. Unknown fields are ignored.
func DecodeRequest(data []byte) (Request, error) {
	var raw rawRequest
	if len(bytes.TrimSpace(data)) == 0 || bytes.TrimSpace(data)[0] != '{' {
		return Request{}, &DecodeError{Reason: "a request is a JSON object"}
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Request{}, &DecodeError{Reason: "not valid JSON"}
	}
	var req Request
	if raw.ID != nil && !isNull(raw.ID) {
		id, ok := str(raw.ID)
		if !ok || len(id) > MaxIDLen {
			return Request{}, &DecodeError{Reason: fmt.Sprintf(`"id" must be a string of at most %d characters`, MaxIDLen)}
		}
		req.ID = id
	}
	bad := func(reason string) (Request, error) {
		return Request{}, &DecodeError{ID: req.ID, Reason: reason}
	}
	typ, err := field(raw.Type, "type")
	if err != nil {
		return bad(err.Error())
	}
	req.Type = typ
	switch typ {
	case TypeCommand:
		if req.Action, err = field(raw.Action, "action"); err != nil {
			return bad(err.Error())
		}
		switch req.Action {
		case ActionCreate, ActionDestroy, ActionJoin, ActionLeave:
		default:
			return bad(fmt.Sprintf("unknown action %q", truncate(req.Action)))
		}
		if req.Target, err = field(raw.Target, "target"); err != nil {
			return bad(err.Error())
		}
	case TypeMessage:
		if req.Target, err = field(raw.Target, "target"); err != nil {
			return bad(err.Error())
		}
		if req.Message, err = field(raw.Message, "message"); err != nil {
			return bad(err.Error())
		}
	default:
		return bad(fmt.Sprintf("unknown type %q", truncate(typ)))
	}
	return req, nil
}

func field(raw json.RawMessage, name string) (string, error) {
	if raw == nil {
		return "", fmt.Errorf("%q is missing", name)
	}
	s, ok := str(raw)
	if !ok {
		return "", fmt.Errorf("%q must be a string", name)
	}
	return s, nil
}

func str(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// truncate keeps client-chosen strings short in error messages.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
