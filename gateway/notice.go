package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A broker payload is either a wire frame, which starts with '{' and is
// written as it is to every local session on the topic, or a notice, which
// starts with '!' and tells the receiving nodes to change which of their
// sessions receive what. A notice is one line of space-separated fields,
// optionally followed by a newline and a wire frame that the receiving
// node passes on to the topic's sessions before it applies the notice:
//
//	!<op> <name> [<wait> [<reply>]]
//	!msg <log> <seq>
//	[\n<frame>]
//
// That is version 1 of the codec, the one this node writes and reads.
// A later version will put its number first ("!2 <op> ..."): no op name
// starts with a digit. A node drops (and logs) a notice of a version or
// an op it does not know, after passing on its frame, so that nodes of
// different versions can share a cluster during a rolling upgrade. Fields
// are names the gateway made or checked (channels, UUIDs, wait ids), never
// free text: none holds a space or a line break.

// op is what a notice asks of the nodes that receive it.
type op uint8

const (
	opNone op = iota

	// opCreate on the cluster topic: channel name now exists; the frame
	// (the create event) goes to every session.
	opCreate
	// opDestroy on the cluster topic: channel name is gone; the frame
	// (the destroy event) goes to every session, then nobody receives the
	// channel's topic any more. wait, if set, is signalled on the node
	// that published it.
	opDestroy
	// opJoin on a user topic: the user joined channel name; its sessions
	// on every node start receiving the channel's topic. With wait and
	// reply, every node that receives it answers opJoined wait on the
	// topic reply once it is subscribed to the channel's topic.
	opJoin
	// opJoined on a node's reply topic: the answer to the opJoin whose
	// wait is name.
	opJoined
	// opLeft on a channel topic: user name left; the frame (the left
	// event) goes to every session on the topic, then the user's sessions
	// stop receiving it. wait as for opDestroy.
	opLeft
	// opLogout on a user topic: login session name was revoked; its
	// websockets close with 1000.
	opLogout
	// opHere on a user topic: the node whose reply topic is name now holds
	// a session of the user, too (ratelimit.go).
	opHere
	// opMsg on a channel or user topic: the frame is the stored message
	// seq of log name (a channel, or a conversation: pubsub.Conversation).
	// The backend writes it (pubsub.Message.Prefix); the node delivers it
	// in seq order, repairing gaps from history (sequencer.go).
	opMsg
	// opOthers on a channel or user topic: events that go to every
	// session on the topic but those of the user each is about (presence,
	// typing). name is the users' ids, comma-separated; the frame is as
	// many event frames, one a line, in the same order.
	opOthers
)

// opNames are the ops' names on the wire, by op.
var opNames = [...]string{
	opCreate:  "create",
	opDestroy: "destroy",
	opJoin:    "join",
	opJoined:  "joined",
	opLeft:    "left",
	opLogout:  "logout",
	opHere:    "here",
	opMsg:     "msg",
	opOthers:  "others",
}

// opFields is how many optional fields (wait, reply) each op may carry
// after its name.
var opFields = [len(opNames)]int{
	opDestroy: 1,
	opJoin:    2,
	opLeft:    1,
	opMsg:     1, // the seq, which it must have
}

func (o op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// notice is a decoded notice.
type notice struct {
	op    op
	name  string // what op is about: a channel, a user, a session, a wait, a node or a log
	wait  string // a wait id to signal or answer; empty for none
	reply string // opJoin: the topic to answer on; empty for none
	seq   uint64 // opMsg: the message's seq, at least 1
	frame []byte // passed on to the topic's sessions before op is applied; nil for none
}

// errBadNotice is a payload that starts like a notice but cannot be read.
var errBadNotice = errors.New("gateway: malformed notice")

// encode returns the notice's payload.
func (n notice) encode() []byte {
	name := opNames[n.op]
	b := make([]byte, 0, 1+len(name)+len(n.name)+len(n.wait)+len(n.reply)+4+len(n.frame))
	b = append(b, '!')
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, n.name...)
	if n.op == opMsg {
		b = append(b, ' ')
		b = strconv.AppendUint(b, n.seq, 10)
	}
	if n.wait != "" || n.reply != "" {
		b = append(b, ' ')
		b = append(b, n.wait...)
	}
	if n.reply != "" {
		b = append(b, ' ')
		b = append(b, n.reply...)
	}
	if n.frame != nil {
		b = append(b, '\n')
		b = append(b, n.frame...)
	}
	return b
}

// decodeNotice reads a payload that starts with '!'. The frame it returns
// shares payload's memory, and is returned with an error too when the
// notice has one, so that it can still be passed on.
func decodeNotice(payload []byte) (notice, error) {
	var n notice
	line, frame, hasFrame := bytes.Cut(payload, []byte{'\n'})
	if hasFrame {
		n.frame = frame
	}
	fields := bytes.Split(line, []byte{' '})
	if len(fields[0]) < 2 || fields[0][0] != '!' {
		return notice{frame: n.frame}, errBadNotice
	}
	if c := fields[0][1]; c >= '0' && c <= '9' {
		return notice{frame: n.frame}, fmt.Errorf("%w: version %q", errBadNotice, fields[0][1:])
	}
	for i, name := range opNames {
		if name != "" && string(fields[0][1:]) == name {
			n.op = op(i)
		}
	}
	if n.op == opNone {
		return notice{frame: n.frame}, fmt.Errorf("%w: unknown op %q", errBadNotice, fields[0][1:])
	}
	args := fields[1:] // the name, then the optional fields
	if len(args) == 0 || len(args)-1 > opFields[n.op] {
		return notice{}, fmt.Errorf("%w: %s takes a name and at most %d fields more", errBadNotice, n.op, opFields[n.op])
	}
	for _, f := range args {
		if len(f) == 0 {
			return notice{}, fmt.Errorf("%w: empty field", errBadNotice)
		}
	}
	n.name = string(args[0])
	if n.op == opMsg {
		seq, err := strconv.ParseUint(string(args[len(args)-1]), 10, 64)
		if len(args) != 2 || err != nil || seq == 0 {
			return notice{}, fmt.Errorf("%w: msg takes a log and a seq", errBadNotice)
		}
		n.seq = seq
		return n, nil
	}
	if len(args) > 1 {
		n.wait = string(args[1])
	}
	if len(args) > 2 {
		n.reply = string(args[2])
	}
	return n, nil
}

// msgPrefix is what precedes a stored message's seq in its !msg notice:
// the backend writes the rest (pubsub.Message.Prefix).
func msgPrefix(log string) []byte {
	return append(append([]byte("!"), opNames[opMsg]...), " "+log+" "...)
}

// othersNotice builds an opOthers notice of frames, each of which goes to
// every session but those of users[i].
func othersNotice(users []string, frames [][]byte) notice {
	return notice{op: opOthers, name: strings.Join(users, ","), frame: bytes.Join(frames, []byte{'\n'})}
}

// split returns an opOthers notice's users and their frames, or false if
// they do not pair up.
func (n notice) split() (users []string, frames [][]byte, ok bool) {
	users = strings.Split(n.name, ",")
	frames = bytes.Split(n.frame, []byte{'\n'})
	return users, frames, len(users) == len(frames)
}
