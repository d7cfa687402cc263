package main

import (
	"bytes"
	"strconv"
)

// A benchmark message's text is "source:seq:unixnano:" followed by padding
// up to the payload size: the source names the stream (a publisher in one
// phase), seq numbers the stream's messages from 1, and unixnano is the
// publisher's clock when it wrote the frame, from which a receiver on the
// same machine reads the delivery latency. Only digits, ':' and 'x' occur,
// so the text needs no JSON escaping and never contains a quote.

// appendText appends a message text of at least size bytes to b.
func appendText(b []byte, source uint32, seq uint64, unixNano int64, size int) []byte {
	start := len(b)
	b = strconv.AppendUint(b, uint64(source), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, unixNano, 10)
	b = append(b, ':')
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return b
}

// parseText reads a text made by appendText.
func parseText(t []byte) (source uint32, seq uint64, unixNano int64, ok bool) {
	var f [3]uint64
	for i := range f {
		j := bytes.IndexByte(t, ':')
		if j <= 0 || j > 20 {
			return 0, 0, 0, false
		}
		var n uint64
		for _, c := range t[:j] {
			if c < '0' || c > '9' {
				return 0, 0, 0, false
			}
			n = n*10 + uint64(c-'0')
		}
		f[i] = n
		t = t[j+1:]
	}
	if f[0] > 1<<32-1 || f[1] == 0 {
		return 0, 0, 0, false
	}
	return uint32(f[0]), f[1], int64(f[2]), true
}

// appendMessageRequest appends the request frame that sends one benchmark
// message of stream number i (of its publisher) to target, with request id
// "m<i>.<source>.<seq>" when withID is set: unique for the run, since the
// server takes a repeated id for a retry (idempotent sends) and does not
// deliver it again. Names and benchmark texts need no JSON escaping.
func appendMessageRequest(b []byte, withID bool, i int, target string, source uint32, seq uint64, unixNano int64, size int) []byte {
	b = append(b, `{"type":"message",`...)
	if withID {
		b = append(b, `"id":"m`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(source), 10)
		b = append(b, '.')
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, `",`...)
	}
	b = append(b, `"target":"`...)
	b = append(b, target...)
	b = append(b, `","message":"`...)
	b = appendText(b, source, seq, unixNano, size)
	return append(b, `"}`...)
}

var (
	keyTypeMessage = []byte(`"type":"message"`)
	keyTypeEvent   = []byte(`"type":"event"`)
	keyTarget      = []byte(`"target":"`)
	keyMessage     = []byte(`"message":"`)

	// How the server's frames start when it writes the type first, as
	// encoding/json does for the protocol's structs.
	prefixMessage = []byte(`{"type":"message",`)
	prefixEvent   = []byte(`{"type":"event",`)
)

// frameKind sorts a server frame cheaply: a message, an event, or
// something else (welcome, ack, error) that needs a full decode.
type frameKind int

const (
	kindOther frameKind = iota
	kindMessage
	kindEvent
)

// scanMessage finds the target and text of a message frame without decoding
// it. It is only right for texts and targets without escapes, which holds
// for every benchmark message and name; a text made by someone else fails
// parseText afterwards and is counted as foreign.
func scanMessage(frame []byte) (kind frameKind, target, text []byte) {
	switch {
	case bytes.HasPrefix(frame, prefixMessage):
		// The common case, decided without scanning the frame.
	case bytes.HasPrefix(frame, prefixEvent):
		return kindEvent, nil, nil
	case bytes.Contains(frame, keyTypeEvent):
		return kindEvent, nil, nil
	case !bytes.Contains(frame, keyTypeMessage):
		return kindOther, nil, nil
	}
	target = stringAfter(frame, keyTarget)
	text = stringAfter(frame, keyMessage)
	if target == nil || text == nil {
		return kindOther, nil, nil
	}
	return kindMessage, target, text
}

// stringAfter returns the bytes between key and the next quote.
func stringAfter(frame, key []byte) []byte {
	i := bytes.Index(frame, key)
	if i < 0 {
		return nil
	}
	rest := frame[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}
