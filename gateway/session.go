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
	"golang.org/x/time/rate"

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
type Session struct {
	id      string       // immutable: this connection's id
	login   auth.Session // immutable: who is connected
	srv     *Server      // immutable
	conn    *websocket.Conn
	cork    *corkConn     // the socket under conn
	limiter *rate.Limiter // immutable; shared by the user's sessions on this node
	log     *slog.Logger  // immutable

	qmu   sync.Mutex
	queue [][]byte      // guarded by qmu: frames waiting for the writer
	spare [][]byte      // owned by the writer: the last batch, reused
	wake  chan struct{} // capacity 1: the queue went from empty to not
	done  chan struct{} // closed by close

	closing     atomic.Bool // set by close: send drops frames from then on
	closeOnce   sync.Once
	closeCode   websocket.StatusCode // written once in close, read by the writer after done
	closeReason string

	topics map[string]struct{} // guarded by router.mu: the topics it receives
	gone   bool                // guarded by router.mu: removed from the router for good
}

func (s *Session) closedLocked() bool { return s.gone }

// send queues frame for the writer without blocking. A full queue means the
// client cannot keep up: the session closes with 1008.
func (s *Session) send(frame []byte) {
	if s.closing.Load() {
		return
	}
	s.qmu.Lock()
	n := len(s.queue)
	if n >= s.srv.cfg.SendQueue {
		s.qmu.Unlock()
		if s.close(statusPolicy, "too slow: send queue overflow") {
			s.srv.metrics.slowConsumers.Inc()
			s.log.Warn("slow consumer closed", "queue", s.srv.cfg.SendQueue)
		}
		return
	}
	s.queue = append(s.queue, frame)
	s.qmu.Unlock()
	if n == 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// close ends the session with code (0: the connection is already gone) and
// reports whether this call was the one that closed it. It never blocks.
func (s *Session) close(code websocket.StatusCode, reason string) bool {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.closing.Store(true)
		s.closeCode = code
		s.closeReason = reason
		close(s.done)
	})
	return first
}

// writeLoop is the only writer of data frames once the welcome is sent. It
// drains the queue, pings the peer, and performs the close handshake when
// the session ends.
func (s *Session) writeLoop() {
	ping := time.NewTicker(s.srv.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-s.done:
			s.finish()
			return
		case <-ping.C:
			go s.ping()
		case <-s.wake:
			if err := s.writeQueued(false); err != nil {
				s.close(0, "")
				s.finish()
				return
			}
		}
	}
}

// writeQueued writes everything queued, corked, so that the whole batch
// leaves in as few system calls as the cork's size allows. It takes the
// queue in one swap, so senders never wait for the socket. Once the session
// is closing it stops after the current batch, unless drain asks it to
// write everything that was queued before the close.
func (s *Session) writeQueued(drain bool) error {
	for {
		s.qmu.Lock()
		batch := s.queue
		if len(batch) == 0 {
			s.qmu.Unlock()
			return nil
		}
		s.queue, s.spare = s.spare[:0], nil
		s.qmu.Unlock()
		s.cork.cork()
		for _, frame := range batch {
			// No context deadline per frame: the cork bounds each socket
			// write with the write timeout.
			if err := s.conn.Write(context.Background(), websocket.MessageText, frame); err != nil {
				s.cork.uncork()
				return err
			}
		}
		if err := s.cork.uncork(); err != nil {
			return err
		}
		s.srv.metrics.framesOut.Add(float64(len(batch)))
		clear(batch) // drop references to sent frames
		s.spare = batch
		if s.closing.Load() && !drain {
			return nil
		}
	}
}

// ping checks that the peer is alive; a peer that does not answer within
// the ping interval is dropped.
func (s *Session) ping() {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.PingInterval)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		select {
		case <-s.done:
		default:
			s.log.Info("peer did not answer ping", "err", err)
			s.close(0, "")
		}
	}
}

// finish closes the socket: with a close handshake if the server chose the
// code, at once if the connection is already broken.
func (s *Session) finish() {
	switch s.closeCode {
	case 0:
		s.conn.CloseNow()
		return
	case statusNormal, statusGoingAway:
		// A client that keeps up gets what was queued for it (acks
		// included) before the close frame. The cork's write deadline
		// bounds this for one that does not.
		if err := s.writeQueued(true); err != nil {
			s.conn.CloseNow()
			return
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
			s.log.Warn("binary frame, closing")
			s.close(statusUnsupported, "binary frames are not accepted")
			return
		}
		if !utf8.Valid(data) {
			s.log.Warn("invalid UTF-8, closing")
			s.close(statusInvalidData, "text frame is not valid UTF-8")
			return
		}
		s.handle(ctx, data)
	}
}

func (s *Session) endRead(err error) {
	code := websocket.CloseStatus(err)
	switch {
	case code == statusNormal || code == statusGoingAway:
	case code == websocket.StatusMessageTooBig:
		// The library answered a frame over the limit with 1009.
		s.srv.metrics.closed(code)
		s.log.Warn("frame over the size limit, closed")
	case code == -1 && !errors.Is(err, context.Canceled):
		s.log.Debug("connection ended", "err", err)
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
	if !s.limiter.Allow() {
		s.srv.metrics.rateLimited.Inc()
		s.reply(id, &protoError{protocol.CodeRateLimited, "too many requests, slow down"})
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
			s.log.Error("request failed", "type", req.Type, "action", req.Action, "err", err)
		} else if perr.code == protocol.CodeUnavailable {
			s.log.Warn("request failed: backend unavailable", "type", req.Type, "action", req.Action, "err", err)
		}
	}
	s.reply(id, perr)
}

// reply acks a request with an id, or reports its error.
func (s *Session) reply(id string, perr *protoError) {
	if perr != nil {
		s.srv.metrics.errors.WithLabelValues(string(perr.code)).Inc()
		s.send(mustJSON(protocol.Error{Type: protocol.TypeError, Code: perr.code, Message: perr.msg, ID: id}))
		return
	}
	if id != "" {
		s.send(mustJSON(protocol.Ack{Type: protocol.TypeAck, ID: id}))
	}
}
