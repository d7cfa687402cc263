package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/pubsub"
)

// redisBackend connects the cluster backend: one client (of a single Redis
// or of a Redis Cluster) for the registry, the auth store and the OAuth
// states, and the node's pub/sub connections (opened by connect, when the
// gateway starts).
func redisBackend(ctx context.Context, cfg config, log *slog.Logger, reg prometheus.Registerer) (backend, error) {
	// A single Redis or a Redis Cluster, by the URL's scheme.
	client, err := pubsub.NewClient(cfg.RedisURL, 0)
	if err != nil {
		return backend{}, errors.New("CHAT_REDIS_URL: " + err.Error())
	}
	// go-redis reports dial failures through a process-wide logger of its
	// own; route them to ours, at debug: the broker reports outages itself.
	redis.SetLogger(redisLogger{log})
	client.AddHook(newRedisMetrics(reg))

	healthy := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "chat_pubsub_healthy",
		Help: "1 while this node receives its own pub/sub heartbeat, 0 while it does not.",
	})
	reg.MustRegister(healthy)
	connect := func(h pubsub.Handler) (pubsub.Backend, error) {
		r, err := pubsub.NewRedis(ctx, pubsub.RedisOptions{
			Client:  client,
			Prefix:  cfg.RedisPrefix,
			NodeID:  cfg.NodeID,
			Handler: h,
			Logger:  log,
			History: cfg.history(),
			OnHealth: func(ok bool) {
				if ok {
					healthy.Set(1)
				} else {
					healthy.Set(0)
				}
			},
		})
		if err != nil {
			return nil, err
		}
		healthy.Set(1)
		return r, nil
	}
	return backend{
		connect: connect,
		users:   auth.NewRedis(client, auth.RedisOptions{Prefix: cfg.RedisPrefix}),
		states:  auth.NewStateRedis(client, cfg.RedisPrefix),
		close:   func() { client.Close() },
	}, nil
}

// redisMetrics is a go-redis hook that counts commands, errors and latency.
type redisMetrics struct {
	duration *prometheus.HistogramVec // by kind: command, pipeline
	errors   prometheus.Counter
}

func newRedisMetrics(reg prometheus.Registerer) *redisMetrics {
	m := &redisMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chat_redis_command_duration_seconds",
			Help:    "Latency of Redis commands and pipelines sent by this node.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12),
		}, []string{"kind"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_redis_command_errors_total",
			Help: "Redis commands and pipelines that failed (a missing key is not a failure).",
		}),
	}
	reg.MustRegister(m.duration, m.errors)
	return m
}

func (m *redisMetrics) DialHook(next redis.DialHook) redis.DialHook { return next }

func (m *redisMetrics) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		m.observe("command", start, err)
		return err
	}
}

func (m *redisMetrics) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		m.observe("pipeline", start, err)
		return err
	}
}

func (m *redisMetrics) observe(kind string, start time.Time, err error) {
	m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, context.Canceled) && !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		m.errors.Inc()
	}
}

// redisLogger adapts slog to go-redis's internal logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug("redis: " + fmt.Sprintf(format, v...))
}
