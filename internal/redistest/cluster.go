package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Cluster is a Redis Cluster of the test's own: primaries with a replica
// each, redis-server processes on free ports of 127.0.0.1, created with
// redis-cli --cluster create and a short cluster-node-timeout, so that a
// replica takes over a killed primary within a few seconds. It needs
// redis-server and redis-cli on PATH (Redis 7.0 or later, for sharded
// pub/sub).
//
// ClusterURL gives the tests of a binary one shared cluster, with a key
// prefix of each test's own; StartCluster starts a dedicated one, which a
// fault test may fail over, kill and reshard.
type Cluster struct {
	URL string // redis+cluster://addr,addr,.../

	mu    sync.Mutex
	nodes map[string]*Server // by address; guarded by mu
	dir   string
}

// ClusterNodeTimeout is the clusters' cluster-node-timeout: how long a
// primary may be silent before its replica is promoted.
const ClusterNodeTimeout = time.Second

var sharedCluster struct {
	once    sync.Once
	cluster *Cluster
	err     error
}

// ClusterURL returns the URL of the test binary's shared cluster (started
// at the first call, stopped by Main) and a key prefix of t's own, whose
// keys are deleted when t ends.
func ClusterURL(t testing.TB) (url, prefix string) {
	t.Helper()
	sharedCluster.once.Do(func() { sharedCluster.cluster, sharedCluster.err = startCluster(3) })
	if sharedCluster.err != nil {
		t.Fatalf("redistest: start a Redis Cluster: %v", sharedCluster.err)
	}
	prefix = "test:" + randomID() + ":"
	t.Cleanup(func() { sharedCluster.cluster.deleteKeys(prefix) })
	return sharedCluster.cluster.URL, prefix
}

// StartCluster starts a cluster of t's own with primaries primaries and a
// replica each, and stops it when t ends.
func StartCluster(t testing.TB, primaries int) *Cluster {
	t.Helper()
	c, err := startCluster(primaries)
	if err != nil {
		t.Fatalf("redistest: start a Redis Cluster: %v", err)
	}
	t.Cleanup(c.close)
	return c
}

func startCluster(primaries int) (*Cluster, error) {
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("no %s on PATH (a Redis Cluster is made of redis-server processes)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "redis-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{nodes: make(map[string]*Server), dir: dir}
	var addrs []string
	for i := range 2 * primaries {
		s, err := c.startNode(i)
		if err != nil {
			c.close()
			return nil, err
		}
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		c.close()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	c.URL = "redis+cluster://" + strings.Join(addrs, ",") + "/"
	if err := c.waitOK(30 * time.Second); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// startNode starts cluster node number i on a free port.
func (c *Cluster) startNode(i int) (*Server, error) {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		for port > 65535-10000 { // the cluster bus listens 10000 above
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		nodeDir := fmt.Sprintf("%s/%d", c.dir, i)
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return nil, err
		}
		s := &Server{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Addr: fmt.Sprintf("127.0.0.1:%d", port)}
		s.run = newProcess([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
			"--dir", nodeDir, "--save", "", "--appendonly", "no",
			"--logfile", "", "--loglevel", "warning",
		})
		if lastErr = s.startAndWait(); lastErr == nil {
			c.mu.Lock()
			c.nodes[s.Addr] = s
			c.mu.Unlock()
			return s, nil
		}
		s.close()
	}
	return nil, lastErr
}

// admin returns a plain client of one node.
func admin(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
}

// waitOK waits until every running node says the cluster is ok and knows
// as many primaries as cover the slots, with every slot served.
func (c *Cluster) waitOK(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := c.checkOK()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster is not ok after %v: %w", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOK reports whether every running node says the cluster is ok,
// every replica is in sync, and every node sees the same primaries
// serving the same slots (a node that was just restarted, or that has not
// heard of a failover yet, has a view of its own).
func (c *Cluster) checkOK() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	views := map[string]string{} // a node's view of who serves what -> the node
	for _, addr := range c.Running() {
		a := admin(addr)
		info, err := a.ClusterInfo(ctx).Result()
		a.Close()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", addr)
		}
		a = admin(addr)
		repl, err := a.Info(ctx, "replication").Result()
		a.Close()
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: a replica not in sync", addr)
		}
		a = admin(addr)
		out, err := a.ClusterNodes(ctx).Result()
		a.Close()
		if err != nil {
			return err
		}
		views[slotView(parseNodes(out))] = addr
	}
	if len(views) > 1 {
		return fmt.Errorf("the nodes disagree on who serves which slots: %d views", len(views))
	}
	return nil
}

