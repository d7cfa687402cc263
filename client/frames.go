package chatclient

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wirechat/chat/protocol"
)

// Welcome is the first frame of every connection (spec section 3 and 5).
// Lists and maps are empty, never nil.
type Welcome struct {
	Identifier string   `json:"identifier"` // the user's UUID
	Username   string   `json:"username"`
	Channels   []string `json:"channels"` // every channel that exists
	Joined     []string `json:"joined"`   // the user's channels
	Owned      []string `json:"owned"`    // the channels the user may destroy
	// Epoch names the server's history store; a new one means the store
	// lost its data and every seq known before means nothing.
	Epoch string `json:"epoch"`
	// Latest maps each joined channel and each of the user's 100 most
	// recently active conversations to its newest seq.
	Latest map[string]uint64 `json:"latest"`
	// Read maps targets of Latest to the user's read marker.
	Read map[string]uint64 `json:"read"`
}

// Message is a chat message, live or from history.
type Message struct {
	Emitter    string `json:"emitter"`    // "participant"
	Target     string `json:"target"`     // the channel, or "@user" as the sender named the recipient
	Identifier string `json:"identifier"` // the sender's UUID
	Username   string `json:"username"`   // the sender's username
	Text       string `json:"message"`
	TS         string `json:"ts"` // the server's time, RFC 3339 with milliseconds, UTC
	// Seq numbers the messages of the conversation, from 1 (spec section 5).
	Seq uint64 `json:"seq"`

	// Conversation is the message's conversation as this client's user
	// names it, which is how Welcome.Latest, History, Read and Typing name
	// it: the channel, or "@" and the other party of a private message
	// (for a message to oneself, one's own name). The client fills it in;
	// it is not on the wire.
	Conversation string `json:"-"`
}

// Time parses TS.
func (m *Message) Time() (time.Time, error) { return time.Parse(time.RFC3339, m.TS) }

// Event is something that happened, other than a message: a channel
// created or destroyed (Emitter "channel", Identifier the channel), or
// something a user did (Emitter "participant", Identifier the user's UUID,
// Target the channel or conversation): join, left, online, offline,
// typing, read. Compare Kind with protocol.EventJoin and its siblings.
type Event struct {
	Emitter    string `json:"emitter"`
	Identifier string `json:"identifier"`
	Kind       string `json:"event"`
	Target     string `json:"target,omitempty"`
	Username   string `json:"username,omitempty"`
	// Seq is the read marker of a read event.
	Seq uint64 `json:"seq,omitempty"`
}

// History is a page of a conversation's stored messages (spec section 5).
type History struct {
	Target string `json:"target"`
	// First is the oldest seq still stored (the newest plus one when none
	// is).
	First uint64 `json:"first"`
	// Messages are in increasing seq.
	Messages []Message `json:"messages"`
	// More says whether more stored messages lie beyond these in the
	// direction asked.
	More bool `json:"more"`
}

// Members is a page of a channel's members, by username (spec section 6).
type Members struct {
	Target  string   `json:"target"`
	Members []Member `json:"members"`
	// More says whether more members follow the last one.
	More bool `json:"more"`
}

// Member is one member of a channel.
type Member struct {
	Identifier string `json:"identifier"`
	Username   string `json:"username"`
	Online     bool   `json:"online"`
}

// Update is one item of Client.Updates: exactly one field is set.
type Update struct {
	// Message is a chat message. Each conversation's messages come once
	// each, in seq order, across reconnects (see the package doc).
	Message *Message
	// Event is an event frame, as it arrived.
	Event *Event
	// Connected: a connection is up and its welcome has arrived. It comes
	// first, and again after every reconnect, before the messages that the
	// client reads back from history.
	Connected *Connected
	// Disconnected: a connection ended. Unless Final, the client is
	// reconnecting.
	Disconnected *Disconnected
	// Gap: messages of a conversation that were missed are gone from the
	// server's history (trimmed by its retention) and will never come.
	Gap *Gap
}

// Connected tells of a connection whose welcome arrived.
type Connected struct {
	// URL is the base URL of the node.
	URL     string
	Welcome Welcome
	// Reconnect is false for the first connection of the Client.
	Reconnect bool
	// NewEpoch: the server's history store lost its data (the welcome's
	// epoch changed). Every seq known before means nothing; the client
	// follows each conversation anew from the welcome's Latest.
	NewEpoch bool
	// Unseen are the conversations of Welcome.Latest that the client had
	// not followed before this reconnect (a conversation begun, or a
	// channel joined elsewhere, while it was away). The client follows
	// them from their Latest on; their earlier messages are for History.
	Unseen []string
}

// Disconnected tells of a connection that ended.
type Disconnected struct {
	// URL is the base URL of the node.
	URL string
	// Err is why: a *CloseError, a network error, or nil after Close.
	Err error
	// Final: the client has ended and will not reconnect (Client.Err).
	Final bool
}

// Gap tells that messages From to To (inclusive) of Conversation were
// missed and are no longer stored.
type Gap struct {
	Conversation string
	From, To     uint64
}

// inbound is a decoded server frame: Type says which field is set.
type inbound struct {
	Type    string
	ID      string // the request id of an ack, error, history or members
	Welcome *Welcome
	Message *Message
	Event   *Event
	Ack     *ack
	Error   *Error
	History *History
	Members *Members
}

// ack is an ack frame: the request ID succeeded; a message's ack carries
// its Seq.
type ack struct {
	ID  string `json:"id"`
	Seq uint64 `json:"seq,omitempty"`
}

// historyFrame and membersFrame are the answers as they arrive, with the id
// of the request.
type historyFrame struct {
	ID string `json:"id,omitempty"`
	History
}

type membersFrame struct {
	ID string `json:"id,omitempty"`
	Members
}

// decodeFrame reads one server frame. Unknown fields are ignored (new
// fields never break old clients); an unknown type is an error, which the
// caller logs and skips.
func decodeFrame(data []byte) (inbound, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return inbound{}, fmt.Errorf("chatclient: frame is not a JSON object: %w", err)
	}
	in := inbound{Type: head.Type}
	var err error
	switch head.Type {
	case protocol.TypeWelcome:
		in.Welcome = new(Welcome)
		err = json.Unmarshal(data, in.Welcome)
	case protocol.TypeMessage:
		in.Message = new(Message)
		err = json.Unmarshal(data, in.Message)
	case protocol.TypeEvent:
		in.Event = new(Event)
		err = json.Unmarshal(data, in.Event)
	case protocol.TypeAck:
		in.Ack = new(ack)
		err = json.Unmarshal(data, in.Ack)
		in.ID = in.Ack.ID
	case protocol.TypeError:
		in.Error = new(Error)
		err = json.Unmarshal(data, in.Error)
		in.ID = in.Error.ID
	case protocol.TypeHistory:
		var f historyFrame
		err = json.Unmarshal(data, &f)
		in.ID, in.History = f.ID, &f.History
	case protocol.TypeMembers:
		var f membersFrame
		err = json.Unmarshal(data, &f)
		in.ID, in.Members = f.ID, &f.Members
	default:
		return inbound{}, fmt.Errorf("chatclient: unknown frame type %q", head.Type)
	}
	if err != nil {
		return inbound{}, fmt.Errorf("chatclient: %s frame: %w", head.Type, err)
	}
	return in, nil
}

// conversation names m's conversation as the user me (an identifier) sees
// it: the channel; the recipient of one's own private message; the sender
// of another's.
func conversation(m *Message, me string) string {
	if strings.HasPrefix(m.Target, "#") || m.Identifier == me {
		return m.Target
	}
	return "@" + m.Username
}
