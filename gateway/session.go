package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/auth"
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

// host is what a Session needs of its node: someone to carry out its
// requests. handle runs on the session's reader, one request at a time;
// charge says whether the request counts against the rate limit.
type host interface {
	handle(ctx context.Context, s *Session, data []byte, charge bool)
}

// sessionEnv is what the sessions of a node share; immutable after New.
type sessionEnv struct {
	host         host
	log          *slog.Logger
	metrics      *metrics
	sendQueue    int
	writeDelay   time.Duration
	pingInterval time.Duration
	rateLimit    float64 // requests a second a user may send
}

// Session is one websocket connection of a logged-in user.
//
// Its reader (run) reads frames and hands each to the host, in order. Its
// send side is an outbox: anyone may queue a frame without blocking, and
// whoever finds nobody writing starts a writer goroutine (writeLoop) that
// sends each batch with one system call and ends when the queue is empty.
// The close handshake is done by the writer role too, so frames and the
// close frame never race.
type Session struct {
	id     string       // immutable: this connection's id
	login  auth.Session // immutable: who is connected
	env    *sessionEnv  // immutable
	conn   *websocket.Conn
	frames *frameConn // the socket under conn; data frames go here
	user   *localUser // immutable: the user's rate limit on this node (ratelimit.go)

	out  outbox
	pace pacer // owned by the writer role

	readAt int64 // owned by the reader: monoNow when the request being handled was read

	closeOnce   sync.Once
	closeCode   websocket.StatusCode // written once by close, before out.close
	closeReason string               // likewise
	finished    chan struct{}        // closed once the socket is closed
	ping        *time.Timer          // set before the writer role is first released: the next ping, or the login's expiry
	nextPing    int64                // owned by ping's callback (startPing before it): monoNow when the next ping is due
}

func newSession(id string, login auth.Session, env *sessionEnv, conn *websocket.Conn, frames *frameConn, user *localUser) *Session {
	s := &Session{
		id:       id,
		login:    login,
		env:      env,
		conn:     conn,
		frames:   frames,
		user:     user,
		finished: make(chan struct{}),
	}
	s.out.limit = env.sendQueue
	return s
}

// log writes a line with the connection and the user, at level. The
// session keeps no logger of its own: a clone with those attributes would
// cost every idle connection a few hundred bytes.
func (s *Session) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !s.env.log.Enabled(ctx, level) {
		return
	}
	s.env.log.Log(ctx, level, msg, append([]any{"conn", s.id, "user", s.login.UserID}, args...)...)
}

// send queues frame for the writer without blocking. A full queue means the
// client cannot keep up: the session closes with 1008.
func (s *Session) send(frame []byte) { s.enqueue(frame, false) }

// sendReply is send for a reply to the client's own request (an ack or an
// error), which the write delay does not count (pacer.go).
func (s *Session) sendReply(frame []byte) { s.enqueue(frame, true) }

func (s *Session) enqueue(frame []byte, reply bool) {
	start, full := s.out.push(frame, reply)
	if full {
		if s.close(statusPolicy, "too slow: send queue overflow") {
			s.env.metrics.slowConsumers.Inc()
			s.log(slog.LevelWarn, "slow consumer closed", "queue", s.out.limit)
		}
		return
	}
	if start {
		go s.writeLoop()
	}
}

// close ends the session with code (0: the connection is already gone) and
// reports whether this call was the one that closed it. It never blocks.
func (s *Session) close(code websocket.StatusCode, reason string) bool {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.closeCode, s.closeReason = code, reason
		if s.out.close() {
			go s.writeLoop()
		}
	})
	return first
}

// releaseWriter gives up the writer role that the opener held while it
// wrote the welcome, starting a writer if anything is waiting.
func (s *Session) releaseWriter() {
	if s.out.release() {
		go s.writeLoop()
	}
}

// writeLoop holds the writer role: it writes batches until the queue is
// empty, or, once the session is closing, closes the socket.
func (s *Session) writeLoop() {
	if since := s.out.started(); since > 0 {
		s.env.metrics.hop(hopWriter, monoNow()-since)
	}
	for {
		batch, others, closing := s.out.take()
		if closing {
			s.finish()
			return
		}
		if len(batch) == 0 {
			return // the role is given up
		}
		if err := s.writeBatch(batch); err != nil {
			s.close(0, "")
			continue
		}
		if d := s.env.writeDelay; d > 0 && s.pace.wrote(monoNow(), others, d) {
			s.out.pause(d)
		}
	}
}

// writeBatch writes a batch of frames with as few system calls as
// frameConn allows (one, unless the batch is large). The caller holds the
// writer role.
func (s *Session) writeBatch(batch [][]byte) error {
	began := monoNow()
	if err := s.frames.writeFrames(batch); err != nil {
		return err
	}
	s.env.metrics.hop(hopWrite, monoNow()-began)
	s.env.metrics.wrote(batch)
	s.out.recycle(batch)
	return nil
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
		if batch := s.out.rest(); len(batch) > 0 {
			if err := s.writeBatch(batch); err != nil {
				s.conn.CloseNow()
				return
			}
		}
	}
	s.conn.Close(s.closeCode, s.closeReason)
}

