package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
	"github.com/wirechat/chat/pubsub/pubsubtest"
)

// Fault tests: each starts a redis-server of its own and breaks it. The
// bounds on waits are safety nets, generous beside the heartbeat timeout
// (3 s); the measured times are logged.
const faultBound = 15 * time.Second

// healthLog records the broker's health changes as OnHealth reports them.
type healthLog struct{ ch chan bool }

func newHealthLog() *healthLog { return &healthLog{ch: make(chan bool, 1024)} }

func (h *healthLog) on(ok bool) {
	select {
	case h.ch <- ok:
	default:
	}
}

// publishUntilDelivered publishes on topic from pub until rec has received
// one of the payloads: delivery works again. It returns how long it took.
func publishUntilDelivered(t *testing.T, pub pubsub.Broker, rec *pubsubtest.Recorder, topic string) time.Duration {
	t.Helper()
	start := time.Now()
	probe := fmt.Sprintf("probe-%d-", start.UnixNano())
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		payload := fmt.Sprintf("%s%d", probe, i)
		err := pub.Publish(ctx, topic, []byte(payload))
		cancel()
		if err == nil {
			deadline := time.Now().Add(200 * time.Millisecond)
			for time.Now().Before(deadline) {
				for _, p := range rec.Topic(topic) {
					if strings.HasPrefix(p, probe) {
						return time.Since(start)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		if time.Since(start) > faultBound {
			t.Fatalf("no delivery on %q for %v (last publish: %v)", topic, faultBound, err)
		}
	}
}

// checkDelivery publishes n payloads on topic and waits for all of them.
func checkDelivery(t *testing.T, pub pubsub.Broker, rec *pubsubtest.Recorder, topic string, n int) {
	t.Helper()
	ctx := t.Context()
	before := len(rec.Topic(topic))
	for i := range n {
		if err := pub.Publish(ctx, topic, fmt.Appendf(nil, "check-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	rec.WaitTopic(t, topic, before+n)
}

func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Dir: t.TempDir()})
	const prefix = "restart:"
	rec, health := pubsubtest.NewRecorder(), newHealthLog()
	a := newRedis(t, srv.URL, prefix, rec.Handle, func(o *pubsub.RedisOptions) { o.OnHealth = health.on })
	b := newRedis(t, srv.URL, prefix, nil, nil)
	ctx := t.Context()
	if err := a.Subscribe(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateChannel(ctx, "#kept", "owner", pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitHealthy(t, a, true, faultBound)
	checkDelivery(t, b, rec, "t", 10)

	srv.Kill(t)
	took := pubsubtest.WaitHealthy(t, a, false, faultBound)
	t.Logf("unhealthy %v after the kill", took)
	// While Redis is down, calls fail with ErrUnavailable.
	for name, err := range map[string]error{
		"Publish":       b.Publish(ctx, "t", []byte("lost")),
		"Subscribe":     a.Subscribe(ctx, "during"),
		"Ping":          a.Ping(ctx),
		"CreateChannel": a.CreateChannel(ctx, "#new", "owner", pubsub.Notice{}),
	} {
		if !errors.Is(err, pubsub.ErrUnavailable) {
			t.Errorf("%s while Redis is down: %v, want ErrUnavailable", name, err)
		}
	}

	srv.Restart(t)
	restarted := time.Now()
	pubsubtest.WaitHealthy(t, a, true, faultBound)
	t.Logf("healthy %v after the restart", time.Since(restarted))
	// The subscription made before the outage is back, without any call.
	publishUntilDelivered(t, b, rec, "t")
	t.Logf("delivery on the old subscription %v after the restart", time.Since(restarted))
	checkDelivery(t, b, rec, "t", 10)
	// A Subscribe that failed left nothing behind.
	if n, err := a.Subscribers(ctx, "during"); err != nil || n[0] != 0 {
		t.Fatalf("Subscribers of a topic whose Subscribe failed: %d, %v; want 0", n, err)
	}
	// New subscriptions work, and the topic that failed to subscribe
	// during the outage can be subscribed now.
	for _, topic := range []string{"during", "after"} {
		if err := a.Subscribe(ctx, topic); err != nil {
			t.Fatal(err)
		}
		checkDelivery(t, b, rec, topic, 1)
	}
	// The state survived the restart (the server persists to disk).
	if err := a.CreateChannel(ctx, "#kept", "other", pubsub.Notice{}); !errors.Is(err, pubsub.ErrExists) {
		t.Fatalf("channel created before the restart: %v, want ErrExists", err)
	}
	if got := drain(health.ch); !strings.Contains(got, "false") || !strings.HasSuffix(got, "true") {
		t.Fatalf("OnHealth calls %s, want false then true at last", got)
	}
}

func TestRedisClientKillPubSub(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const prefix = "kill:"
	rec := pubsubtest.NewRecorder()
	a := newRedis(t, srv.URL, prefix, rec.Handle, nil)
	b := newRedis(t, srv.URL, prefix, nil, nil)
	ctx := t.Context()
	for _, topic := range []string{"t", "u"} {
		if err := a.Subscribe(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	checkDelivery(t, b, rec, "t", 10)

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	for round := range 3 {
		n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n < 2 { // a's and b's pub/sub connections
			t.Fatalf("killed %d pubsub connections, want at least 2", n)
		}
		took := publishUntilDelivered(t, b, rec, "t")
		t.Logf("round %d: delivery again %v after CLIENT KILL", round, took)
		checkDelivery(t, b, rec, "t", 10)
		checkDelivery(t, b, rec, "u", 10)
		pubsubtest.WaitHealthy(t, a, true, faultBound)
	}
}

// A silent network: the node's connections to Redis stay open but carry
// nothing. Only the heartbeat can tell.
func TestRedisBlackhole(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	proxy := redistest.Proxy(t, srv.Addr)
	const prefix = "blackhole:"
	rec := pubsubtest.NewRecorder()
	a := newRedis(t, "redis://"+proxy.Listen+"/0", prefix, rec.Handle, nil)
	b := newRedis(t, srv.URL, prefix, nil, nil)
	ctx := t.Context()
	if err := a.Subscribe(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitHealthy(t, a, true, faultBound)
	checkDelivery(t, b, rec, "t", 10)

	for _, stream := range []string{"upstream", "downstream"} {
		_, err := proxy.Toxics.AddToxicJson(strings.NewReader(
			`{"name":"hole-` + stream + `","type":"timeout","stream":"` + stream + `","attributes":{"timeout":0}}`))
		if err != nil {
			t.Fatal(err)
		}
	}
	holed := time.Now()
	took := pubsubtest.WaitHealthy(t, a, false, faultBound)
	t.Logf("unhealthy %v after the blackhole", took)
	start := time.Now()
	if err := a.Publish(ctx, "t", []byte("x")); !errors.Is(err, pubsub.ErrUnavailable) {
		t.Errorf("Publish into the blackhole: %v, want ErrUnavailable", err)
	}
	if err := a.Subscribe(ctx, "v"); !errors.Is(err, pubsub.ErrUnavailable) {
		t.Errorf("Subscribe into the blackhole: %v, want ErrUnavailable", err)
	}
	t.Logf("Publish and Subscribe gave up after %v", time.Since(start))
	// Let the broker rebuild its connection at least once into the hole.
	for time.Since(holed) < 5*time.Second {
		time.Sleep(100 * time.Millisecond)
	}

	for _, stream := range []string{"upstream", "downstream"} {
		if err := proxy.Toxics.RemoveToxic(context.Background(), "hole-"+stream); err != nil {
			t.Fatal(err)
		}
	}
	healed := time.Now()
	pubsubtest.WaitHealthy(t, a, true, faultBound)
	t.Logf("healthy %v after the blackhole healed", time.Since(healed))
	publishUntilDelivered(t, b, rec, "t")
	t.Logf("delivery again %v after it healed", time.Since(healed))
	checkDelivery(t, b, rec, "t", 10)
	if err := a.Subscribe(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	checkDelivery(t, b, rec, "v", 10)
}

func drain(ch chan bool) string {
	var out []string
	for {
		select {
		case v := <-ch:
			out = append(out, fmt.Sprint(v))
		default:
			return strings.Join(out, " ")
		}
	}
}

// TestRedisHealthyAtOnceAfterReconnect: when the pub/sub path works
// again, the node proves it at once with a heartbeat of its own instead
// of waiting for the next tick, so that Healthy (and /readyz) comes back
// with delivery (spec 9: within 1 s). Heartbeats are 5 s apart here: the
// tick alone would take up to 5 s.
func TestRedisHealthyAtOnceAfterReconnect(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	health := newHealthLog()
	a := newRedis(t, srv.URL, "beat:", nil, func(o *pubsub.RedisOptions) {
		o.HeartbeatInterval = 5 * time.Second
		o.HeartbeatTimeout = 15 * time.Second
		o.OnHealth = health.on
	})
	pubsubtest.WaitHealthy(t, a, true, faultBound)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	for round := range 3 {
		time.Sleep(time.Second) // away from the tick that followed the start
		if _, err := admin.ClientKillByFilter(t.Context(), "TYPE", "pubsub").Result(); err != nil {
			t.Fatal(err)
		}
		pubsubtest.WaitHealthy(t, a, false, faultBound)
		took := pubsubtest.WaitHealthy(t, a, true, faultBound)
		if took > time.Second {
			t.Fatalf("round %d: healthy again %v after the pub/sub connection was killed, want within 1 s", round, took)
		}
		t.Logf("round %d: healthy again after %v", round, took)
	}
}
