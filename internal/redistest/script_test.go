package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisClusterScript runs scripts/redis-cluster as a person would:
// it prints a CHAT_REDIS_URL whose cluster takes writes on every slot,
// and stops every node when it is stopped.
func TestRedisClusterScript(t *testing.T) {
	port, err := freePortBlock(6)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("../../scripts/redis-cluster", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	lines := bufio.NewScanner(out)
	var url string
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "CHAT_REDIS_URL="); ok {
			url = u
			break
		}
	}
	if url == "" {
		t.Fatal("the script printed no CHAT_REDIS_URL")
	}
	go func() {
		for lines.Scan() {
		}
	}()
	addrs := strings.Split(strings.TrimSuffix(strings.TrimPrefix(url, "redis+cluster://"), "/"), ",")
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 30 { // keys in slots of every primary
		k := fmt.Sprint("{k", i, "}")
		if err := c.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	var masters atomic.Int32 // ForEachMaster runs each on a goroutine of its own
	c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { masters.Add(1); return nil })
	if masters := masters.Load(); masters != 3 {
		t.Fatalf("%d primaries, want 3", masters)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the script did not stop cleanly: %v", err)
	}
	for _, a := range addrs {
		if conn, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still answers after the script stopped", a)
		}
	}
}

// freePortBlock returns the first of n consecutive ports that are free,
// as are their cluster bus ports (10000 higher).
func freePortBlock(n int) (int, error) {
	for base := 21000; base < 40000; base += 50 {
		ok := true
		for p := base; p < base+n && ok; p++ {
			for _, q := range []int{p, p + 10000} {
				l, err := net.Listen("tcp", fmt.Sprint("127.0.0.1:", q))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d free ports", n)
}
