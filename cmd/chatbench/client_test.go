package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wirechat/chat/protocol"
)

// BenchmarkHandleMessage is the load generator's own cost per delivered
// message once the websocket library has read the frame: sort the frame,
// parse the text, count the stream, record the latency.
func BenchmarkHandleMessage(b *testing.B) {
	bn := newBench(Config{Concurrency: 1, URLs: []string{"http://127.0.0.1:1"}})
	c := bn.newClients("s", 1)[0]
	frames := make([][]byte, 1024)
	for i := range frames {
		frames[i], _ = json.Marshal(protocol.Message{
			Type: protocol.TypeMessage, Emitter: protocol.EmitterParticipant, Target: "#bench-0",
			Identifier: "0b7e3c1e-8f6c-4a34-9d5e-0d4f6a1b2c3d", Username: "bench-p0",
			Message: string(appendText(nil, 1, uint64(i+1), time.Now().UnixNano(), 100)),
			TS:      "2026-11-26T08:40:05.123Z",
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.handle(frames[i%len(frames)])
	}
}

func TestHandleMessageDoesNotAllocate(t *testing.T) {
	bn := newBench(Config{Concurrency: 1, URLs: []string{"http://127.0.0.1:1"}})
	c := bn.newClients("s", 1)[0]
	seq := uint64(0)
	frame := func() []byte {
		seq++
		f, _ := json.Marshal(protocol.Message{Type: protocol.TypeMessage, Target: "#bench-0",
			Message: string(appendText(nil, 1, seq, time.Now().UnixNano(), 100))})
		return f
	}
	c.handle(frame()) // the stream's first message creates its counter
	frames := make([][]byte, 200)
	for i := range frames {
		frames[i] = frame()
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		c.handle(frames[i])
		i++
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per delivered message, want 0", allocs)
	}
	if got := c.fresh.Load(); got != 1+101 {
		t.Errorf("%d messages counted, want 102", got)
	}
}
