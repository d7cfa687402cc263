// Package protocol holds the wire types of the chat protocol (docs/protocol.md)
// and the rules that every party checks the same way: names, message text and
// error codes.
//
// The wire flow of one connection:
//
//	client                                   server
//	  | GET /ws (cookie or Bearer token)       |
//	  |--------------------------------------->|
//	  |<------------------ 101 upgrade --------|
//	  |<------- {"type":"welcome",...} --------|
//	  | {"type":"command","action":"join",...} |
//	  |--------------------------------------->|
//	  |<-- {"type":"event",...} / ack / error -|
//	  | {"type":"message","target":"#c",...}   |
//	  |--------------------------------------->|
//	  |<------ {"type":"message",...} ---------|  (to every member's sessions)
//
// Every frame is one JSON object in one UTF-8 text frame. Requests flow from
// client to server; events, messages, acks and errors from server to client.
// Fields unknown to a reader are ignored, so new fields never break old
// clients.
package protocol

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Frame types.
const (
	TypeCommand = "command"
	TypeMessage = "message"
	TypeWelcome = "welcome"
	TypeEvent   = "event"
	TypeAck     = "ack"
	TypeError   = "error"
	TypeHistory = "history" // v2: the answer to a history command
	TypeMembers = "members" // v2: the answer to a members command
)

// Command actions.
const (
	ActionCreate  = "create"
	ActionDestroy = "destroy"
	ActionJoin    = "join"
	ActionLeave   = "leave"
	ActionHistory = "history" // v2, section 5
	ActionMembers = "members" // v2, section 6
	ActionTyping  = "typing"  // v2, section 6
	ActionRead    = "read"    // v2, section 7
)

// Event names and emitters.
const (
	EmitterChannel     = "channel"
	EmitterParticipant = "participant"

	EventCreate  = "create"
	EventDestroy = "destroy"
	EventJoin    = "join"
	EventLeft    = "left"
	EventOnline  = "online"  // v2, section 6
	EventOffline = "offline" // v2, section 6
	EventTyping  = "typing"  // v2, section 6
	EventRead    = "read"    // v2, section 7
)

// Limits of the v2 queries: how many messages a history page and how many
// members a members page hold, by default and at most.
const (
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 200
	DefaultMembersLimit = 1000
	MaxMembersLimit     = 1000
)

// MaxIDLen is the longest request id a client may choose.
const MaxIDLen = 64

// Code is an error code of spec section 3.4. When a request breaks several
// rules, the code that comes first in this list wins.
type Code string

// Error codes in order of precedence.
const (
	CodeRateLimited    Code = "rate_limited"
	CodeBadRequest     Code = "bad_request"
	CodeInvalidTarget  Code = "invalid_target"
	CodeInvalidMessage Code = "invalid_message"
	CodeNotFound       Code = "not_found"
	CodeAlreadyExists  Code = "already_exists"
	CodeForbidden      Code = "forbidden"
	CodeNotMember      Code = "not_member"
	CodeUnavailable    Code = "unavailable"
	CodeInternal       Code = "internal"
)

// Welcome is the first frame on every websocket. Lists and maps are empty,
// never null.
type Welcome struct {
	Type       string   `json:"type"`
	Identifier string   `json:"identifier"`
	Username   string   `json:"username"`
	Channels   []string `json:"channels"`
	Joined     []string `json:"joined"`
	Owned      []string `json:"owned"`
	// v2: the history store's epoch, the newest seq of each of the user's
	// channels and recent conversations, and the user's read markers.
	Epoch  string            `json:"epoch"`
	Latest map[string]uint64 `json:"latest"`
	Read   map[string]uint64 `json:"read"`
}

// Event announces a channel's creation or destruction (Emitter "channel",
// Identifier the channel) or something a member did (Emitter
// "participant", Identifier the user's UUID, Target the channel or
// conversation): join, left, and in v2 online, offline, typing and read
// (whose Seq is the read marker).
type Event struct {
	Type       string `json:"type"`
	Emitter    string `json:"emitter"`
	Identifier string `json:"identifier"`
	Event      string `json:"event"`
	Target     string `json:"target,omitempty"`
	Username   string `json:"username,omitempty"`
	Seq        uint64 `json:"seq,omitempty"`
}

// Message is a chat message as delivered to its recipients and as stored.
// Seq numbers the messages of its target (v2, section 5), from 1.
type Message struct {
	Type       string `json:"type"`
	Emitter    string `json:"emitter"`
	Target     string `json:"target"`
	Identifier string `json:"identifier"`
	Username   string `json:"username"`
	Message    string `json:"message"`
	TS         string `json:"ts"`
	Seq        uint64 `json:"seq"`
}

