package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/protocol"
)

// Close codes of spec 3.5.
const (
	statusNormal        = websocket.StatusNormalClosure           // 1000
	statusGoingAway     = websocket.StatusGoingAway               // 1001
	statusUnsupported   = websocket.StatusUnsupportedData         // 1003
	statusInvalidData   = websocket.StatusInvalidFramePayloadData // 1007
	statusPolicy        = websocket.StatusPolicyViolation         // 1008
	statusInternalError = websocket.StatusInternalError           // 1011
)

// Session is one websocket connection of a logged-in user.
//
// Writing is a role, not a goroutine: whoever finds the queue non-empty and
// nobody writing takes the role (writing, under qmu) and runs writeRun in a
// new goroutine, which writes until the queue is empty and then gives the
// role up. An idle connection therefore holds no writer goroutine. The
// close handshake is performed by the role holder too, so frames and the
// close frame never race. The handler goroutine holds the role while it
// writes the welcome.
type Session struct {
	id     string       // immutable: this connection's id
	login  auth.Session // immutable: who is connected
	srv    *Server      // immutable
	conn   *websocket.Conn
	frames *frameConn // the socket under conn; data frames go here
	user   *localUser // immutable: the user's rate limit on this node

	qmu     sync.Mutex
	queue   [][]byte // guarded by qmu: frames waiting for the writer
	replies int      // guarded by qmu: how many of them are replies (sendReply)
	writing bool     // guarded by qmu: someone holds the writer role
	spare   [][]byte // owned by the writer role: the last batch, reused

	// For Config.WriteDelay. Owned by the writer role: when the last batch
	// was written and the average time between the frames written, both in
	// nanoseconds of the monotonic clock; the average number of frames per
	// write, times 256 (both averages exponentially weighted); and the
	// timer of its pauses. pausing, pauses and wake are guarded by qmu: the
	// writer is waiting out a delay, how many pauses it began, and a token
	// in wake (made at the first pause) ends a pause early.
	lastWrite  int64
	frameGap   int64
	batchAvg   int64
	pauseTimer *time.Timer
	pausing    bool
	pauses     uint32
	wake       chan struct{}

	closing     atomic.Bool // set by close: send drops frames from then on
	closeOnce   sync.Once
	closeCode   websocket.StatusCode // written once in close before closing is set
	closeReason string
	finished    chan struct{} // closed once the socket is closed
	ping        *time.Timer   // set before the writer role is first released

	topics map[string]struct{} // guarded by router.mu: the topics it receives
	gone   bool                // guarded by router.mu: removed from the router for good
}

func (s *Session) closedLocked() bool { return s.gone }

// log writes a line with the connection and the user, at level. The
// session keeps no logger of its own: a clone with those attributes would
// cost every idle connection a few hundred bytes, and each line that is
// written (or not, below the level) nothing more than its arguments.
func (s *Session) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !s.srv.log.Enabled(ctx, level) {
		return
	}
	s.srv.log.Log(ctx, level, msg, append([]any{"conn", s.id, "user", s.login.UserID}, args...)...)
}

// send queues frame for the writer without blocking. A full queue means the
// client cannot keep up: the session closes with 1008.
func (s *Session) send(frame []byte) { s.enqueue(frame, false) }

// sendReply is send for a reply to the client's own request (an ack or an
// error): the write delay does not count replies (see behind).
func (s *Session) sendReply(frame []byte) { s.enqueue(frame, true) }

func (s *Session) enqueue(frame []byte, reply bool) {
	if s.closing.Load() {
		return
	}
	s.qmu.Lock()
	if len(s.queue) >= s.srv.cfg.SendQueue {
		s.qmu.Unlock()
		if s.close(statusPolicy, "too slow: send queue overflow") {
			s.srv.metrics.slowConsumers.Inc()
			s.log(slog.LevelWarn, "slow consumer closed", "queue", s.srv.cfg.SendQueue)
		}
		return
	}
	s.queue = append(s.queue, frame)
	if reply {
		s.replies++
	}
	if s.pausing && len(s.queue) >= s.pauseLimit() {
		s.wakeLocked() // the delay must never be what overflows the queue
	}
	start := !s.writing
	s.writing = true
	s.qmu.Unlock()
	if start {
		go s.writeRun()
	}
}

// wakeLocked ends the writer's pause early, if it is pausing.
func (s *Session) wakeLocked() {
	if s.pausing {
		select {
		case s.wake <- struct{}{}:
		default: // a token is already there
		}
	}
}

// close ends the session with code (0: the connection is already gone) and
// reports whether this call was the one that closed it. It never blocks.
func (s *Session) close(code websocket.StatusCode, reason string) bool {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.closeCode = code
		s.closeReason = reason
		s.qmu.Lock()
		s.closing.Store(true)
		s.wakeLocked()
		start := !s.writing
		s.writing = true
		s.qmu.Unlock()
		if start {
			go s.writeRun()
		}
	})
	return first
}

