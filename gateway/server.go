package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// Authenticator tells who holds a request's credentials, and whether a
// session it returned is still valid (auth.ErrNoSession once revoked or
// expired).
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Session, error)
	Check(ctx context.Context, s auth.Session) error
}

// Directory finds users by name, for private messages.
type Directory interface {
	UserByName(ctx context.Context, username string) (auth.User, error)
}

// Deps are the Server's collaborators.
type Deps struct {
	// Connect opens the node's backend, delivering to handler. For the
	// in-memory backend Broker and Registry are one value.
	Connect func(handler pubsub.Handler) (pubsub.Broker, pubsub.Registry, error)
	Auth    Authenticator
	Users   Directory
	// Metrics registers the gateway's metrics. If nil, they are not
	// exported.
	Metrics prometheus.Registerer
}

// Server is a gateway node: it serves /ws, /healthz and /readyz.
type Server struct {
	cfg      Config // immutable after New
	log      *slog.Logger
	metrics  *metrics
	auth     Authenticator
	users    Directory
	broker   pubsub.Broker
	registry pubsub.Registry
	router   *router

	ctx    context.Context // ends when the Server is closed
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Server started

	draining atomic.Bool
	conns    atomic.Int64

	mu       sync.Mutex
	sessions map[*Session]struct{} // guarded by mu
	locals   map[string]*localUser // guarded by mu: user id -> the user's limiter on this node
	closed   bool                  // guarded by mu
}

// New connects the backend, subscribes the node to the cluster topic and
// starts the node's background work. Close undoes it.
func New(ctx context.Context, cfg Config, deps Deps, log *slog.Logger) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		metrics:  newMetrics(deps.Metrics),
		auth:     deps.Auth,
		users:    deps.Users,
		sessions: make(map[*Session]struct{}),
		locals:   make(map[string]*localUser),
	}
	s.router = newRouter(log, s.metrics)
	s.router.onHere = s.heardHere
	broker, registry, err := deps.Connect(s.router.deliver)
	if err != nil {
		return nil, fmt.Errorf("connect backend: %w", err)
	}
	s.broker, s.registry, s.router.broker = broker, registry, broker
	for _, topic := range []string{clusterTopic, s.router.reply} {
		if err := broker.Subscribe(ctx, topic); err != nil {
			broker.Close()
			return nil, fmt.Errorf("subscribe %s: %w", topic, err)
		}
	}
	// The book starts from the registry; the notices take it from there.
	// An outage from here on is one that the book may have missed.
	outages := broker.Outages()
	if err := s.router.book.seed(func() ([]string, error) { return registry.Channels(ctx) }); err != nil {
		broker.Close()
		return nil, fmt.Errorf("read channels: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.router.reconcileLoop(s.ctx) }()
	go func() { defer s.wg.Done(); s.refreshPlaces(s.ctx) }()
	go func() { defer s.wg.Done(); s.watchHealth(s.ctx, outages) }()
	return s, nil
}

// Handler serves the gateway's HTTP endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.handleWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	return mux
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.Ready(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// Ready reports why the node should not get traffic, or nil.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := s.registry.Ping(ctx); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if !s.broker.Healthy() {
		return errors.New("pub/sub heartbeat lost")
	}
	return nil
}