// Ack confirms a request that carried an id. The ack of a message carries
// the message's seq.
type Ack struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Seq  uint64 `json:"seq,omitempty"`
}

// History answers a history command (in place of its ack): Messages are
// the stored message frames, in increasing seq; First is the oldest seq
// still stored for the target (its newest seq plus one when none is); More
// says whether more stored messages lie beyond them in the direction
// asked.
type History struct {
	Type     string            `json:"type"`
	ID       string            `json:"id,omitempty"`
	Target   string            `json:"target"`
	First    uint64            `json:"first"`
	Messages []json.RawMessage `json:"messages"`
	More     bool              `json:"more"`
}

// Members answers a members command (in place of its ack): a page of the
// channel's members, by username.
type Members struct {
	Type    string   `json:"type"`
	ID      string   `json:"id,omitempty"`
	Target  string   `json:"target"`
	Members []Member `json:"members"`
	More    bool     `json:"more"`
}

// Member is one member of a channel.
type Member struct {
	Identifier string `json:"identifier"`
	Username   string `json:"username"`
	Online     bool   `json:"online"`
}

// Error reports a failed request. ID is the request's id, if it had a valid one.
type Error struct {
	Type    string `json:"type"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id,omitempty"`
}

// Request is a client frame: a command or a message. DecodeRequest reads
// one; MarshalJSON writes one (a client's side).
type Request struct {
	Type    string
	ID      string
	Action  string
	Target  string
	Message string

	// v2 arguments, nil when absent: Before, After and Limit of history,
	// AfterName and Limit of members, Seq of read.
	Before    *uint64
	After     *uint64
	AfterName *string
	Limit     *int
	Seq       *uint64
}

// MarshalJSON writes the request as a client sends it: the fields that are
// set (a message's text always), "after" from After or AfterName.
func (r Request) MarshalJSON() ([]byte, error) {
	var message *string
	if r.Type == TypeMessage || r.Message != "" {
		message = &r.Message
	}
	var after any
	switch {
	case r.After != nil:
		after = *r.After
	case r.AfterName != nil:
		after = *r.AfterName
	}
	return json.Marshal(struct {
		Type    string  `json:"type"`
		ID      string  `json:"id,omitempty"`
		Action  string  `json:"action,omitempty"`
		Target  string  `json:"target"`
		Message *string `json:"message,omitempty"`
		Before  *uint64 `json:"before,omitempty"`
		After   any     `json:"after,omitempty"`
		Limit   *int    `json:"limit,omitempty"`
		Seq     *uint64 `json:"seq,omitempty"`
	}{r.Type, r.ID, r.Action, r.Target, message, r.Before, after, r.Limit, r.Seq})
}

// TimeFormat is the layout of a message's ts: RFC 3339, milliseconds, UTC.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// MaxChannelLen and MaxUsernameLen bound names, without their sigil.
const (
	MaxChannelLen  = 64
	MaxUsernameLen = 39
)

// NormalizeChannel returns the canonical (lower-case) form of a channel name
// such as "#Main", and false if it breaks the name rules.
func NormalizeChannel(s string) (string, bool) {
	if len(s) < 2 || len(s) > 1+MaxChannelLen || s[0] != '#' {
		return "", false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(isLowerAlnum(c) || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return "", false
		}
	}
	return lower(s), true
}

// NormalizeUsername returns the canonical (lower-case) form of a username
// without sigil, and false if it breaks the name rules.
func NormalizeUsername(s string) (string, bool) {
	if len(s) < 1 || len(s) > MaxUsernameLen {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLowerAlnum(c) || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return "", false
		}
	}
	return lower(s), true
}

// SanitizeUsername turns a provider's login into a valid username: lower case,
// every other character replaced by '-', cut to the maximum length. It
// returns "user" for a login with nothing usable.
func SanitizeUsername(login string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(login) {
		if b.Len() >= MaxUsernameLen {
			break
		}
		if r < utf8.RuneSelf && (isLowerAlnum(byte(r)) || r == '_' || r == '-') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if strings.Trim(b.String(), "-_") == "" {
		return "user"
	}
	return b.String()
}

// WithSuffix returns name with "-n" appended, shortened so that the result
// still fits MaxUsernameLen. It is how a taken username is made unique.
func WithSuffix(name string, n int) string {
	suffix := "-" + strconv.Itoa(n)
	if len(name)+len(suffix) > MaxUsernameLen {
		name = name[:MaxUsernameLen-len(suffix)]
	}
	return name + suffix
}

// ValidText reports whether s is acceptable message text: 1 to max bytes of
// UTF-8, not only white space.
func ValidText(s string, max int) bool {
	if len(s) == 0 || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.Is(unicode.White_Space, r) {
			return true
		}
	}
	return false
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// lower is strings.ToLower for ASCII names, without allocating when s is
// already lower case.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
