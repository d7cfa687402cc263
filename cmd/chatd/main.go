// Command chatd is a chat gateway node. With CHAT_REDIS_URL unset it is the
// whole chat in one process; with it set, any number of chatd nodes that
// share the Redis are one chat. README.md lists its settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
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
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(os.Getenv))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then drains and returns.
func run(ctx context.Context, getenv func(string) string, logOut *os.File) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, logOut).With("node", cfg.NodeID)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	store, states, connect, closeBackend, err := backend(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer closeBackend()

	providers, err := socialLogin(ctx, cfg)
	if err != nil {
		return err
	}
	var gw *gateway.Server
	authn := auth.New(auth.Config{
		DevLogin:         cfg.DevLogin,
		SessionTTL:       cfg.SessionTTL,
		SecureCookie:     cfg.PublicURL.Scheme == "https",
		Providers:        providers,
		States:           states,
		AllowedOrigins:   cfg.AllowedOrigins,
		LoginRateLimit:   cfg.LoginRateLimit,
		MaxLoginsPerUser: cfg.MaxLogins,
		IdentityKey:      cfg.IdentityKey,
		OnLogout:         func(ctx context.Context, s auth.Session) { gw.Revoke(ctx, s) },
	}, store, log)
	gw, err = gateway.New(ctx, gateway.Config{
		NodeID:             cfg.NodeID,
		MaxFrameBytes:      int64(cfg.MaxFrameBytes),
		MaxMessageBytes:    cfg.MaxMessageBytes,
		MaxSessionsPerUser: cfg.MaxSessions,
		MaxConnections:     cfg.MaxConnections,
		RateLimit:          cfg.RateLimit,
		SendQueue:          cfg.SendQueue,
		PingInterval:       cfg.PingInterval,
		WriteTimeout:       cfg.WriteTimeout,
		WriteDelay:         cfg.WriteDelay,
		AllowedOrigins:     cfg.AllowedOrigins,
	}, gateway.Deps{Connect: connect, Auth: authn, Users: authn, Metrics: reg}, log)
	if err != nil {
		return err
	}
	if cfg.DevLogin {
		log.Warn("dev login is on: anyone can log in as anyone (CHAT_DEV_LOGIN)")
	}

	mux := http.NewServeMux()
	mux.Handle("/auth/", authn.Handler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	gwh := gw.Handler()
	mux.Handle("GET /ws", gwh)
	mux.Handle("GET /healthz", gwh)
	mux.Handle("GET /readyz", gwh)
	mux.Handle("/", web.Handler())

	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			gw.Shutdown(context.Background())
			return err
		}
		defer stopDebug()
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		gw.Shutdown(context.Background())
		return fmt.Errorf("CHAT_ADDR: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("chatd listening", "addr", ln.Addr().String(), "cluster", cfg.RedisURL != "")

	select {
	case err := <-serveErr:
		gw.Shutdown(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Drain: readyz turns 503 and new upgrades are refused at once; open
	// websockets close with 1001; then the HTTP server and the backend.
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := gw.Shutdown(sctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http shutdown", "err", err)
	}
	srv.Close()
	log.Info("stopped")
	return nil
}

// connectFunc opens a node's broker and registry, delivering to a handler.
type connectFunc = func(pubsub.Handler) (pubsub.Broker, pubsub.Registry, error)

// backend opens the configured backend: Redis when CHAT_REDIS_URL is set,
// else process memory.
func backend(ctx context.Context, cfg config, log *slog.Logger, reg prometheus.Registerer) (auth.Store, auth.StateStore, connectFunc, func(), error) {
	if cfg.RedisURL != "" {
		return redisBackend(ctx, cfg, log, reg)
	}
	connect := func(h pubsub.Handler) (pubsub.Broker, pubsub.Registry, error) {
		m := pubsub.NewMemory(h)
		return m, m, nil
	}
	return auth.NewMemory(), nil, connect, func() {}, nil
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

func newLogger(cfg config, out *os.File) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // validated by loadConfig
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// healthcheck asks the local server's /healthz, for container health checks
// in images without a shell. It returns the exit status.
func healthcheck(getenv func(string) string) int {
	addr := getenv("CHAT_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck: CHAT_ADDR:", err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(strings.Trim(host, "[]"), port) + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: status", resp.Status)
		return 1
	}
	return 0
}

// serveDebug serves Go's profiler (net/http/pprof) on its own listener,
// meant for a loopback or cluster-internal address only.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("CHAT_DEBUG_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Warn("profiler listening: keep CHAT_DEBUG_ADDR off public networks", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
