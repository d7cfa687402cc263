// Package redistest gives tests a real Redis.
//
// URL returns the Redis of the test run with a key prefix of the test's
// own. It takes the first of these that works, and the test binary shares
// it between its tests:
//
//  1. CHAT_TEST_REDIS_URL, an existing Redis;
//  2. a throwaway redis-server found on PATH, bound to 127.0.0.1 on a free
//     port, keeping nothing on disk;
//  3. the same in a container, with testcontainers-go: image
//     CHAT_TEST_REDIS_IMAGE (default redis:7), host networking, so it
//     needs a Docker engine on Linux.
//
// Start always starts a dedicated server, which a fault test may kill and
// restart: a redis-server of its own, else a container of its own.
// CHAT_TEST_REDIS_USE=url, server or container allows that source alone
// (CI runs the suites through containers this way).
//
// A test that cannot get a Redis fails, saying what it tried; it never
// skips. A package that uses the shared server stops it at exit with
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// (on Linux a redis-server process also dies with the test binary if it
// crashes; a container outlives a crash unless testcontainers' reaper,
// Ryuk, runs).
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The variables that choose the Redis of the tests.
const (
	// EnvURL points the tests at an existing Redis.
	EnvURL = "CHAT_TEST_REDIS_URL"

	// EnvUse, if set, allows one source alone: "url", "server" (a
	// redis-server on PATH) or "container".
	EnvUse = "CHAT_TEST_REDIS_USE"

	// EnvImage names the image of containers; if empty, DefaultImage.
	EnvImage = "CHAT_TEST_REDIS_IMAGE"

	// DefaultImage is the image of containers when EnvImage is empty.
	DefaultImage = "redis:7"
)

// The sources of a Redis, in the order URL tries them.
const (
	useURL       = "url"
	useServer    = "server"
	useContainer = "container"
)

// readyTimeout bounds how long a fresh redis-server may take to answer.
const readyTimeout = 10 * time.Second

// startTimeout bounds a start with its wait, pulling a container's image
// included.
const startTimeout = 5 * time.Minute

var shared struct {
	once sync.Once
	srv  *Server // nil when the run's Redis is EnvURL's
	url  string
	err  error
}

// URL returns the URL of the Redis that t may use and a key prefix that no
// other test uses (it ends in ':'). When the test ends, the keys under the
// prefix are deleted.
func URL(t testing.TB) (url, prefix string) {
	t.Helper()
	shared.once.Do(func() { shared.url, shared.srv, shared.err = sharedRedis() })
	if shared.err != nil {
		t.Fatalf("redistest: no Redis: %v", shared.err)
	}
	url = shared.url
	prefix = "test:" + randomID() + ":"
	t.Cleanup(func() { deleteKeys(t, url, prefix) })
	return url, prefix
}

// sharedRedis finds the Redis of the test binary.
func sharedRedis() (string, *Server, error) {
	uses, err := sources()
	if err != nil {
		return "", nil, err
	}
	var tried []string
	for _, use := range uses {
		if use == useURL {
			if url := os.Getenv(EnvURL); url != "" {
				return url, nil, nil
			}
			tried = append(tried, EnvURL+" is not set")
			continue
		}
		s, err := startUsing(use, Options{})
		if err == nil {
			return s.URL, s, nil
		}
		tried = append(tried, err.Error())
	}
	return "", nil, fmt.Errorf("%s (set %s, install redis-server, or run Docker)", strings.Join(tried, "; "), EnvURL)
}

// sources returns the sources to try, in order.
func sources() ([]string, error) {
	switch use := os.Getenv(EnvUse); use {
	case "":
		return []string{useURL, useServer, useContainer}, nil
	case useURL, useServer, useContainer:
		return []string{use}, nil
	default:
		return nil, fmt.Errorf("%s=%q: want %s, %s or %s", EnvUse, use, useURL, useServer, useContainer)
	}
}

