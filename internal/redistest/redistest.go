// Package redistest gives tests a real Redis.
//
// URL returns the Redis of the test run with a key prefix of the test's own:
// CHAT_TEST_REDIS_URL if set, otherwise a throwaway redis-server (found on
// PATH, bound to 127.0.0.1 on a free port, keeping nothing on disk) that the
// test binary starts once and shares between its tests. Start always starts
// a dedicated redis-server, which a fault test may kill and restart.
//
// A test that cannot get a Redis fails; it never skips. A package that uses
// the shared server stops it at exit with
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// (on Linux the server also dies with the test binary if it crashes).
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
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names the variable that points the tests at an existing Redis.
const EnvURL = "CHAT_TEST_REDIS_URL"

// readyTimeout bounds how long a fresh redis-server may take to answer.
const readyTimeout = 10 * time.Second

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// URL returns the URL of the Redis that t may use and a key prefix that no
// other test uses (it ends in ':'). When the test ends, the keys under the
// prefix are deleted.
func URL(t testing.TB) (url, prefix string) {
	t.Helper()
	url = os.Getenv(EnvURL)
	if url == "" {
		shared.once.Do(func() { shared.srv, shared.err = start(Options{}) })
		if shared.err != nil {
			t.Fatalf("redistest: no Redis: %v (set %s or install redis-server)", shared.err, EnvURL)
		}
		url = shared.srv.URL
	}
	prefix = "test:" + randomID() + ":"
	t.Cleanup(func() { deleteKeys(t, url, prefix) })
	return url, prefix
}

// Main runs the tests of m and then stops the shared redis-server, if one
// was started. It returns m.Run's exit code.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.stop(false)
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

// Server is a redis-server that a test owns.
type Server struct {
	URL  string // redis://127.0.0.1:port/0
	Addr string // 127.0.0.1:port

	opts Options
	port int

	mu   sync.Mutex // guards cmd
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server of t's own and stops it when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(opts)
	if err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	t.Cleanup(func() { s.stop(false) })
	return s
}

// Kill kills the server with SIGKILL and waits until it is gone.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.stop(true)
}

// Restart starts the server again on the same port (and with the same
// data directory) after Kill, and waits until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	var err error
	for range 20 { // the port can take a moment to be free again
		if err = s.run(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redistest: restart redis-server: %v", err)
}

func start(opts Options) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, err
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
			opts: opts,
			port: port,
		}
		if lastErr = s.run(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// run starts the process and waits until it answers PING.
func (s *Server) run() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--logfile", "",
		"--loglevel", "warning",
	}
	if s.opts.Dir != "" {
		args = append(args, "--dir", s.opts.Dir, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command("redis-server", args...)
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited: %v", s.port, cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			s.stop(true)
			return fmt.Errorf("redis-server on port %d does not answer: %w", s.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) stop(kill bool) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if kill {
		cmd.Process.Kill()
	} else {
		cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
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
