// Command chatd is a chat gateway node. With CHAT_REDIS_URL unset it is the
// whole chat in one process; with it set, any number of chatd nodes that
// share the Redis are one chat. README.md lists its settings.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/pubsub"
	"github.com/wirechat/chat/web"
)

func main() {
	os.Exit(command(os.Args[1:], os.Getenv, os.Environ, os.Stdout, os.Stderr))
}

// run serves until ctx ends, then drains and returns. Logs go to logOut;
// environ lists the whole environment, for the unknown-variable warnings.
func run(ctx context.Context, getenv func(string) string, environ func() []string, logOut io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, logOut).With("node", cfg.NodeID)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	be, err := openBackend(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer be.close()

	providers, err := socialLogin(ctx, cfg)
	if err != nil {
		return err
	}
	startupWarnings(log, cfg, len(providers), environ())
	var gw *gateway.Server
	authn := auth.New(auth.Config{
		DevLogin:         cfg.DevLogin,
		SessionTTL:       cfg.SessionTTL,
		SecureCookie:     cfg.PublicURL.Scheme == "https",
		Providers:        providers,
		States:           be.states,
		AllowedOrigins:   cfg.AllowedOrigins,
		LoginRateLimit:   cfg.LoginRateLimit,
		MaxLoginsPerUser: cfg.MaxLogins,
		IdentityKey:      cfg.IdentityKey,
		OnLogout:         func(ctx context.Context, s auth.Session) { gw.Revoke(ctx, s) },
	}, be.users, log)
	gw, err = gateway.New(ctx, gateway.Config{
		NodeID:             cfg.NodeID,
		MaxFrameBytes:      int64(cfg.MaxFrameBytes),
		MaxMessageBytes:    cfg.MaxMessageBytes,
		MaxSessionsPerUser: cfg.MaxSessions,
		MaxConnections:     cfg.MaxConnections,
		PresenceMaxMembers: cfg.PresenceMax,
		RateLimit:          cfg.RateLimit,
		SendQueue:          cfg.SendQueue,
		PingInterval:       cfg.PingInterval,
		WriteTimeout:       cfg.WriteTimeout,
		WriteDelay:         cfg.WriteDelay,
		AllowedOrigins:     cfg.AllowedOrigins,
	}, gateway.Deps{Connect: be.connect, Auth: authn, Users: authn, Metrics: reg}, log)
	if err != nil {
		// The gateway reads Redis before it serves: a Redis lost during
		// those reads ends the start as one unreachable at the first.
		return fmt.Errorf("start the gateway: %w", err)
	}

	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.Handle("/auth/", authn.Handler())
	gwh := gw.Handler()
	mux.Handle("GET /ws", gwh)
	mux.Handle("GET /healthz", gwh)
	mux.Handle("GET /readyz", gwh)
	mux.Handle("/", web.Handler())

	// The servers beside the chat: each on its own address, meant for
	// loopback or a cluster-internal network only.
	var sidecars []*httpServer
	defer func() {
		for _, s := range sidecars {
			s.srv.Close() // no-op after shutdown; cuts them on an early return
		}
	}()
	if cfg.MetricsAddr == "" {
		mux.Handle("/metrics", metrics)
	} else {
		// Only there: the chat's own address may face the internet.
		mux.Handle("/metrics", http.NotFoundHandler())
		m := http.NewServeMux()
		m.Handle("GET /metrics", metrics)
		s, err := listen("CHAT_METRICS_ADDR", cfg.MetricsAddr, m)
		if err != nil {
			gw.Shutdown(context.Background())
			return err
		}
		sidecars = append(sidecars, s)
		log.Info("metrics listening", "addr", s.addr())
	}
	if cfg.DebugAddr != "" {
		s, err := listen("CHAT_DEBUG_ADDR", cfg.DebugAddr, profiler())
		if err != nil {
			gw.Shutdown(context.Background())
			return err
		}
		sidecars = append(sidecars, s)
		log.Warn("profiler listening: keep CHAT_DEBUG_ADDR off public networks", "addr", s.addr())
	}

	srv, err := listen("CHAT_ADDR", cfg.Addr, mux)
	if err != nil {
		gw.Shutdown(context.Background())
		return err
	}
	startLog := []any{"addr", srv.addr(), "cluster", cfg.RedisURL != ""}
	if cfg.LoopbackOnly {
		startLog = append(startLog, "note", "dev login is on: loopback only; set CHAT_ADDR (e.g. :8080) to serve other hosts")
	}
	log.Info("chatd listening", startLog...)

	select {
	case <-srv.done:
		gw.Shutdown(context.Background())
		return fmt.Errorf("serve: %w", srv.err)
	case <-ctx.Done():
	}

	// Drain: readyz turns 503 and new upgrades are refused at once, while
	// the listener stays open so that load balancers see the 503s; open
	// websockets close with 1001; then the HTTP servers and the backend.
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := gw.Shutdown(sctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	for _, s := range append([]*httpServer{srv}, sidecars...) {
		if err := s.shutdown(sctx); err != nil {
			log.Warn("http shutdown: connections cut", "addr", s.addr(), "err", err)
		}
	}
	log.Info("stopped")
	return nil
}

// startupWarnings says what in the configuration is probably a mistake:
// CHAT_ variables that chatd does not read (a misspelt name is otherwise
// ignored without a word), and a chat nobody can log in to.
func startupWarnings(log *slog.Logger, cfg config, providers int, environ []string) {
	for _, u := range unknownSettings(environ) {
		if u.near != "" {
			log.Warn("unknown setting ignored: is it a misspelling?", "var", u.name, "did_you_mean", u.near)
		} else {
			log.Warn("unknown setting ignored (chatd help lists the settings)", "var", u.name)
		}
	}
	if cfg.DevLogin {
		log.Warn("dev login is on: anyone can log in as anyone (CHAT_DEV_LOGIN)")
	} else if providers == 0 {
		log.Warn("no login method is configured: nobody can log in. Set a provider's client id and secret (docs/login.md), or CHAT_DEV_LOGIN=true on your own machine")
	}
}

// history is the retention of stored messages.
func (c config) history() pubsub.HistoryOptions {
	return pubsub.HistoryOptions{Limit: c.HistoryLimit, TTL: c.HistoryTTL}
}

// backend is what a node shares with the rest of the chat: the gateway's
// backend (opened by connect when the gateway starts) and the auth stores.
type backend struct {
	connect func(pubsub.Handler) (pubsub.Backend, error)
	users   auth.Store
	states  auth.StateStore // nil: auth's per-node default
	close   func()
}

// openBackend opens the configured backend: Redis when CHAT_REDIS_URL is
// set, else process memory.
func openBackend(ctx context.Context, cfg config, log *slog.Logger, reg prometheus.Registerer) (backend, error) {
	if cfg.RedisURL != "" {
		return redisBackend(ctx, cfg, log, reg)
	}
	return backend{
		connect: func(h pubsub.Handler) (pubsub.Backend, error) {
			return pubsub.NewMemory(h, cfg.history()), nil
		},
		users: auth.NewMemory(),
		close: func() {},
	}, nil
}

// socialLogin builds the configured OAuth2 / OpenID Connect providers. OIDC
// discovery happens here: an issuer that cannot be reached stops the start.
func socialLogin(ctx context.Context, cfg config) ([]auth.Provider, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	providers, err := auth.ProvidersFromConfig(dctx, auth.ProvidersConfig{
		PublicURL:          cfg.PublicURL.String(),
		GitHubClientID:     cfg.GitHubClientID,
		GitHubClientSecret: cfg.GitHubClientSecret,
		GitHubURL:          cfg.GitHubURL,
		GitHubAPIURL:       cfg.GitHubAPIURL,
		GoogleClientID:     cfg.GoogleClientID,
		GoogleClientSecret: cfg.GoogleClientSecret,
		OIDCIssuer:         cfg.OIDCIssuer,
		OIDCClientID:       cfg.OIDCClientID,
		OIDCClientSecret:   cfg.OIDCClientSecret,
		OIDCName:           cfg.OIDCName,
	}, &http.Client{Timeout: 15 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("social login: %w", err)
	}
	return providers, nil
}

func newLogger(cfg config, out io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // validated by loadConfig
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// profiler serves Go's profiler (net/http/pprof), for CHAT_DEBUG_ADDR.
func profiler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