// releaseWriter gives up the writer role held since the session began (the
// welcome is written), handing it to a new goroutine if there is work.
func (s *Session) releaseWriter() {
	s.qmu.Lock()
	work := len(s.queue) > 0 || s.closing.Load()
	s.writing = work
	s.qmu.Unlock()
	if work {
		go s.writeRun()
	}
}

// writeRun holds the writer role: it writes batches until the queue is
// empty, or, once the session is closing, closes the socket.
func (s *Session) writeRun() {
	for {
		s.qmu.Lock()
		if s.closing.Load() {
			s.qmu.Unlock()
			s.finish()
			return
		}
		batch := s.queue
		if len(batch) == 0 {
			s.writing = false
			s.qmu.Unlock()
			return
		}
		s.queue, s.spare = s.spare[:0], nil
		n := len(batch) - s.replies
		s.replies = 0
		s.qmu.Unlock()
		if err := s.writeBatch(batch); err != nil {
			s.close(0, "")
			continue
		}
		if d := s.srv.cfg.WriteDelay; d > 0 && s.behind(int64(time.Since(monoEpoch)), n, d) {
			s.pause(d)
		}
	}
}

// pause holds the writer role for d, so that the frames queued meanwhile go
// out in one write. It ends early when the queue fills to half the send
// queue limit (a client that keeps reading is not closed because of the
// delay: in a burst, such as the join events of a large channel filling up,
// the writer writes as if there were no delay) and when the session closes.
func (s *Session) pause(d time.Duration) {
	s.qmu.Lock()
	if s.closing.Load() || len(s.queue) >= s.pauseLimit() {
		s.qmu.Unlock()
		return
	}
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
	}
	s.pausing = true
	s.pauses++
	s.qmu.Unlock()

	// Timers are synchronous since Go 1.23 (go.mod says 1.26): after Stop
	// or Reset no stale tick is left in the channel.
	if s.pauseTimer == nil {
		s.pauseTimer = time.NewTimer(d)
	} else {
		s.pauseTimer.Reset(d)
	}
	select {
	case <-s.pauseTimer.C:
	case <-s.wake:
		s.pauseTimer.Stop()
	}

	s.qmu.Lock()
	s.pausing = false
	select {
	case <-s.wake: // a token sent as the timer fired
	default:
	}
	s.qmu.Unlock()
}

// pauseLimit is the queue length that ends a pause: half the send queue.
func (s *Session) pauseLimit() int { return max(s.srv.cfg.SendQueue/2, 1) }

// behind records a write of n frames (replies not counted) at now
// (monotonic nanoseconds) and reports whether the writer should wait d
// before its next write, so that what arrives meanwhile shares one system
// call. It should when, recently, the connection is both
//
//   - busy: it gets more than two frames per delay d on average, so a
//     pause gathers a few of them; and
//   - behind: its writes carry two and a half frames or more on average,
//     so frames already arrive faster than the node writes them one by
//     one, which is what a node short of CPU looks like from a socket.
//
// A connection that keeps up is never held back, however busy. Once
// pausing, a write carries about rate times d frames, so the connection
// keeps pausing while that is two and a half or more (125 frames a second
// at 20 ms), and stops when the stream thins out or goes quiet.
//
// Replies (acks and errors) are not counted: the client paces them with its
// own requests, and an ack comes with the copy of the client's message, so
// with them a steady publisher looked behind. A write of burstBatch frames
// or more is never followed by a pause: a burst (the join events of a
// channel filling up) batches well on its own, and a pause would only leave
// its queue fuller when the machine stalls. docs/performance.md has the
// measurements behind each rule.
func (s *Session) behind(now int64, n int, d time.Duration) bool {
	if n == 0 {
		return false // replies only: nothing to tell
	}
	quiet := 4 * int64(d) // a first write, or one after a quiet spell, counts as this
	gap := quiet
	if s.lastWrite != 0 {
		gap = min((now-s.lastWrite)/int64(n), quiet)
	}
	s.lastWrite = now
	if s.frameGap == 0 {
		s.frameGap = gap
	} else {
		s.frameGap += (gap - s.frameGap) / 8
	}
	// Times 256, so that the integer steps stop within 7/256 of a frame of
	// a steady batch size, well clear of the threshold.
	if s.batchAvg == 0 {
		s.batchAvg = 256 * int64(n)
	} else {
		s.batchAvg += (256*int64(n) - s.batchAvg) / 8
	}
	return n < burstBatch && s.frameGap < int64(d)/2 && s.batchAvg >= behindBatch
}

const (
	// behindBatch is the average number of frames per write, times 256,
	// from which a busy connection counts as behind: two and a half.
	behindBatch = 640
	// burstBatch is the smallest write that is not followed by a pause.
	burstBatch = 32
)

// monoEpoch is the origin of the session's monotonic write times.
var monoEpoch = time.Now()