// Connections returns the number of open websockets on this node.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Revoke closes, on every node, the websockets of a login session that was
// revoked. It is auth.Config.OnLogout.
func (s *Server) Revoke(ctx context.Context, login auth.Session) {
	if err := s.broker.Publish(ctx, userTopic(login.UserID), control(opLogout, login.ID, nil)); err != nil {
		s.log.Error("publish logout", "user", login.UserID, "err", err)
	}
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if !s.originAllowed(r) {
		http.Error(w, "cross-origin websocket not allowed", http.StatusForbidden)
		return
	}
	login, err := s.auth.Authenticate(r)
	if err != nil {
		if errors.Is(err, auth.ErrNoSession) {
			http.Error(w, "not logged in", http.StatusUnauthorized)
		} else {
			s.log.Warn("authenticate websocket", "err", err)
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	// Reserve this node's place first, so that a burst cannot overshoot
	// the limit; every way out below gives it back, but a session's own.
	n := s.conns.Add(1)
	served := false
	defer func() {
		if !served {
			s.conns.Add(-1)
		}
	}()
	if max := s.cfg.MaxConnections; max > 0 && n > int64(max) {
		http.Error(w, "node is full", http.StatusServiceUnavailable)
		return
	}
	connID := uuid.NewString()
	if err := s.registry.AcquirePlace(r.Context(), login.UserID, connID, s.cfg.MaxSessionsPerUser, s.cfg.PlaceTTL); err != nil {
		if errors.Is(err, pubsub.ErrTooManySessions) {
			http.Error(w, "too many open sessions", http.StatusTooManyRequests)
		} else {
			s.log.Warn("acquire session place", "err", err)
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	release := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.registry.ReleasePlace(ctx, login.UserID, connID); err != nil {
			s.log.Warn("release session place", "err", err)
		}
	}
	hw := &hijackWriter{ResponseWriter: w, timeout: s.cfg.WriteTimeout}
	conn, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		OriginPatterns: s.cfg.AllowedOrigins,
		// frameConn writes data frames itself, uncompressed.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		release()
		return // Accept wrote the HTTP error
	}
	conn.SetReadLimit(s.cfg.MaxFrameBytes)
	// Shutdown waits for the session: it is counted under mu, so that none
	// starts once Shutdown has begun to wait.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close(statusGoingAway, "server shutting down")
		release()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	served = true
	sess, end := s.open(conn, hw.conn, login, connID)
	if sess == nil {
		end()
		release()
		s.conns.Add(-1)
		s.wg.Done()
		return
	}
	// The session's reader runs in a goroutine of its own, started with a
	// small stack now that the welcome is out, and this handler returns:
	// an idle connection keeps neither net/http's goroutine nor the stack
	// that setting the session up needed.
	go func() {
		defer s.wg.Done()
		defer s.conns.Add(-1)
		defer release()
		defer end()
		sess.readLoop(s.ctx)
		sess.close(0, "") // the read side ended: the socket must close too
		<-sess.finished
	}()
}

// originAllowed implements spec 3: same origin, no Origin header, or a host
// matching CHAT_ALLOWED_ORIGINS.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range s.cfg.AllowedOrigins {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

// open sets a session up: registers it, puts it on its topics and writes
// the welcome. It returns the session, or nil if it could not be opened
// (the websocket is closed then), and end, which takes it down again and
// must be called once either way.
func (s *Server) open(conn *websocket.Conn, fc *frameConn, login auth.Session, connID string) (*Session, func()) {
	sess := &Session{
		id:       connID,
		login:    login,
		srv:      s,
		conn:     conn,
		frames:   fc,
		writing:  true, // the welcome goes first
		finished: make(chan struct{}),
		topics:   make(map[string]struct{}),
	}
	if !s.register(sess) {
		conn.Close(statusGoingAway, "server shutting down")
		return nil, func() {}
	}
	s.metrics.opened()
	// Expired sessions close with 1008 (spec 3.5).
	expiry := time.AfterFunc(time.Until(login.Expires), func() {
		sess.close(statusPolicy, "session expired")
	})
	end := func() {
		expiry.Stop()
		s.router.removeAll(sess)
		s.unregister(sess)
		s.metrics.closed(sess.closeCode)
	}

	welcome, err := s.attach(sess)
	if err != nil {
		perr := toProto(err, "")
		sess.log(slog.LevelWarn, "attach session failed", "err", err)
		if perr.code == protocol.CodeUnavailable {
			conn.Close(websocket.StatusTryAgainLater, "backend unavailable")
		} else {
			conn.Close(statusInternalError, "internal error")
		}
		return nil, end
	}
	// This goroutine holds the writer role until the welcome is written:
	// the welcome goes first, whatever the router queued meanwhile follows.
	if err := sess.writeBatch([][]byte{welcome}); err != nil {
		conn.CloseNow()
		return nil, end
	}
	sess.log(slog.LevelDebug, "session open")

	// The timer is armed only after the field is set: pingPeer reads it.
	sess.ping = time.AfterFunc(time.Hour, sess.pingPeer)
	sess.ping.Reset(s.cfg.PingInterval)
	sess.releaseWriter()
	return sess, end
}

// attach puts a new session on its topics, waiting for each subscription,
// and returns its welcome frame. The user topic comes first, so that a
// membership change made elsewhere after Memberships is read still reaches
// this session.
func (s *Server) attach(sess *Session) ([]byte, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	uid := sess.login.UserID
	// The welcome lists the channels the node's other sessions know of,
	// not the registry's: after an outage the node's resync then tells
	// every session of the same changes (resync.go).
	channels, since := s.router.book.snapshot(func() { s.router.addLocal(clusterTopic, []*Session{sess}) })
	if err := s.router.add(ctx, userTopic(uid), sess); err != nil {
		return nil, err
	}
	// Subscribed to the user topic: a node that attaches the user from
	// now on counts this one (ratelimit.go).
	if err := s.countNodes(ctx, uid); err != nil {
		return nil, err
	}
	joined, owned, err := s.registry.Memberships(ctx, uid)
	if err != nil {
		return nil, err
	}
	for _, c := range joined {
		if err := s.router.add(ctx, channelTopic(c), sess); err != nil {
			return nil, err
		}
	}
	if len(joined) > 0 {
		// A leave or destroy between reading the memberships and
		// subscribing would have found this session on no topic yet:
		// read them again and take it off what it no longer belongs to.
		// (A join meanwhile arrives as a notice on the user topic.)
		now, _, err := s.registry.Memberships(ctx, uid)
		if err != nil {
			return nil, err
		}
		for _, c := range joined {
			if !slices.Contains(now, c) {
				s.router.remove(channelTopic(c), sess)
			}
		}
		joined = now
	}
	// The user's own channels exist, even if their create notice has not
	// reached this node yet (or was lost in an outage): the book learns of
	// them now and tells the node's other sessions, so that the welcome
	// stays the book's view; the notice, when it comes, is no news.
	told := channels // sorted
	for _, c := range slices.Concat(joined, owned) {
		if _, known := slices.BinarySearch(told, c); known {
			continue
		}
		if s.router.book.learn(c, since, func() {
			s.router.forwardExcept(clusterTopic, channelEvent(c, protocol.EventCreate), sess)
		}) {
			channels = append(channels, c)
		}
	}
	slices.Sort(channels)
	channels = slices.Compact(channels)
	return mustJSON(protocol.Welcome{
		Type:       protocol.TypeWelcome,
		Identifier: uid,
		Username:   sess.login.Username,
		Channels:   channels,
		Joined:     joined,
		Owned:      owned,
	}), nil
}

func (s *Server) register(sess *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[sess] = struct{}{}
	u := s.locals[sess.login.UserID]
	if u == nil {
		burst := int(2 * s.cfg.RateLimit)
		u = &localUser{limiter: rate.NewLimiter(rate.Limit(s.cfg.RateLimit), max(burst, 1))}
		s.locals[sess.login.UserID] = u
	}
	u.refs++
	sess.user = u
	return true
}

func (s *Server) unregister(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	if u := s.locals[sess.login.UserID]; u != nil {
		if u.refs--; u.refs == 0 {
			delete(s.locals, sess.login.UserID)
		}
	}
}

// refreshPlaces keeps this node's session places alive in the registry, so
// that only the places of a dead node lapse. On the same tick it checks the
// login sessions behind the open websockets, so that one whose logout
// notice this node missed (its pub/sub connection was down) still closes.
func (s *Server) refreshPlaces(ctx context.Context) {
	t := time.NewTicker(s.cfg.PlaceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		places := make(map[string][]string)
		s.mu.Lock()
		for sess := range s.sessions {
			places[sess.login.UserID] = append(places[sess.login.UserID], sess.id)
		}
		s.mu.Unlock()
		if len(places) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.registry.RefreshPlaces(rctx, places, s.cfg.PlaceTTL); err != nil {
			s.log.Warn("refresh session places", "err", err)
		}
		cancel()
		s.checkLogins(ctx)
		if err := s.recheckShared(ctx, false); err != nil {
			s.log.Warn("count the nodes of shared users", "err", err)
		}
	}
}

// sessionsBy returns the node's sessions grouped by key.
func (s *Server) sessionsBy(key func(*Session) string) map[string][]*Session {
	by := make(map[string][]*Session)
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		k := key(sess)
		by[k] = append(by[k], sess)
	}
	return by
}

// checkLogins closes the websockets of login sessions that are no longer
// valid: 1008 if expired, 1000 if revoked.
func (s *Server) checkLogins(ctx context.Context) {
	byLogin := s.sessionsBy(func(sess *Session) string { return sess.login.ID })
	for _, sessions := range byLogin {
		login := sessions[0].login
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.auth.Check(cctx, login)
		cancel()
		if !errors.Is(err, auth.ErrNoSession) {
			continue // valid, or the store cannot tell now
		}
		code, reason := statusNormal, "logged out"
		if !time.Now().Before(login.Expires) {
			code, reason = statusPolicy, "session expired"
		}
		for _, sess := range sessions {
			sess.close(code, reason)
		}
	}
}

// Shutdown drains the node: /readyz turns 503, upgrades are refused, and
// every websocket is closed with 1001, a few at a time, until all are gone
// or ctx ends. Then it stops the node's background work and closes the
// backend. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	s.closed = true
	all := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()

	for _, sess := range all {
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
			s.mu.Lock()
			left := make([]*Session, 0, len(s.sessions))
			for sess := range s.sessions {
				left = append(left, sess)
			}
			s.mu.Unlock()
			for _, sess := range left {
				sess.frames.Conn.Close()
			}
			break wait
		case <-tick.C:
		}
	}
	s.cancel()
	s.wg.Wait()
	s.broker.Close()
	return err
}

// mustJSON encodes one of our own wire types. HTML characters stay as they
// are (clients render text, never HTML), so frames read as the spec shows.
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only our own wire types are marshalled
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}
