package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wirechat/chat/auth"
	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
)

// TestMain fails the package if a test leaves a goroutine of the gateway
// running.
func TestMain(m *testing.M) {
	code := redistest.Main(m) // m.Run, then stop the shared redis-server
	if code == 0 {
		if leak := waitNoLeak(5 * time.Second); leak != "" {
			os.Stderr.WriteString("goroutine leak:\n" + leak)
			code = 1
		}
	}
	os.Exit(code)
}

func waitNoLeak(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaks []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "wirechat/chat/gateway.") && !strings.Contains(g, "TestMain") && !strings.Contains(g, "waitNoLeak") {
				leaks = append(leaks, g)
			}
		}
		if len(leaks) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// node is one gateway node with its auth service, served over a real
// listener.
type node struct {
	t    *testing.T
	gw   *gateway.Server
	auth *auth.Service
	http *httptest.Server
}

// backend opens a node's backend and its auth store; nodes given the same
// backend are one chat.
type backend struct {
	connect func(pubsub.Handler) (pubsub.Backend, error)
	store   auth.Store
}

func memoryBackend() backend {
	return backend{
		connect: func(h pubsub.Handler) (pubsub.Backend, error) {
			return pubsub.NewMemory(h, pubsub.HistoryOptions{}), nil
		},
		store: auth.NewMemory(),
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts a node on b with cfg; it is shut down when the test ends.
func startNode(t *testing.T, b backend, cfg gateway.Config) *node {
	t.Helper()
	return startNodeWith(t, b, cfg, nodeOptions{})
}

// startNodeWithMetrics is startNode with the gateway's metrics registered
// on reg.
func startNodeWithMetrics(t *testing.T, b backend, cfg gateway.Config, reg prometheus.Registerer) *node {
	t.Helper()
	return startNodeWith(t, b, cfg, nodeOptions{metrics: reg})
}

// nodeOptions are the less common settings of a test node.
type nodeOptions struct {
	metrics    prometheus.Registerer // if set, the gateway's metrics go here
	sessionTTL time.Duration         // login session lifetime; 0: auth's default
	noNotice   bool                  // logout publishes no notice (as if it were lost)
}

func startNodeWith(t *testing.T, b backend, cfg gateway.Config, o nodeOptions) *node {
	t.Helper()
	log := testLogger(t)
	n := &node{t: t}
	acfg := auth.Config{DevLogin: true, SessionTTL: o.sessionTTL}
	if !o.noNotice {
		acfg.OnLogout = func(ctx context.Context, s auth.Session) { n.gw.Revoke(ctx, s) }
	}
	n.auth = auth.New(acfg, b.store, log)
	gw, err := gateway.New(context.Background(), cfg, gateway.Deps{Connect: b.connect, Auth: n.auth, Users: n.auth, Metrics: o.metrics}, log)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	n.gw = gw
	mux := http.NewServeMux()
	mux.Handle("/auth/", n.auth.Handler())
	mux.Handle("/", gw.Handler())
	n.http = httptest.NewServer(mux)
	t.Cleanup(n.stop)
	return n
}

// counter returns the value of the counter name (with the label value
// label, if given) in reg, or 0.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.gw.Shutdown(ctx)
	n.http.Close()
}

// login is a dev login's session.
type login = chatclient.Login

// login logs username in with dev login, as the Go client does.
func (n *node) login(username string) login {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := chatclient.DevLogin(ctx, nil, n.http.URL, username)
	if err != nil {
		n.t.Fatalf("dev login %s: %v", username, err)
	}
	return l
}

// client is one websocket of a test user.
type client struct {
	t       *testing.T
	conn    *websocket.Conn
	login   login
	welcome map[string]any
	pending [][]byte // frames read ahead while waiting for an ack
}

func (n *node) wsURL() string { return "ws" + strings.TrimPrefix(n.http.URL, "http") + "/ws" }

// dial opens a websocket with the token and reads the welcome.
func (n *node) dial(l login) *client {
	n.t.Helper()
	c := n.dialNoWelcome(l)
	c.welcome = c.expect("welcome")
	return c
}

func (n *node) dialNoWelcome(l login) *client {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, n.wsURL(), &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + l.Token}},
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		n.t.Fatalf("dial as %s: %v (HTTP %d)", l.Username, err, status)
	}
	conn.SetReadLimit(1 << 20)
	c := &client{t: n.t, conn: conn, login: l}
	n.t.Cleanup(func() { conn.CloseNow() })
	return c
}

