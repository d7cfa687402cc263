package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wirechat/chat/internal/origin"
	"github.com/wirechat/chat/protocol"
)

// CookieName is the session cookie.
const CookieName = "chat_session"

// DevProvider is the provider name of dev login.
const DevProvider = "dev"

// DefaultLoginRateLimit is the login limit per client address and minute
// that chatd runs with unless told otherwise (CHAT_LOGIN_RATE_LIMIT).
// Config's zero LoginRateLimit is no limit.
const DefaultLoginRateLimit = 30

// DefaultMaxLoginsPerUser is Config.MaxLoginsPerUser's default: every
// login stores a session for CHAT_SESSION_TTL, and a user with a phone, a
// laptop and a few browsers logs in from a handful of places.
const DefaultMaxLoginsPerUser = 20

// Config configures a Service. A zero field means its default.
type Config struct {
	// DevLogin enables POST /auth/dev/login: anyone may log in as any
	// username without a password. For local use, demos and tests only.
	DevLogin bool

	// SessionTTL is how long a session lasts. If zero, 720h.
	SessionTTL time.Duration

	// SecureCookie marks the session cookie Secure (CHAT_PUBLIC_URL is https).
	SecureCookie bool

	// Providers are the configured social login providers, in the order
	// in which /auth/providers lists them.
	Providers []Provider

	// States keeps pending social logins between the redirect to the
	// provider and the callback. If nil, a StateMemory, which serves one
	// node only: in a cluster a login may come back to another node, so
	// give every node the same StateRedis.
	States StateStore

	// IdentityKey is the deployment's secret (CHAT_IDENTITY_KEY) under
	// which user identifiers are derived from accounts (identity.go):
	// keep it, and never change it. If empty, identifiers are derived
	// without a secret: as stable, but the same in every deployment
	// without a key, and computable from an account's provider id.
	IdentityKey string

	// AllowedOrigins are the host patterns (CHAT_ALLOWED_ORIGINS) whose
	// pages may POST to dev login and logout from another origin, by the
	// websocket upgrade's rule (internal/origin). If empty, only
	// same-origin requests and requests without an Origin header.
	AllowedOrigins []string

	// LoginRateLimit is how many logins one client address may make per
	// minute, all at once or spread out; past it a login is refused with
	// 429 (limit.go says what counts and which address). If zero, logins
	// are not limited (chatd's default is DefaultLoginRateLimit).
	LoginRateLimit int

	// MaxLoginsPerUser is how many login sessions one user may hold at
	// once; a login past it revokes the user's oldest sessions, and
	// OnLogout closes their websockets. If zero, DefaultMaxLoginsPerUser.
	MaxLoginsPerUser int

	// OnLogout, if set, is called after a session was revoked, so that its
	// open websockets can be closed wherever they are.
	OnLogout func(ctx context.Context, s Session)
}

// Service issues and checks sessions and serves /auth/*.
type Service struct {
	cfg    Config // immutable after New
	store  Store
	logins *loginLimiter // nil: logins are not limited
	ids    uuid.UUID     // the namespace of user identifiers
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Service on store.
func New(cfg Config, store Store, log *slog.Logger) *Service {
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 720 * time.Hour
	}
	if cfg.States == nil {
		cfg.States = NewStateMemory(0)
	}
	if cfg.MaxLoginsPerUser <= 0 {
		cfg.MaxLoginsPerUser = DefaultMaxLoginsPerUser
	}
	s := &Service{cfg: cfg, store: store, ids: identityNamespace(cfg.IdentityKey), log: log, now: time.Now}
	if cfg.IdentityKey == "" && len(cfg.Providers) > 0 {
		log.Warn("CHAT_IDENTITY_KEY is not set: user identifiers are derived without a secret, the same as in every deployment without one (docs/login.md)")
	}
	if cfg.LoginRateLimit > 0 {
		s.logins = newLoginLimiter(cfg.LoginRateLimit)
	}
	return s
}

