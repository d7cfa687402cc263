package protocol

// decodeReference is the first, slower decoder (one json.RawMessage per
// field), kept as the reference that FuzzDecodeAgainstReference compares
// DecodeRequest with.

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// rawRequest keeps every known field raw so that a field of the wrong JSON
// type is told apart from a missing one, and a valid id survives a bad field.
type refRawRequest struct {
	Type    json.RawMessage `json:"type"`
	ID      json.RawMessage `json:"id"`
	Action  json.RawMessage `json:"action"`
	Target  json.RawMessage `json:"target"`
	Message json.RawMessage `json:"message"`
	Before  json.RawMessage `json:"before"`
	After   json.RawMessage `json:"after"`
	Limit   json.RawMessage `json:"limit"`
	Seq     json.RawMessage `json:"seq"`
}

// DecodeRequest parses one client frame. It checks the frame's shape (a JSON
// object, a known type and action, every required field present and a
// string, a valid id) but not the values of target and message, which the
// server checks in the order of the error table. Unknown fields are ignored.
func decodeReference(data []byte) (Request, error) {
	var raw refRawRequest
	if len(bytes.TrimSpace(data)) == 0 || bytes.TrimSpace(data)[0] != '{' {
		return Request{}, &DecodeError{Reason: "a request is a JSON object"}
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Request{}, &DecodeError{Reason: "not valid JSON"}
	}
	var req Request
	if raw.ID != nil && !refIsNull(raw.ID) {
		id, ok := refStr(raw.ID)
		if !ok || len(id) > MaxIDLen {
			return Request{}, &DecodeError{Reason: fmt.Sprintf(`"id" must be a string of at most %d characters`, MaxIDLen)}
		}
		req.ID = id
	}
	bad := func(reason string) (Request, error) {
		return Request{}, &DecodeError{ID: req.ID, Reason: reason}
	}
	typ, err := refField(raw.Type, "type")
	if err != nil {
		return bad(err.Error())
	}
	req.Type = typ
	switch typ {
	case TypeCommand:
		if req.Action, err = refField(raw.Action, "action"); err != nil {
			return bad(err.Error())
		}
		switch req.Action {
		case ActionCreate, ActionDestroy, ActionJoin, ActionLeave, ActionTyping, ActionHistory, ActionMembers, ActionRead:
		default:
			return bad(fmt.Sprintf("unknown action %q", refTruncate(req.Action)))
		}
		if req.Target, err = refField(raw.Target, "target"); err != nil {
			return bad(err.Error())
		}
		if reason := refArguments(&req, &raw); reason != "" {
			return bad(reason)
		}
	case TypeMessage:
		if req.Target, err = refField(raw.Target, "target"); err != nil {
			return bad(err.Error())
		}
		if req.Message, err = refField(raw.Message, "message"); err != nil {
			return bad(err.Error())
		}
	default:
		return bad(fmt.Sprintf("unknown type %q", refTruncate(typ)))
	}
	return req, nil
}

// refArguments reads the v2 arguments with encoding/json's own number
// parsing, independently of DecodeRequest's digit scan.
func refArguments(req *Request, raw *refRawRequest) string {
	num := func(r json.RawMessage, least uint64) (*uint64, bool) {
		if r == nil || refIsNull(r) {
			return nil, true
		}
		var n uint64
		if err := json.Unmarshal(r, &n); err != nil || n < least {
			return nil, false
		}
		return &n, true
	}
	limit := func(most uint64) bool {
		n, ok := num(raw.Limit, 1)
		if !ok || n != nil && *n > most {
			return false
		}
		if n != nil {
			l := int(*n)
			req.Limit = &l
		}
		return true
	}
	var ok bool
	switch req.Action {
	case ActionHistory:
		if req.Before, ok = num(raw.Before, 1); !ok {
			return "bad before"
		}
		if req.After, ok = num(raw.After, 0); !ok {
			return "bad after"
		}
		if req.Before != nil && req.After != nil {
			return "both"
		}
		if !limit(MaxHistoryLimit) {
			return "bad limit"
		}
	case ActionMembers:
		if raw.After != nil && !refIsNull(raw.After) {
			name, ok := refStr(raw.After)
			if !ok {
				return "bad after"
			}
			req.AfterName = &name
		}
		if !limit(MaxMembersLimit) {
			return "bad limit"
		}
	case ActionRead:
		if req.Seq, ok = num(raw.Seq, 0); !ok || req.Seq == nil {
			return "bad seq"
		}
	}
	return ""
}

func refField(raw json.RawMessage, name string) (string, error) {
	if raw == nil {
		return "", fmt.Errorf("%q is missing", name)
	}
	s, ok := refStr(raw)
	if !ok {
		return "", fmt.Errorf("%q must be a string", name)
	}
	return s, nil
}

func refStr(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func refIsNull(raw json.RawMessage) bool { return string(raw) == "null" }

// truncate keeps client-chosen strings short in error messages.
func refTruncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
