package redistest

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestSources(t *testing.T) {
	for use, want := range map[string][]string{
		"":          {useURL, useServer, useContainer},
		"url":       {useURL},
		"server":    {useServer},
		"container": {useContainer},
	} {
		t.Setenv(EnvUse, use)
		got, err := sources()
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s=%q: %q, %v; want %q", EnvUse, use, got, err, want)
		}
	}
	t.Setenv(EnvUse, "docker")
	if _, err := sources(); err == nil || !strings.Contains(err.Error(), EnvUse) {
		t.Errorf("%s=docker: %v, want an error naming %s", EnvUse, err, EnvUse)
	}
}

// Without a source that works, the error says what was tried.
func TestNoRedis(t *testing.T) {
	t.Setenv(EnvUse, useURL)
	t.Setenv(EnvURL, "")
	_, _, err := sharedRedis()
	if err == nil || !strings.Contains(err.Error(), EnvURL+" is not set") {
		t.Fatalf("no URL: %v, want an error that says %s is not set", err, EnvURL)
	}
}

// A dedicated server, whatever runs it (a process, or a container when
// CHAT_TEST_REDIS_USE=container), keeps its data across Kill and Restart
// when it has a directory.
func TestStartKillRestart(t *testing.T) {
	srv := Start(t, Options{Dir: t.TempDir()})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("the server answers after Kill")
	}
	srv.Restart(t)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after Restart: %q, %v; want v", v, err)
	}
}

// URL's Redis works and its prefix is the test's own.
func TestURL(t *testing.T) {
	url, prefix := URL(t)
	_, other := URL(t)
	if prefix == other || !strings.HasSuffix(prefix, ":") {
		t.Fatalf("prefixes %q and %q", prefix, other)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.Set(context.Background(), prefix+"k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
}