// writeBatch writes a batch of frames with as few system calls as
// frameConn allows (one, unless the batch is large).
func (s *Session) writeBatch(batch [][]byte) error {
	if err := s.frames.writeFrames(batch); err != nil {
		return err
	}
	s.srv.metrics.wrote(batch)
	clear(batch) // drop references to sent frames
	s.spare = batch
	return nil
}

// pingPeer checks that the peer is alive; a peer that does not answer
// within the ping interval is dropped. It runs on the ping timer and
// re-arms it.
func (s *Session) pingPeer() {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.PingInterval)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		if !s.closing.Load() {
			s.log(slog.LevelInfo, "peer did not answer ping", "err", err)
			s.close(0, "")
		}
		return
	}
	s.ping.Reset(s.srv.cfg.PingInterval)
	if s.closing.Load() {
		// finish may have stopped the timer before the Reset: stop it
		// again, so that no ping outlives the session.
		s.ping.Stop()
	}
}

// finish closes the socket, holding the writer role: with a close handshake
// if the server chose the code, at once if the connection is already
// broken. A 1000 or 1001 close first writes what was queued (acks
// included) to a client that keeps up; the socket's write deadline bounds
// this for one that does not.
func (s *Session) finish() {
	defer close(s.finished)
	if s.ping != nil {
		s.ping.Stop()
	}
	switch s.closeCode {
	case 0:
		s.conn.CloseNow()
		return
	case statusNormal, statusGoingAway:
		s.qmu.Lock()
		batch := s.queue
		s.queue, s.replies = nil, 0
		s.qmu.Unlock()
		if len(batch) > 0 {
			if err := s.writeBatch(batch); err != nil {
				s.conn.CloseNow()
				return
			}
		}
	}
	s.conn.Close(s.closeCode, s.closeReason)
}

// readLoop reads and handles the client's frames until the connection ends.
func (s *Session) readLoop(ctx context.Context) {
	for {
		typ, data, err := s.conn.Read(context.Background())
		if err != nil {
			s.endRead(err)
			return
		}
		if typ != websocket.MessageText {
			s.log(slog.LevelWarn, "binary frame, closing")
			s.close(statusUnsupported, "binary frames are not accepted")
			return
		}
		if !utf8.Valid(data) {
			s.log(slog.LevelWarn, "invalid UTF-8, closing")
			s.close(statusInvalidData, "text frame is not valid UTF-8")
			return
		}
		s.handle(ctx, data)
	}
}

func (s *Session) endRead(err error) {
	code := websocket.CloseStatus(err)
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		// The library has written the 1009 close frame. Closing with the
		// same code lets the handshake drain the rest of the oversized
		// frame and wait for the client's answer, instead of resetting
		// the connection under it (frameConn drops the second close frame).
		s.log(slog.LevelWarn, "frame over the size limit, closing")
		s.close(websocket.StatusMessageTooBig, "frame too big")
		return
	case code == statusNormal || code == statusGoingAway:
	case code == -1 && !errors.Is(err, context.Canceled):
		s.log(slog.LevelDebug, "connection ended", "err", err)
	}
	s.close(0, "")
}

// handle answers one request frame.
func (s *Session) handle(ctx context.Context, data []byte) {
	req, err := protocol.DecodeRequest(data)
	id := req.ID
	var de *protocol.DecodeError
	if errors.As(err, &de) {
		id = de.ID
	}
	if err := s.srv.allow(ctx, s); err != nil {
		if errors.Is(err, errRateLimited) {
			s.srv.metrics.rateLimited.Inc()
		}
		s.reply(id, toProto(err, ""))
		return
	}
	if err != nil {
		s.srv.metrics.framesIn.WithLabelValues("invalid").Inc()
		s.reply(id, &protoError{protocol.CodeBadRequest, de.Reason})
		return
	}
	kind := req.Type
	if kind == protocol.TypeCommand {
		kind = req.Action
	}
	s.srv.metrics.framesIn.WithLabelValues(kind).Inc()
	var perr *protoError
	if err := s.srv.dispatch(ctx, s, req); err != nil {
		perr = toProto(err, req.Target)
		if perr.code == protocol.CodeInternal {
			s.log(slog.LevelError, "request failed", "type", req.Type, "action", req.Action, "err", err)
		} else if perr.code == protocol.CodeUnavailable {
			s.log(slog.LevelWarn, "request failed: backend unavailable", "type", req.Type, "action", req.Action, "err", err)
		}
	}
	s.reply(id, perr)
}

// reply acks a request with an id, or reports its error.
func (s *Session) reply(id string, perr *protoError) {
	if perr != nil {
		s.srv.metrics.errors.WithLabelValues(string(perr.code)).Inc()
		s.sendReply(mustJSON(protocol.Error{Type: protocol.TypeError, Code: perr.code, Message: perr.msg, ID: id}))
		return
	}
	if id != "" {
		s.sendReply(mustJSON(protocol.Ack{Type: protocol.TypeAck, ID: id}))
	}
}
