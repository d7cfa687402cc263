package redistest

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestCluster: a cluster serves every slot, survives a manual failover
// and a killed primary with its data, and moves a slot with its keys.
func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	ctx := t.Context()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(strings.TrimSuffix(strings.TrimPrefix(c.URL, "redis+cluster://"), "/"), ",")})
	defer client.Close()
	// Each key written on its primary and replicated before the faults
	// (WAIT): a primary killed before its replica has a write loses it,
	// which is Redis's asynchronous replication, not what is tested here.
	for _, k := range []string{"{a}x", "{b}x", "{c}x"} {
		p := redis.NewClient(&redis.Options{Addr: c.PrimaryOf(t, k)})
		err := p.Set(ctx, k, "v", 0).Err()
		if err == nil {
			var n int64
			if n, err = p.Do(ctx, "WAIT", 1, 5000).Int64(); err == nil && n < 1 {
				t.Fatalf("%s reached no replica in 5 s", k)
			}
		}
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(c.Primaries(t)); got != 3 {
		t.Fatalf("%d primaries, want 3", got)
	}
	primary := c.PrimaryOf(t, "{a}x")
	promoted := c.Failover(t, primary)
	if c.PrimaryOf(t, "{a}x") != promoted {
		t.Fatalf("after the failover {a} is served by %s, want %s", c.PrimaryOf(t, "{a}x"), promoted)
	}
	killed := c.PrimaryOf(t, "{b}x")
	c.Kill(t, killed)
	if c.PrimaryOf(t, "{b}x") == killed {
		t.Fatal("the killed primary still serves {b}")
	}
	slot := c.Slot(t, "{c}x")
	var to string
	for _, p := range c.Primaries(t) {
		if p != c.PrimaryOf(t, "{c}x") {
			to = p
		}
	}
	c.MoveSlot(t, slot, to)
	if c.PrimaryOf(t, "{c}x") != to {
		t.Fatal("the slot did not move")
	}
	c.Restart(t, killed)
	client.ReloadState(ctx)
	for _, k := range []string{"{a}x", "{b}x", "{c}x"} {
		if v, err := client.Get(context.Background(), k).Result(); err != nil || v != "v" {
			t.Fatalf("%s after the faults: %q, %v", k, v, err)
		}
	}
}
