package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// outbox is the send side of a session: the frames waiting for the socket,
// and the writer role.
//
// Writing is a role, not a goroutine: push and close report when the
// caller has just taken the role (nobody held it), and the caller then
// starts a writer goroutine, which calls take until take gives the role
// up. An idle connection therefore holds no writer goroutine. Whoever
// holds the role is the only one that writes to the socket, data frames
// and the close frame alike.
//
// Every method is safe for concurrent use; push and close never block.
type outbox struct {
	limit int // immutable: the most frames that may wait

	closing atomic.Bool // set once, under mu: push drops frames from then on

	mu      sync.Mutex
	queue   [][]byte // guarded by mu: frames waiting for the writer
	replies int      // guarded by mu: how many of them are replies
	writing bool     // guarded by mu: someone holds the writer role
	pausing bool     // guarded by mu: the writer is waiting out a delay
	pauses  uint32   // guarded by mu: how many pauses the writer began
	startAt int64    // guarded by mu: monoNow when a push took the writer role; 0 once a writer started
	wake    chan struct{}
	room    chan struct{} // made at the first wait: the replies were taken

	spare [][]byte // owned by the writer role: the last batch, reused
	timer *time.Timer
}

// push queues frame, a reply to the client's own request if reply is set.
// It reports whether the caller now holds the writer role (and must start
// a writer) and whether the queue was full, in which case frame was
// dropped and the session must close. After close, push drops frames.
func (o *outbox) push(frame []byte, reply bool) (start, full bool) {
	if o.closing.Load() {
		return false, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) >= o.limit {
		return false, true
	}
	o.queue = append(o.queue, frame)
	if reply {
		o.replies++
	}
	if o.pausing && len(o.queue) >= o.pauseLimit() {
		o.wakeLocked() // the delay must never be what overflows the queue
	}
	start = !o.writing
	o.writing = true
	if start {
		o.startAt = monoNow()
	}
	return start, false
}

// started returns when a push took the writer role for the writer that
// calls it (0 if it was not a push), and forgets it.
func (o *outbox) started() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	at := o.startAt
	o.startAt = 0
	return at
}

// close marks the outbox closing, ends a pause, and reports whether the
// caller now holds the writer role (and must start a writer, which will
// close the socket).
func (o *outbox) close() (start bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closing.Store(true)
	o.wakeLocked()
	o.roomLocked()
	start = !o.writing
	o.writing = true
	return start
}

// hold takes the writer role for the caller, who must hold nothing yet:
// the opener writes the welcome before anything queued meanwhile.
func (o *outbox) hold() {
	o.mu.Lock()
	o.writing = true
	o.mu.Unlock()
}

// release gives the writer role up, unless there is work: then the caller
// keeps it and must start a writer.
func (o *outbox) release() (start bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writing = len(o.queue) > 0 || o.closing.Load()
	return o.writing
}

// take hands the role holder its next batch and how many of its frames
// are not replies. It reports closing (the holder must close the socket,
// keeping the role) or, with an empty batch and not closing, that the role
// was given up. The batch is the holder's until it calls recycle.
func (o *outbox) take() (batch [][]byte, others int, closing bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing.Load() {
		return nil, 0, true
	}
	batch = o.queue
	if len(batch) == 0 {
		o.writing = false
		return nil, 0, false
	}
	o.queue, o.spare = o.spare[:0], nil
	others = len(batch) - o.replies
	o.replies = 0
	o.roomLocked()
	return batch, others, false
}

// awaitRoom blocks while more than most replies wait in the queue, until
// the writer takes them or the outbox closes. The reader calls it before
// it reads a request: a client that sends faster than its replies can be
// written is slowed down (its requests wait in TCP), instead of being
// closed as slow, which is for clients that do not read at all.
func (o *outbox) awaitRoom(most int) {
	for {
		o.mu.Lock()
		if o.replies <= most || o.closing.Load() {
			o.mu.Unlock()
			return
		}
		if o.room == nil {
			o.room = make(chan struct{}, 1)
		}
		room := o.room
		o.mu.Unlock()
		<-room
	}
}

// roomLocked wakes a reader waiting for room, if one is.
func (o *outbox) roomLocked() {
	if o.room != nil {
		select {
		case o.room <- struct{}{}:
		default:
		}
	}
}

// recycle takes back a batch that take handed out and that has been
// written, to hold the next one.
func (o *outbox) recycle(batch [][]byte) {
	clear(batch) // drop references to sent frames
	o.spare = batch[:0]
}

// rest takes what is still queued, for the holder to write before a
// normal close.
func (o *outbox) rest() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	batch := o.queue
	o.queue, o.replies = nil, 0
	o.roomLocked()
	return batch
}

// pause holds the writer role for d, so that the frames queued meanwhile
// go out in one write. It ends early when the queue fills to half its
// limit (a client that keeps reading is never closed because of the
// delay: in a burst the writer writes as if there were no delay) and when
// the outbox closes. Only the role holder calls it.
func (o *outbox) pause(d time.Duration) {
	o.mu.Lock()
	if o.closing.Load() || len(o.queue) >= o.pauseLimit() {
		o.mu.Unlock()
		return
	}
	if o.wake == nil {
		o.wake = make(chan struct{}, 1)
	}
	o.pausing = true
	o.pauses++
	o.mu.Unlock()

	// Timers are synchronous since Go 1.23: after Stop or Reset no stale
	// tick is left in the channel.
	if o.timer == nil {
		o.timer = time.NewTimer(d)
	} else {
		o.timer.Reset(d)
	}
	select {
	case <-o.timer.C:
	case <-o.wake:
		o.timer.Stop()
	}

	o.mu.Lock()
	o.pausing = false
	select {
	case <-o.wake: // a token sent as the timer fired
	default:
	}
	o.mu.Unlock()
}

// pauseLimit is the queue length that ends a pause: half the limit.
func (o *outbox) pauseLimit() int { return max(o.limit/2, 1) }

// wakeLocked ends the writer's pause early, if it is pausing.
func (o *outbox) wakeLocked() {
	if o.pausing {
		select {
		case o.wake <- struct{}{}:
		default: // a token is already there
		}
	}
}

// stats returns how many frames are queued and how many pauses began.
func (o *outbox) stats() (queued int, pauses uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue), o.pauses
}