// slotView is a node's view of which primaries serve which slots.
func slotView(nodes []node) string {
	var lines []string
	for _, n := range nodes {
		if n.primary && !n.failed && len(n.slots) > 0 {
			lines = append(lines, fmt.Sprint(n.addr, n.slots))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, ";")
}

// Running returns the addresses of the nodes that run.
func (c *Cluster) Running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for addr, s := range c.nodes {
		if s.run.running(context.Background()) {
			out = append(out, addr)
		}
	}
	return out
}

// node is one line of CLUSTER NODES.
type node struct {
	id, addr, master string // master: the id of a replica's primary, "-" for a primary
	primary, failed  bool
	slots            [][2]int
}

// topology reads CLUSTER NODES from a running node.
func (c *Cluster) topology(t testing.TB) []node {
	t.Helper()
	for _, addr := range c.Running() {
		a := admin(addr)
		out, err := a.ClusterNodes(context.Background()).Result()
		a.Close()
		if err != nil {
			continue
		}
		return parseNodes(out)
	}
	t.Fatal("redistest: no cluster node answers")
	return nil
}

// parseNodes reads the lines of CLUSTER NODES.
func parseNodes(out string) []node {
	var nodes []node
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := node{id: f[0], addr: strings.Split(f[1], "@")[0], master: f[3],
			primary: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, _ := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if hi != "" {
				b, _ = strconv.Atoi(hi)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// Primaries returns the addresses of the primaries that serve slots.
func (c *Cluster) Primaries(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, n := range c.topology(t) {
		if n.primary && !n.failed && len(n.slots) > 0 {
			out = append(out, n.addr)
		}
	}
	return out
}

// PrimaryOf returns the address of the primary that serves key.
func (c *Cluster) PrimaryOf(t testing.TB, key string) string {
	t.Helper()
	slot := c.Slot(t, key)
	for _, n := range c.topology(t) {
		if !n.primary || n.failed {
			continue
		}
		for _, r := range n.slots {
			if slot >= r[0] && slot <= r[1] {
				return n.addr
			}
		}
	}
	t.Fatalf("redistest: no primary serves slot %d", slot)
	return ""
}

// Slot returns key's hash slot.
func (c *Cluster) Slot(t testing.TB, key string) int {
	t.Helper()
	a := admin(c.Running()[0])
	defer a.Close()
	slot, err := a.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(slot)
}

// replicaOf returns the address of a running replica of the primary at
// addr.
func (c *Cluster) replicaOf(t testing.TB, addr string) string {
	t.Helper()
	nodes := c.topology(t)
	var id string
	for _, n := range nodes {
		if n.addr == addr {
			id = n.id
		}
	}
	for _, n := range nodes {
		if n.master == id && !n.failed {
			return n.addr
		}
	}
	t.Fatalf("redistest: the primary %s has no replica", addr)
	return ""
}

// Failover has the replica of the primary at addr take over, as a manual
// CLUSTER FAILOVER does (no write is lost), and returns the new
// primary's address once the cluster is ok.
func (c *Cluster) Failover(t testing.TB, addr string) string {
	t.Helper()
	replica := c.replicaOf(t, addr)
	a := admin(replica)
	defer a.Close()
	// A manual failover that the primary does not answer in time (the
	// replica still syncing, say) is dropped without a word: ask again.
	for try := 0; ; try++ {
		if err := a.ClusterFailover(context.Background()).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", replica, err)
		}
		if c.becomesPrimary(replica, 5*time.Second) {
			return replica
		}
		if try == 5 {
			t.Fatalf("redistest: %s did not take over from %s", replica, addr)
		}
	}
}

// Kill kills the primary at addr (SIGKILL) and returns the address of its
// replica once the replica serves its slots.
func (c *Cluster) Kill(t testing.TB, addr string) string {
	t.Helper()
	replica := c.replicaOf(t, addr)
	c.mu.Lock()
	s := c.nodes[addr]
	c.mu.Unlock()
	s.run.halt(true)
	c.waitPrimary(t, replica)
	return replica
}

// Restart starts a killed node again; it rejoins as a replica.
func (c *Cluster) Restart(t testing.TB, addr string) {
	t.Helper()
	c.mu.Lock()
	s := c.nodes[addr]
	c.mu.Unlock()
	if err := s.startAndWait(); err != nil {
		t.Fatalf("redistest: restart %s: %v", addr, err)
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitPrimary waits until the node at addr is a primary and the cluster
// is ok.
func (c *Cluster) waitPrimary(t testing.TB, addr string) {
	t.Helper()
	if !c.becomesPrimary(addr, 30*time.Second) {
		t.Fatalf("redistest: %s is not a primary of an ok cluster after 30 s", addr)
	}
}

// becomesPrimary reports whether the node at addr is a primary of an ok
// cluster within d.
func (c *Cluster) becomesPrimary(addr string, d time.Duration) bool {
	a := admin(addr)
	defer a.Close()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		role, err := a.Do(context.Background(), "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" && c.checkOK() == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// MoveSlot migrates a hash slot, with its keys, from the primary that
// serves it to the primary at to, as redis-cli --cluster reshard does, one
// key batch at a time while clients keep using it.
func (c *Cluster) MoveSlot(t testing.TB, slot int, to string) {
	t.Helper()
	ctx := context.Background()
	nodes := c.topology(t)
	var src, dst node
	for _, n := range nodes {
		if n.addr == to {
			dst = n
		}
		if n.primary && !n.failed {
			for _, r := range n.slots {
				if slot >= r[0] && slot <= r[1] {
					src = n
				}
			}
		}
	}
	if src.id == "" || dst.id == "" || src.id == dst.id {
		t.Fatalf("redistest: move slot %d from %q to %q", slot, src.addr, to)
	}
	sa, da := admin(src.addr), admin(dst.addr)
	defer sa.Close()
	defer da.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("redistest: move slot %d: %v", slot, err)
		}
	}
	must(da.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.id).Err())
	must(sa.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id).Err())
	host, port, _ := strings.Cut(dst.addr, ":")
	for {
		keys, err := sa.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(sa.Do(ctx, args...).Err())
	}
	// As redis-cli does: the new owner first, so that it never bounces a
	// client back to the old one, then the old owner, then the others.
	order := []string{dst.addr, src.addr}
	for _, n := range nodes {
		if n.primary && !n.failed && n.addr != dst.addr && n.addr != src.addr {
			order = append(order, n.addr)
		}
	}
	for _, addr := range order {
		a := admin(addr)
		err := a.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.id).Err()
		a.Close()
		must(err)
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// deleteKeys removes the keys under prefix from every primary.
func (c *Cluster) deleteKeys(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, addr := range c.Running() {
		a := admin(addr)
		iter := a.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			a.Del(ctx, iter.Val()) // a replica refuses: its primary deletes
		}
		a.Close()
	}
}

// close stops every node and removes their files.
func (c *Cluster) close() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = nil
	c.mu.Unlock()
	for _, s := range nodes {
		s.close()
	}
	os.RemoveAll(c.dir)
}
