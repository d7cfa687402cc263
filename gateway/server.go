package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/internal/origin"
	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// Authenticator tells who holds a request's credentials, and which of the
// sessions it returned are no longer valid (revoked or expired), for many
// at once.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Session, error)
	Revoked(ctx context.Context, sessions []auth.Session) ([]bool, error)
}

// Directory finds users by name, for private messages.
type Directory interface {
	UserByName(ctx context.Context, username string) (auth.User, error)
}

// Deps are the Server's collaborators.
type Deps struct {
	// Connect opens the node's backend, delivering what the node's
	// subscriptions receive to handler. The Server closes it.
	Connect func(handler pubsub.Handler) (pubsub.Backend, error)
	Auth    Authenticator
	Users   Directory
	// Metrics registers the gateway's metrics. If nil, they are not
	// exported.
	Metrics prometheus.Registerer
}

// Server is a gateway node's HTTP surface: it admits websocket upgrades
// and serves their sessions, and answers /healthz and /readyz. The node's
// other parts are wired by New (see the package doc).
type Server struct {
	cfg      Config // immutable after New
	log      *slog.Logger
	metrics  *metrics
	auth     Authenticator
	backend  pubsub.Backend
	env      sessionEnv // what the sessions share
	chat     *chat
	members  *membership
	re       *resyncer
	router   *router
	limits   *limits
	presence *presence
	sessions *sessionSet

	ctx    context.Context // ends when the Server shuts down
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Server started, sessions included

	draining atomic.Bool
	conns    atomic.Int64 // websockets admitted and not yet gone
}

// New connects the backend, subscribes the node to the cluster topic and
// starts the node's background work. Shutdown undoes it.
func New(ctx context.Context, cfg Config, deps Deps, log *slog.Logger) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics(deps.Metrics), auth: deps.Auth}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sessions = newSessionSet(&s.wg)
	reply := "n:" + uuid.NewString() // the node's own topic
	in := &inbox{self: reply, log: log, waits: newWaits(reply), metrics: s.metrics}
	backend, err := deps.Connect(in.deliver)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("connect backend: %w", err)
	}
	s.backend = backend
	var subs *subscriptions
	s.router = newRouter(s.metrics, func(topic string) { subs.markDirty(topic) })
	seq := newSequencer(s.ctx, &s.wg, s.router, backend, backend.Outages, log, s.metrics)
	subs = newSubscriptions(backend, s.router.has, seq.subscribed, seq.forget, log, s.metrics, clusterTopic, reply)
	s.limits = newLimits(cfg.RateLimit, backend, reply, log)
	book := &channelBook{}
	in.broker, in.router, in.seq, in.subs, in.book, in.limits = backend, s.router, seq, subs, book, s.limits
	s.members = &membership{backend: backend, router: s.router, subs: subs, seq: seq, book: book, waits: in.waits, log: log}
	s.chat = newChat(chat{
		maxText: cfg.MaxMessageBytes, log: log, metrics: s.metrics, backend: backend, users: deps.Users,
		router: s.router, subs: subs, book: book, limits: s.limits, seq: seq,
	}, s.members)
	s.env = sessionEnv{host: s.chat, log: log, metrics: s.metrics,
		sendQueue: cfg.SendQueue, writeDelay: cfg.WriteDelay, pingInterval: cfg.PingInterval, rateLimit: cfg.RateLimit}

	fail := func(what string, err error) (*Server, error) {
		s.cancel()
		backend.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	for _, topic := range []string{clusterTopic, reply} {
		if err := backend.Subscribe(ctx, topic); err != nil {
			return fail("subscribe "+topic, err)
		}
	}
	// The book starts from the registry; the notices take it from there.
	// An outage from here on is one that the book may have missed.
	outages := backend.Outages()
	if err := book.seed(func() ([]string, error) { return backend.Channels(ctx) }); err != nil {
		return fail("read channels", err)
	}
	epoch, err := backend.Epoch(ctx)
	if err != nil {
		return fail("read the history's epoch", err)
	}
	s.re = &resyncer{backend: backend, router: s.router, book: book, limits: s.limits, seq: seq, sessions: s.sessions, log: log, metrics: s.metrics, epoch: epoch}
	s.presence = newPresence(backend, cfg.PresenceMaxMembers, log, s.metrics)
	keeper := &housekeeper{backend: backend, auth: deps.Auth, sessions: s.sessions, limits: s.limits, placeTTL: cfg.PlaceTTL, log: log}
	s.wg.Add(4)
	go func() { defer s.wg.Done(); subs.loop(s.ctx) }()
	go func() { defer s.wg.Done(); s.presence.run(s.ctx) }()
	go func() { defer s.wg.Done(); keeper.run(s.ctx) }()
	go func() { defer s.wg.Done(); s.re.watch(s.ctx, outages) }()
	return s, nil
}

// Handler serves the gateway's HTTP endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.handleWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

// Ready reports why the node should not get traffic, or nil.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := s.backend.Ping(ctx); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if !s.backend.Healthy() {
		return errors.New("pub/sub heartbeat lost")
	}
	return nil
}

// Revoke closes, on every node, the websockets of a login session that was
// revoked. It is auth.Config.OnLogout.
func (s *Server) Revoke(ctx context.Context, login auth.Session) {
	if err := s.backend.Publish(ctx, userTopic(login.UserID), notice{op: opLogout, name: login.ID}.encode()); err != nil {
		s.log.Error("publish logout", "user", login.UserID, "err", err)
	}
}

// refusal is an upgrade that admit turned down.
type refusal struct {
	status int
	text   string
}