// Authenticate returns the session of the request's token, taken from the
// Authorization: Bearer header or else the session cookie. Tokens are never
// taken from the URL. ErrNoSession if there is none or it is not valid.
func (s *Service) Authenticate(r *http.Request) (Session, error) {
	token := bearer(r)
	if token == "" {
		if c, err := r.Cookie(CookieName); err == nil {
			token = c.Value
		}
	}
	if token == "" {
		return Session{}, ErrNoSession
	}
	key := hashToken(token)
	sess, err := s.store.Session(r.Context(), key)
	if err != nil {
		return Session{}, err
	}
	sess.key = key
	return sess, nil
}

// Revoked reports, for each session that Authenticate returned, whether
// it is no longer valid: revoked (on any node) or expired. The gateway
// uses it to close websockets whose logout notice it missed, for every
// login it serves at once, in a few round trips to the store.
func (s *Service) Revoked(ctx context.Context, sessions []Session) ([]bool, error) {
	keys := make([]string, len(sessions))
	for i, sess := range sessions {
		keys[i] = sess.key
	}
	live, err := s.store.LiveSessions(ctx, keys)
	if err != nil {
		return nil, err
	}
	revoked := make([]bool, len(sessions))
	for i, sess := range sessions {
		revoked[i] = sess.key == "" || !live[i]
	}
	return revoked, nil
}

// UserByName returns the user with that canonical username, or ErrNoUser.
func (s *Service) UserByName(ctx context.Context, username string) (User, error) {
	return s.store.UserByName(ctx, username)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}

// startSession creates a fresh session for u (a new token at every login:
// no fixation), sets the cookie and returns the token.
func (s *Service) startSession(w http.ResponseWriter, r *http.Request, u User, provider string) (string, error) {
	token := newToken()
	sess := Session{
		ID:       uuid.NewString(),
		UserID:   u.ID,
		Username: u.Username,
		Provider: provider,
		Expires:  s.now().Add(s.cfg.SessionTTL),
	}
	revoked, err := s.store.CreateSession(r.Context(), hashToken(token), sess, s.cfg.MaxLoginsPerUser)
	if err != nil {
		s.closeRevoked(r.Context(), revoked)
		return "", fmt.Errorf("create session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    token,
		Path:     "/",
		Expires:  sess.Expires,
		MaxAge:   int(s.cfg.SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   s.cfg.SecureCookie,
		SameSite: http.SameSiteLaxMode,
	})
	s.log.Info("login", "user", u.ID, "username", u.Username, "provider", provider, "session", sess.ID)
	s.closeRevoked(r.Context(), revoked)
	return token, nil
}

// closeRevoked closes the websockets of the sessions that a login revoked
// over the user's limit (on Redis Cluster, also a login that failed after
// revoking them).
func (s *Service) closeRevoked(ctx context.Context, revoked []Session) {
	for _, old := range revoked {
		s.log.Info("session revoked: the user's oldest over the login limit", "user", old.UserID, "session", old.ID)
		if s.cfg.OnLogout != nil {
			s.cfg.OnLogout(ctx, old)
		}
	}
}

// Handler serves the /auth/ endpoints.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /auth/providers", s.handleProviders)
	mux.HandleFunc("POST /auth/dev/login", s.handleDevLogin)
	mux.HandleFunc("GET /auth/me", s.handleMe)
	mux.HandleFunc("POST /auth/logout", s.handleLogout)
	mux.HandleFunc("GET /auth/{provider}/login", s.handleLogin)
	mux.HandleFunc("GET /auth/{provider}/callback", s.handleCallback)
	return mux
}

type providerInfo struct {
	Name     string `json:"name"`
	LoginURL string `json:"login_url"`
}

