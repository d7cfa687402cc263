package pubsub

import (
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestParseClusterURL(t *testing.T) {
	for _, tc := range []struct {
		url   string
		addrs []string
		user  string
		pass  string
		tls   bool
		bad   bool
	}{
		{url: "redis+cluster://h1:7000,h2:7001/", addrs: []string{"h1:7000", "h2:7001"}},
		{url: "redis+cluster://h1", addrs: []string{"h1:6379"}},
		{url: "rediss+cluster://u:p%40ss@h1:7000,h2/", addrs: []string{"h1:7000", "h2:6379"}, user: "u", pass: "p@ss", tls: true},
		{url: "redis+cluster:///", bad: true},
		{url: "redis+cluster://h1/3", bad: true},
	} {
		o, err := parseClusterURL(tc.url)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: accepted", tc.url)
			}
			continue
		}
		if err != nil || !slices.Equal(o.Addrs, tc.addrs) || o.Username != tc.user || o.Password != tc.pass || (o.TLSConfig != nil) != tc.tls {
			t.Errorf("%s: %+v, %v", tc.url, o, err)
		}
	}
	c, err := NewClient("redis://127.0.0.1:1/0", 0)
	if _, ok := c.(*redis.Client); err != nil || !ok {
		t.Errorf("redis:// gave %T, %v", c, err)
	}
	c.Close()
	c, err = NewClient("redis+cluster://127.0.0.1:1/", 0)
	if _, ok := c.(*redis.ClusterClient); err != nil || !ok {
		t.Errorf("redis+cluster:// gave %T, %v", c, err)
	}
	c.Close()
}
