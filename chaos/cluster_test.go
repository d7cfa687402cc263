package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/redistest"
)

// prefix is the key prefix of the cluster: the Redis is the test's own.
const prefix = "chat:"

// buildChatd builds the real binary, with the race detector when this
// test binary has it (race_test.go).
func buildChatd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chatd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "github.com/wirechat/chat/cmd/chatd")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build chatd: %v\n%s", err, out)
	}
	return bin
}

// cluster is the system under test: one Redis, three nodes, each behind a
// proxy of its own to Redis.
type cluster struct {
	t     *testing.T
	bin   string
	redis *redistest.Server
	rdb   *redis.Client // straight to Redis, for the faults and the checker
	nodes []*node
}

// node is one chatd: its address stays while its process is killed and
// started again.
type node struct {
	name  string
	addr  string
	proxy *toxiproxy.Proxy

	mu      sync.Mutex
	proc    *process   // nil while down
	metrics [][]sample // the last scrape of each process that ran, for the totals
	scraped *process   // the process of metrics' last entry
}

// process is one run of a node's chatd.
type process struct {
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan struct{} // closed when it has exited
	err    error         // its exit, once exited is closed
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: buildChatd(t)}
	c.redis = redistest.Start(t, redistest.Options{Dir: t.TempDir()})
	c.rdb = redis.NewClient(&redis.Options{Addr: c.redis.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { c.rdb.Close() })
	for i := range n {
		nd := &node{name: fmt.Sprintf("n%d", i), addr: freeAddr(t), proxy: redistest.Proxy(t, c.redis.Addr)}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		c.start(nd)
	}
	for _, nd := range c.nodes {
		c.waitReady(nd, 30*time.Second)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if p := nd.current(); p != nil {
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
	})
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (n *node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

func (n *node) base() string { return "http://" + n.addr }

// start starts a process of nd, which must be down.
func (c *cluster) start(nd *node) {
	c.t.Helper()
	cmd := exec.Command(c.bin)
	cmd.Env = append(os.Environ(),
		"CHAT_ADDR="+nd.addr,
		"CHAT_NODE_ID="+nd.name,
		"CHAT_REDIS_URL=redis://"+nd.proxy.Listen+"/0",
		"CHAT_REDIS_PREFIX="+prefix,
		"CHAT_DEV_LOGIN=true",
		"CHAT_LOGIN_RATE_LIMIT=0",
		"CHAT_LOG_LEVEL=info",
		"CHAT_SHUTDOWN_TIMEOUT=5s",
		"CHAT_METRICS_ADDR=",
		"GORACE=halt_on_error=0",
	)
	p := &process{cmd: cmd, logs: new(logBuffer), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", nd.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	nd.mu.Lock()
	nd.proc = p
	nd.mu.Unlock()
}

// waitReady waits until nd answers /readyz with 200.
func (c *cluster) waitReady(nd *node, bound time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(bound)
	for readyz(nd) != http.StatusOK {
		p := nd.current()
		select {
		case <-p.exited:
			c.t.Fatalf("%s exited at start: %v\n%s", nd.name, p.err, p.logs.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s not ready after %v\n%s", nd.name, bound, p.logs.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

func readyz(nd *node) int {
	resp, err := httpClient.Get(nd.base() + "/readyz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// kill ends nd's process with sig and, for SIGKILL, waits until it is
// gone; it keeps the process's last metrics first. For SIGTERM it returns
// at once: the process drains and exits by itself.
func (c *cluster) kill(nd *node, sig syscall.Signal) *process {
	p := nd.current()
	c.scrape(nd)
	p.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-p.exited
	}
	return p
}

// down marks nd as down once p has exited, keeping p's logs.
func (c *cluster) down(nd *node, p *process) {
	<-p.exited
	nd.mu.Lock()
	if nd.proc == p {
		nd.proc = nil
	}
	nd.mu.Unlock()
	c.keepLogs(nd, p)
}

// logs of the processes that ended, by node, for the report.
var endedLogs struct {
	mu   sync.Mutex
	text []string
}

func (c *cluster) keepLogs(nd *node, p *process) {
	endedLogs.mu.Lock()
	defer endedLogs.mu.Unlock()
	endedLogs.text = append(endedLogs.text, fmt.Sprintf("--- %s (exit %v):\n%s", nd.name, p.err, p.logs.String()))
}

// The metrics the report adds up over every process of every node.
var reported = []string{
	"chat_messages_published_total",
	"chat_message_duplicates_total",
	"chat_deliveries_total",
	"chat_gap_repairs_total",
	"chat_gap_repaired_messages_total",
	"chat_gap_skipped_messages_total",
	"chat_resyncs_total",
	"chat_resync_events_total",
	"chat_history_reads_total",
	"chat_rate_limited_total",
	"chat_slow_consumer_closes_total",
	"chat_errors_total",
}

type sample struct {
	name   string // with its labels
	metric string // the name alone
	value  float64
}

// scrape reads nd's metrics and keeps them as its current process's last.
func (c *cluster) scrape(nd *node) {
	p := nd.current()
	if p == nil {
		return
	}
	resp, err := httpClient.Get(nd.base() + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var got []sample
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		metric, _, _ := strings.Cut(name, "{")
		for _, r := range reported {
			if metric == r {
				v, _ := strconv.ParseFloat(value, 64)
				got = append(got, sample{name, metric, v})
			}
		}
	}
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != p {
		return
	}
	if nd.scraped != p {
		nd.metrics = append(nd.metrics, got)
		nd.scraped = p
		return
	}
	nd.metrics[len(nd.metrics)-1] = got
}

// totals adds up the last scrape of every process of every node, by name
// with labels.
func (c *cluster) totals() map[string]float64 {
	out := make(map[string]float64)
	for _, nd := range c.nodes {
		nd.mu.Lock()
		for _, ss := range nd.metrics {
			for _, s := range ss {
				out[s.name] += s.value
			}
		}
		nd.mu.Unlock()
	}
	return out
}

// clientKillPubsub kills every pub/sub connection of Redis.
func (c *cluster) clientKillPubsub() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
}

// blackhole cuts nd's link to Redis silently: nothing passes, connections
// stay open. With repliesOnly, requests still reach Redis and only its
// replies are lost (a request that ran, whose node thinks it failed).
func blackhole(nd *node, repliesOnly bool) error {
	streams := []string{"upstream", "downstream"}
	if repliesOnly {
		streams = streams[1:]
	}
	for _, s := range streams {
		_, err := nd.proxy.Toxics.AddToxicJson(strings.NewReader(
			`{"name":"hole-` + s + `","type":"timeout","stream":"` + s + `","attributes":{"timeout":0}}`))
		if err != nil {
			return err
		}
	}
	return nil
}

// heal removes nd's blackhole.
func heal(nd *node) {
	for _, s := range []string{"upstream", "downstream"} {
		nd.proxy.Toxics.RemoveToxic(context.Background(), "hole-"+s)
	}
}

// login logs name in with dev login on nd and returns its token and
// identifier.
func login(nd *node, name string) (token, id string, err error) {
	resp, err := httpClient.Post(nd.base()+"/auth/dev/login", "application/json", strings.NewReader(`{"username":"`+name+`"}`))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var l struct{ Token, Identifier string }
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
		return "", "", fmt.Errorf("dev login %s: %s %v", name, resp.Status, err)
	}
	return l.Token, l.Identifier, nil
}

// logBuffer collects a process's output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tail returns the last n lines.
func (l *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