// startPing arms the session's one timer, for its pings and for its
// login's expiry (an idle node keeps one timer per connection, not two).
// The opener calls it before it releases the writer role: pingPeer reads
// the field.
//
// The first ping comes at a random moment within the first interval, and
// each next one an interval after the last answer. Connections opened
// together (every client of a node that restarted, a load test) would
// otherwise be pinged together, interval after interval, in bursts that
// hold up everyone's messages; spread out, the same pings are a steady
// trickle.
func (s *Session) startPing() {
	s.nextPing = monoNow() + int64(s.env.pingInterval-rand.N(s.env.pingInterval))
	s.ping = time.AfterFunc(time.Hour, s.pingPeer)
	s.rearm()
}

// rearm sets the timer for the next ping or the login's expiry, whichever
// comes first.
func (s *Session) rearm() {
	d := time.Duration(s.nextPing - monoNow())
	if e := time.Until(s.login.Expires); e < d {
		d = e
	}
	s.ping.Reset(d)
	if s.out.closing.Load() {
		// finish may have stopped the timer before the Reset: stop it
		// again, so that no ping outlives the session.
		s.ping.Stop()
	}
}

// pingPeer runs on the session's timer. A session whose login expired
// closes with 1008 (spec 3.5). Otherwise, if a ping is due, it checks that
// the peer is alive: a peer that did not answer the last ping within the
// ping interval is dropped; one that did is pinged again.
func (s *Session) pingPeer() {
	if !time.Now().Before(s.login.Expires) {
		s.close(statusPolicy, "session expired")
		return
	}
	if monoNow() < s.nextPing {
		s.rearm() // woken for the expiry, which the wall clock puts later now
		return
	}
	if !s.frames.answered() {
		if !s.out.closing.Load() {
			s.log(slog.LevelInfo, "peer did not answer ping")
			s.close(0, "")
		}
		return
	}
	if err := s.frames.ping(); err != nil {
		s.close(0, "")
		return
	}
	s.nextPing = monoNow() + int64(s.env.pingInterval)
	s.rearm()
}

// run reads and handles the client's frames until the connection ends,
// then closes the session and waits until its socket is closed.
func (s *Session) run(ctx context.Context) {
	s.readLoop(ctx)
	s.close(0, "") // the read side ended: the socket must close too
	<-s.finished
}

// Requests that waited on the backend are not charged to the rate limit
// (issue 17: after Redis paused, a client sending at half the limit was
// refused): while a request is held up for longer than stallAfter, the
// client's next ones pile up in the socket, and when they are read back
// to back, as many as the limit allows in the time lost are free. A read
// that waits for the client ends the backlog.
const (
	stallAfter = 50 * time.Millisecond
	backlogGap = 2 * time.Millisecond
)

func (s *Session) readLoop(ctx context.Context) {
	credit := 0.0 // requests owed for time lost to the backend
	for {
		s.out.awaitRoom(max(s.out.limit/4, 1))
		began := time.Now()
		typ, buf, err := s.readFrame()
		s.readAt = monoNow()
		if time.Since(began) > backlogGap {
			credit = 0 // the reader waited for the client: no backlog
		}
		if err != nil {
			s.endRead(err)
			return
		}
		if typ != websocket.MessageText {
			s.log(slog.LevelWarn, "binary frame, closing")
			s.close(statusUnsupported, "binary frames are not accepted")
			return
		}
		data := buf.Bytes()
		if !utf8.Valid(data) {
			s.log(slog.LevelWarn, "invalid UTF-8, closing")
			s.close(statusInvalidData, "text frame is not valid UTF-8")
			return
		}
		charge := credit < 1
		if !charge {
			credit--
		}
		began = time.Now()
		s.env.host.handle(ctx, s, data, charge)
		recycleReadBuf(buf) // handle keeps nothing of data: decoding copies
		if took := time.Since(began); took > stallAfter {
			credit = min(credit+took.Seconds()*s.env.rateLimit, 60*s.env.rateLimit)
		}
	}
}

// readBufs holds the buffers that request frames are read into, between
// reads: the library's Read allocates a fresh slice for every frame (512
// bytes at least), garbage at every request, and an idle connection
// should hold no buffer.
var readBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledRead is the largest read buffer kept for reuse: one frame near
// the read limit must not stay in the pool for good.
const maxPooledRead = 16 << 10

func recycleReadBuf(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledRead {
		readBufs.Put(buf)
	}
}

// readFrame reads the client's next frame into a buffer of readBufs, taken
// once the frame has begun to arrive, so that a connection waiting for its
// client holds none; the caller gives it back with recycleReadBuf.
func (s *Session) readFrame() (websocket.MessageType, *bytes.Buffer, error) {
	typ, r, err := s.conn.Reader(context.Background())
	if err != nil {
		return 0, nil, err
	}
	buf := readBufs.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return 0, nil, err
	}
	return typ, buf, nil
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
