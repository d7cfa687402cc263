package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/gateway"
)

// The node subscribes to the cluster topic once, for its whole life: when
// its last session goes and a new one comes, the newcomer still receives
// create events. (The router used to unsubscribe the cluster topic with its
// last local session, after another session's close had made it count the
// topic as its own; the web client's browser tests found it.)
func TestCreateEventsAfterTheLastSessionLeft(t *testing.T) {
	b := memoryBackend()
	log := testLogger(t)
	reg := prometheus.NewRegistry()
	n := &node{t: t}
	n.auth = auth.New(auth.Config{
		DevLogin: true,
		OnLogout: func(ctx context.Context, s auth.Session) { n.gw.Revoke(ctx, s) },
	}, b.store, log)
	gw, err := gateway.New(context.Background(), gateway.Config{}, gateway.Deps{Connect: b.connect, Auth: n.auth, Users: n.auth, Metrics: reg}, log)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	n.gw = gw
	mux := http.NewServeMux()
	mux.Handle("/auth/", n.auth.Handler())
	mux.Handle("/", gw.Handler())
	n.http = httptest.NewServer(mux)
	t.Cleanup(n.stop)

	subscriptions := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "chat_pubsub_subscriptions" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no chat_pubsub_subscriptions")
		return 0
	}

	alice, bob := n.user("alice"), n.user("bob") // subscribed: u:alice, u:bob
	alice.conn.Close(websocket.StatusNormalClosure, "bye")
	// The background reconcile of alice's topics has run: u:alice is gone.
	eventually(t, 10*time.Second, "u:alice unsubscribed", func() bool { return subscriptions() <= 1 })
	bob.conn.Close(websocket.StatusNormalClosure, "bye")
	eventually(t, 10*time.Second, "u:bob unsubscribed", func() bool { return subscriptions() == 0 })

	carol := n.user("carol")
	carol.do("create", "#after")
	carol.expectJSON(`{"type":"event","emitter":"channel","identifier":"#after","event":"create"}`)
}