func (s *Service) handleProviders(w http.ResponseWriter, r *http.Request) {
	list := []providerInfo{}
	for _, p := range s.cfg.Providers {
		list = append(list, providerInfo{Name: p.Name(), LoginURL: "/auth/" + p.Name() + "/login"})
	}
	if s.cfg.DevLogin {
		list = append(list, providerInfo{Name: DevProvider, LoginURL: "/auth/dev/login"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": list})
}

func (s *Service) handleDevLogin(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.DevLogin {
		http.NotFound(w, r)
		return
	}
	if !s.sameOrigin(w, r) {
		return
	}
	// Only JSON: an HTML form (or a no-cors fetch) on another site can send
	// text/plain or a form body without asking, but not application/json.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	if s.loginLimited(w, r, DevProvider) {
		return
	}
	var body struct {
		Username *string `json:"username"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || body.Username == nil {
		http.Error(w, `body must be {"username":"…"}`, http.StatusBadRequest)
		return
	}
	name, ok := protocol.NormalizeUsername(*body.Username)
	if !ok {
		http.Error(w, "username: 1 to 39 characters of a-z 0-9 _ -", http.StatusBadRequest)
		return
	}
	u, err := s.store.UserForName(r.Context(), name, deriveUserID(s.ids, DevProvider, name))
	if err != nil {
		s.fail(w, "dev login", err)
		return
	}
	token, err := s.startSession(w, r, u, DevProvider)
	if err != nil {
		s.fail(w, "dev login", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token, "identifier": u.ID, "username": u.Username})
}

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) {
	sess, err := s.Authenticate(r)
	if err != nil {
		s.unauthorized(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"identifier": sess.UserID, "username": sess.Username, "provider": sess.Provider})
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(w, r) {
		return
	}
	token := bearer(r)
	if token == "" {
		if c, err := r.Cookie(CookieName); err == nil {
			token = c.Value
		}
	}
	if token == "" {
		s.unauthorized(w, ErrNoSession)
		return
	}
	sess, err := s.store.DeleteSession(r.Context(), hashToken(token))
	if err != nil {
		s.unauthorized(w, err)
		return
	}
	clearCookie(w, CookieName, s.cfg.SecureCookie)
	s.log.Info("logout", "user", sess.UserID, "session", sess.ID)
	if s.cfg.OnLogout != nil {
		s.cfg.OnLogout(r.Context(), sess)
	}
	w.WriteHeader(http.StatusNoContent)
}

// loginLimited counts a login attempt against the client's address
// (limit.go). Past the limit it answers 429, for dev login in plain text
// and for a provider with a login page, and reports true.
func (s *Service) loginLimited(w http.ResponseWriter, r *http.Request, provider string) bool {
	if s.logins == nil {
		return false
	}
	addr := clientAddr(r)
	wait, first := s.logins.allow(addr, s.now())
	if wait == 0 {
		return false
	}
	if first { // once per run of refusals: a flood must not flood the log
		s.log.Warn("logins refused: over the limit of the address", "addr", addr, "provider", provider)
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	if provider == DevProvider {
		http.Error(w, "too many logins from your address, try again later", http.StatusTooManyRequests)
	} else {
		s.loginPage(w, http.StatusTooManyRequests, provider, "Too many logins from your address. Please try again in a minute.")
	}
	return true
}

// sameOrigin refuses, with 403, a request that another site's page made
// (spec section 9): the Origin rule of the websocket upgrade. It reports
// whether the request may go on.
func (s *Service) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if origin.Allowed(r, s.cfg.AllowedOrigins) {
		return true
	}
	s.log.Warn("cross-origin request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
	http.Error(w, "cross-origin request not allowed", http.StatusForbidden)
	return false
}

func (s *Service) unauthorized(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNoSession) {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	s.fail(w, "authenticate", err)
}

// fail answers a failure of our own or of the store.
func (s *Service) fail(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, ErrUnavailable) {
		s.log.Warn(what+" failed", "err", err)
		http.Error(w, "service unavailable, try again", http.StatusServiceUnavailable)
		return
	}
	s.log.Error(what+" failed", "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func clearCookie(w http.ResponseWriter, name string, secure bool) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