// tryDial opens a websocket and reads its welcome, or returns nil if the
// upgrade is refused.
func (n *node) tryDial(l login) *client {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, n.wsURL(), &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + l.Token}},
	})
	if err != nil {
		return nil
	}
	n.t.Cleanup(func() { conn.CloseNow() })
	c := &client{t: n.t, conn: conn, login: l}
	c.welcome = c.expect("welcome")
	return c
}

// user logs in and connects.
func (n *node) user(name string) *client { return n.dial(n.login(name)) }

func (c *client) send(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("%s send: %v", c.login.Username, err)
	}
}

// readRaw returns the next frame's bytes.
func (c *client) readRaw() []byte {
	c.t.Helper()
	if len(c.pending) > 0 {
		b := c.pending[0]
		c.pending = c.pending[1:]
		return b
	}
	return c.readWire()
}

func (c *client) readWire() []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.conn.Read(ctx)
	if err != nil {
		c.t.Fatalf("%s read: %v", c.login.Username, err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("%s got a binary frame", c.login.Username)
	}
	return b
}

func (c *client) read() map[string]any {
	c.t.Helper()
	b := c.readRaw()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("%s: frame is not a JSON object: %s", c.login.Username, b)
	}
	return m
}

// expect reads the next frame and checks its type.
func (c *client) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["type"] != typ {
		c.t.Fatalf("%s: want a %s frame, got %v", c.login.Username, typ, m)
	}
	return m
}

// expectJSON reads the next frame and compares it byte for byte.
func (c *client) expectJSON(want string) {
	c.t.Helper()
	if got := c.readRaw(); !bytes.Equal(got, []byte(want)) {
		c.t.Fatalf("%s:\n got %s\nwant %s", c.login.Username, got, want)
	}
}

// expectError reads the next frame and checks it is an error with code and id.
func (c *client) expectError(code, id string) map[string]any {
	c.t.Helper()
	m := c.expect("error")
	if m["code"] != code {
		c.t.Fatalf("%s: want error %s, got %v", c.login.Username, code, m)
	}
	if gotID, _ := m["id"].(string); gotID != id {
		c.t.Fatalf("%s: want error id %q, got %v", c.login.Username, id, m)
	}
	return m
}

// expectAck waits for the ack of request id. Other frames that arrive
// first (the request's own fan-out may come before or after its ack,
// depending on the backend) stay queued for the next reads, in order.
func (c *client) expectAck(id string) {
	c.t.Helper()
	for i, b := range c.pending {
		if isAck(b, id) {
			c.pending = append(c.pending[:i:i], c.pending[i+1:]...)
			return
		}
	}
	for {
		b := c.readWire()
		if isAck(b, id) {
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) == nil && m["type"] == "error" && m["id"] == id {
			c.t.Fatalf("%s: want ack %q, got %s", c.login.Username, id, b)
		}
		c.pending = append(c.pending, b)
	}
}

func isAck(b []byte, id string) bool {
	var m map[string]any
	return json.Unmarshal(b, &m) == nil && m["type"] == "ack" && m["id"] == id
}

// do sends a command with an id and waits for its ack.
func (c *client) do(action, target string) {
	c.t.Helper()
	id := action + target
	c.send(`{"type":"command","action":"` + action + `","target":"` + target + `","id":"` + id + `"}`)
	c.expectAck(id)
}

// quiet checks that no frame arrives for a moment. A sentinel round trip
// (a request with an id, answered in order) proves it without sleeping.
func (c *client) quiet() {
	c.t.Helper()
	c.send(`{"type":"command","action":"leave","target":"#quiet-sentinel","id":"sentinel"}`)
	m := c.read()
	if m["type"] != "error" || m["id"] != "sentinel" {
		c.t.Fatalf("%s: want nothing, got %v", c.login.Username, m)
	}
}

// expectClose reads until the connection closes and checks the close code.
func (c *client) expectClose(code websocket.StatusCode) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.conn.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != code {
			c.t.Fatalf("%s: want close %d, got %v", c.login.Username, code, err)
		}
		return
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