// admit runs the upgrade checks in the order of docs/protocol.md: shutting
// down (503), origin (403), credentials (401), the node's limit (503),
// the user's limit (429). An admitted upgrade holds one of the node's
// connections and one of the user's places: release gives them back.
func (s *Server) admit(r *http.Request) (login auth.Session, connID string, online bool, release func(), no *refusal) {
	if s.draining.Load() {
		return login, "", false, nil, &refusal{http.StatusServiceUnavailable, "shutting down"}
	}
	if !origin.Allowed(r, s.cfg.AllowedOrigins) {
		return login, "", false, nil, &refusal{http.StatusForbidden, "cross-origin websocket not allowed"}
	}
	login, err := s.auth.Authenticate(r)
	if err != nil {
		if errors.Is(err, auth.ErrNoSession) {
			return login, "", false, nil, &refusal{http.StatusUnauthorized, "not logged in"}
		}
		s.log.Warn("authenticate websocket", "err", err)
		return login, "", false, nil, &refusal{http.StatusServiceUnavailable, "service unavailable"}
	}
	// The node's place is taken first, so that a burst cannot overshoot
	// the limit.
	if n := s.conns.Add(1); s.cfg.MaxConnections > 0 && n > int64(s.cfg.MaxConnections) {
		s.conns.Add(-1)
		return login, "", false, nil, &refusal{http.StatusServiceUnavailable, "node is full"}
	}
	connID = uuid.NewString()
	user := pubsub.Peer{ID: login.UserID, Username: login.Username}
	online, err = s.backend.AcquirePlace(r.Context(), user, connID, s.cfg.MaxSessionsPerUser, s.cfg.PlaceTTL)
	if err != nil {
		s.conns.Add(-1)
		if errors.Is(err, pubsub.ErrTooManySessions) {
			return login, "", false, nil, &refusal{http.StatusTooManyRequests, "too many open sessions"}
		}
		s.log.Warn("acquire session place", "err", err)
		return login, "", false, nil, &refusal{http.StatusServiceUnavailable, "service unavailable"}
	}
	release = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.backend.ReleasePlace(ctx, login.UserID, connID, s.cfg.PresenceGrace); err != nil {
			s.log.Warn("release session place", "err", err)
		}
		s.conns.Add(-1)
	}
	return login, connID, online, release, nil
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	login, connID, online, release, no := s.admit(r)
	if no != nil {
		http.Error(w, no.text, no.status)
		return
	}
	// The library keeps OnPongReceived for the connection's life: it must
	// hold the frameConn only, not hw and the HTTP response (net/http's
	// buffers) behind it, which cost 9 KiB per idle connection.
	fc := new(frameConn)
	hw := &hijackWriter{ResponseWriter: w, timeout: s.cfg.WriteTimeout, conn: fc}
	conn, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		OriginPatterns: s.cfg.AllowedOrigins,
		// frameConn writes data frames itself, uncompressed.
		CompressionMode: websocket.CompressionDisabled,
		OnPongReceived:  fc.heardPong, // the session pings through frameConn
	})
	if err != nil {
		release()
		return // Accept wrote the HTTP error
	}
	conn.SetReadLimit(s.cfg.MaxFrameBytes)
	sess := newSession(connID, login, &s.env, conn, fc, s.limits.enter(login.UserID))
	if !s.sessions.add(sess) {
		conn.Close(statusGoingAway, "server shutting down")
		s.limits.leave(login.UserID)
		release()
		return
	}
	end := func() {
		s.router.leave(sess)
		s.limits.leave(login.UserID)
		s.metrics.closed(sess.closeCode)
		release()
		s.sessions.done(sess) // last: Shutdown waits for it
	}
	if !s.open(sess, online) {
		end()
		return
	}
	// The session's reader runs in a goroutine of its own, started with a
	// small stack now that the welcome is out, and this handler returns:
	// an idle connection keeps neither net/http's goroutine nor the stack
	// that setting the session up needed.
	go func() {
		defer end()
		sess.run(s.ctx)
	}()
}

// open attaches a new session and writes its welcome, and reports whether
// it is open. If not, the websocket is closed. If the session brought its
// user online, the user's channels (as the welcome lists them) hear of it.
func (s *Server) open(sess *Session, online bool) bool {
	sess.out.hold() // the welcome goes first, whatever is queued meanwhile
	s.metrics.opened()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	welcome, joined, err := s.chat.attach(ctx, sess)
	cancel()
	if err != nil {
		sess.log(slog.LevelWarn, "attach session failed", "err", err)
		if toProto(err, "").code == protocol.CodeUnavailable {
			sess.conn.Close(websocket.StatusTryAgainLater, "backend unavailable")
		} else {
			sess.conn.Close(statusInternalError, "internal error")
		}
		return false
	}
	if err := sess.writeBatch([][]byte{welcome}); err != nil {
		sess.conn.CloseNow()
		return false
	}
	if online {
		s.presence.changed(pubsub.Peer{ID: sess.login.UserID, Username: sess.login.Username}, true, joined)
	}
	sess.log(slog.LevelDebug, "session open")
	sess.startPing()
	sess.releaseWriter()
	return true
}

// Shutdown drains the node: /readyz turns 503, upgrades are refused, and
// every websocket is closed with 1001, until all are gone or ctx ends.
// Then it stops the node's background work and closes the backend. It is
// safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	for _, sess := range s.sessions.close() {
		sess.close(statusGoingAway, "server shutting down: reconnect")
	}
	// The writers run the close handshakes concurrently; wait for them.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for s.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("shutdown: %d connections left: %w", s.conns.Load(), ctx.Err())
			// Cut the sockets under the close handshakes still waiting for
			// a peer's answer; the library's own close would wait longer.
			for _, sess := range s.sessions.list() {
				sess.frames.Conn.Close()
			}
			break wait
		case <-tick.C:
		}
	}
	s.cancel()
	s.wg.Wait()
	s.backend.Close()
	return err
}