// Main runs the tests of m and then stops the shared server, if one was
// started. It returns m.Run's exit code.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.close()
	}
	if sharedCluster.cluster != nil {
		sharedCluster.cluster.close()
	}
	return code
}

// Options configure a dedicated server.
type Options struct {
	// Dir, if set, makes the server persist its data there (append-only
	// file, fsync on every write), so a restart keeps it. If empty, the
	// server keeps nothing on disk.
	Dir string
}

// Server is a Redis that a test owns: a redis-server process or a
// container.
type Server struct {
	URL  string // redis://127.0.0.1:port/0
	Addr string // 127.0.0.1:port

	run engine // immutable after startUsing
}

// engine runs the redis-server of a Server, on a fixed port.
type engine interface {
	// start starts the server; again after halt.
	start(ctx context.Context) error
	// running reports whether the server is (still) running.
	running(ctx context.Context) bool
	// halt stops the server, at once (SIGKILL) if kill, else cleanly.
	halt(kill bool)
	// close stops the server for good and frees what it holds.
	close()
	// String says what it is, for messages.
	String() string
}

// Start starts a Redis of t's own (see the package comment) and stops it
// when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	uses, err := sources()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	var tried []string
	for _, use := range uses {
		if use == useURL {
			tried = append(tried, "a dedicated server cannot be "+EnvURL+"'s")
			continue
		}
		s, err := startUsing(use, opts)
		if err == nil {
			t.Cleanup(s.close)
			return s
		}
		tried = append(tried, err.Error())
	}
	t.Fatalf("redistest: start a Redis: %s", strings.Join(tried, "; "))
	return nil
}

// Kill kills the server with SIGKILL and waits until it is gone.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.run.halt(true)
}

// Restart starts the server again on the same port (and with the same
// data directory) after Kill, and waits until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	var err error
	for range 20 { // the port can take a moment to be free again
		if err = s.startAndWait(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redistest: restart %s: %v", s.run, err)
}

// startUsing starts a server from source use on a free port.
func startUsing(use string, opts Options) (*Server, error) {
	if use == useServer {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("no redis-server on PATH")
		}
	}
	var lastErr error
	for range 5 { // another process may take the free port before us
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{
			URL:  fmt.Sprintf("redis://127.0.0.1:%d/0", port),
			Addr: fmt.Sprintf("127.0.0.1:%d", port),
		}
		args := serverArgs(port, opts)
		if use == useServer {
			s.run = newProcess(args)
		} else {
			s.run = newContainer(args, opts.Dir, s.Addr)
		}
		if lastErr = s.startAndWait(); lastErr == nil {
			return s, nil
		}
		s.close()
	}
	return nil, lastErr
}

// serverArgs are redis-server's arguments, wherever it runs.
func serverArgs(port int, opts Options) []string {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--logfile", "",
		"--loglevel", "warning",
	}
	if opts.Dir != "" {
		return append(args, "--dir", opts.Dir, "--appendonly", "yes", "--appendfsync", "always")
	}
	return append(args, "--appendonly", "no")
}

// startAndWait starts the server and waits until it answers PING.
func (s *Server) startAndWait() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.run.start(ctx); err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		pcancel()
		if err == nil {
			return nil
		}
		if !s.run.running(ctx) {
			return fmt.Errorf("%s on %s exited", s.run, s.Addr)
		}
		if time.Now().After(deadline) {
			s.run.halt(true)
			return fmt.Errorf("%s on %s does not answer: %w", s.run, s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// close stops the server for good.
func (s *Server) close() { s.run.close() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	// An ephemeral port: never Redis's own 6379, which the machine's Redis
	// may hold (or get back) while a test runs.
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// deleteKeys removes the keys a test left under prefix, so that a shared
// Redis does not fill up. Failures are only logged: the test is over.
func deleteKeys(t testing.TB, url, prefix string) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("redistest: scan %s*: %v", prefix, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := c.Del(ctx, keys[:n]...).Err(); err != nil {
			t.Logf("redistest: delete %s*: %v", prefix, err)
			return
		}
		keys = keys[n:]
	}
}
