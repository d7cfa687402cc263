package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/coder/websocket"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/internal/redistest"
)

// proc is one chatd process of a test cluster.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
}

func startProc(t *testing.T, bin string, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, addr: freeAddr(t)}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(append(os.Environ(), "CHAT_ADDR="+p.addr, "CHAT_DEV_LOGIN=true", "CHAT_LOG_LEVEL=warn"), env...)
	if testing.Verbose() {
		p.cmd.Stderr = os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.base() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatd on %s did not become ready", p.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) base() string { return "http://" + p.addr }

// login logs name in with dev login, as the Go client does, and returns
// the token.
func (p *proc) login(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := chatclient.DevLogin(ctx, nil, p.base(), name)
	if err != nil {
		p.t.Fatal(err)
	}
	return l.Token
}

// wsConn is a websocket to one process, reading frames as maps.
type wsConn struct {
	t    *testing.T
	conn *websocket.Conn
}

func (p *proc) dial(token string) (*wsConn, map[string]any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		p.t.Fatalf("dial %s: %v", p.addr, err)
	}
	p.t.Cleanup(func() { conn.CloseNow() })
	c := &wsConn{t: p.t, conn: conn}
	return c, c.next("welcome")
}

func (c *wsConn) send(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next frame of type typ, skipping frames of other types.
func (c *wsConn) next(typ string) map[string]any {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		if m["type"] == typ {
			return m
		}
	}
}

func (c *wsConn) closeCode() websocket.StatusCode {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.conn.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func authStatus(t *testing.T, p *proc, token string) int {
	req, _ := http.NewRequest("GET", p.base()+"/auth/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestClusterProcesses runs three chatd processes on one Redis, then on a
// Redis Cluster (CHAT_REDIS_URL=redis+cluster://...): a session made on
// one node works on the others, a node killed with SIGKILL loses nothing
// shared, and a logout on one node closes the session's websockets on
// another at once.
func TestClusterProcesses(t *testing.T) {
	bin := buildChatd(t)
	t.Run("redis", func(t *testing.T) {
		url, prefix := redistest.URL(t)
		testClusterProcesses(t, bin, url, prefix)
	})
	t.Run("redis-cluster", func(t *testing.T) {
		url, prefix := redistest.ClusterURL(t)
		testClusterProcesses(t, bin, url, prefix)
	})
}

func testClusterProcesses(t *testing.T, bin, url, prefix string) {
	env := []string{"CHAT_REDIS_URL=" + url, "CHAT_REDIS_PREFIX=" + prefix}
	a, b, c := startProc(t, bin, env...), startProc(t, bin, env...), startProc(t, bin, env...)

	alice := a.login("alice")
	bob := b.login("bob")
	if authStatus(t, c, alice) != 200 {
		t.Fatal("a session made on node a does not work on node c")
	}

	// alice on c creates and joins #k; bob on b joins; they talk.
	ac, _ := c.dial(alice)
	bb, _ := b.dial(bob)
	ac.send(`{"type":"command","action":"create","target":"#k","id":"1"}`)
	bb.next("event")
	ac.send(`{"type":"command","action":"join","target":"#k","id":"2"}`)
	ac.next("ack")
	bb.send(`{"type":"command","action":"join","target":"#k","id":"3"}`)
	bb.next("ack")
	bb.send(`{"type":"message","target":"#k","message":"before the kill"}`)
	if m := ac.next("message"); m["message"] != "before the kill" {
		t.Fatal(m)
	}

	// SIGKILL node c: alice reconnects to a and finds #k joined.
	c.cmd.Process.Kill()
	c.cmd.Wait()
	aa, welcome := a.dial(alice)
	if fmt.Sprint(welcome["joined"]) != "[#k]" || fmt.Sprint(welcome["owned"]) != "[#k]" {
		t.Fatalf("after the kill: %v", welcome)
	}
	bb.send(`{"type":"message","target":"#k","message":"after the kill"}`)
	if m := aa.next("message"); m["message"] != "after the kill" {
		t.Fatal(m)
	}

	// Logout on b closes alice's websocket on a with 1000, and a refuses
	// the token at once.
	req, _ := http.NewRequest("POST", b.base()+"/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %s", resp.Status)
	}
	if st := authStatus(t, a, alice); st != http.StatusUnauthorized {
		t.Fatalf("node a after logout on b: %d", st)
	}
	if code := aa.closeCode(); code != websocket.StatusNormalClosure {
		t.Fatalf("alice's websocket on a closed with %d, want 1000", code)
	}
	bb.send(`{"type":"message","target":"#k","message":"bob carries on","id":"4"}`)
	bb.next("ack")
}

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func readyStatus(p *proc) int {
	resp, err := http.Get(p.base() + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

// TestClusterRedisOutage: while Redis is down, readyz is 503, requests fail
// with unavailable and websockets stay open; when it is back, every node
// restores its subscriptions and cross-node delivery works without any
// client action.
func TestClusterRedisOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Dir: t.TempDir()})
	bin := buildChatd(t)
	env := []string{"CHAT_REDIS_URL=" + srv.URL, "CHAT_REDIS_PREFIX=outage:"}
	a, b := startProc(t, bin, env...), startProc(t, bin, env...)
	alice, bob := a.login("alice"), b.login("bob")
	ac, _ := a.dial(alice)
	bc, _ := b.dial(bob)
	ac.send(`{"type":"command","action":"create","target":"#r","id":"c"}`)
	ac.next("ack")
	for _, c := range []*wsConn{ac, bc} {
		c.send(`{"type":"command","action":"join","target":"#r","id":"j"}`)
		c.next("ack")
	}

	srv.Kill(t)
	took := waitFor(t, "readyz 503 on both nodes", func() bool { return readyStatus(a) == 503 && readyStatus(b) == 503 })
	t.Logf("readyz turned 503 %v after Redis died", took)
	ac.send(`{"type":"message","target":"#r","message":"into the void","id":"m1"}`)
	if e := ac.next("error"); e["code"] != "unavailable" || e["id"] != "m1" {
		t.Fatalf("during the outage: %v", e)
	}

	srv.Restart(t)
	took = waitFor(t, "readyz 200 on both nodes", func() bool { return readyStatus(a) == 200 && readyStatus(b) == 200 })
	t.Logf("ready again %v after Redis restarted", took)
	// The same websockets carry on: alice's message reaches bob on the
	// other node.
	ac.send(`{"type":"message","target":"#r","message":"we are back","id":"m2"}`)
	ac.next("ack")
	if m := bc.next("message"); m["message"] != "we are back" {
		t.Fatal(m)
	}
}
