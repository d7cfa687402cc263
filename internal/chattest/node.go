// Package chattest runs real chat nodes for the tests of the packages that
// talk to the server from outside (the Go client, its examples, the bots):
// an in-process node is a gateway.Server and an auth.Service behind a real
// listener, as cmd/chatd wires them; a process node is the chatd binary
// itself, built once per test binary, which a test may kill with SIGKILL.
// Nodes given backends on one Redis (RedisCluster) are one chat; memory
// nodes are a chat each, and may share their login store so that a token
// works on all of them.
//
// The package is for tests only: it imports the server's packages, which
// the clients themselves never do.
package chattest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/pubsub"
)

// Backend is what one node keeps its state in: its pub/sub backend and its
// login store. Nodes whose backends share a Redis prefix are one chat.
type Backend struct {
	// Connect opens the node's backend (gateway.Deps.Connect).
	Connect func(pubsub.Handler) (pubsub.Backend, error)
	// Store keeps users and login sessions.
	Store auth.Store
}

// Memory is the backend of a single-node chat in process memory, with a
// login store of its own. Give two memory nodes the same Store to make a
// token valid on both (their chats stay apart: each has its own epoch).
func Memory() Backend {
	return Backend{
		Connect: func(h pubsub.Handler) (pubsub.Backend, error) {
			return pubsub.NewMemory(h, pubsub.HistoryOptions{}), nil
		},
		Store: auth.NewMemory(),
	}
}

// RedisCluster returns a function that makes the backend of one more node of
// a chat on the test run's Redis, under a key prefix of t's own.
func RedisCluster(t testing.TB) func() Backend {
	t.Helper()
	url, prefix := redistest.URL(t)
	return func() Backend { return redisBackend(t, url, prefix) }
}

// RedisAt is RedisCluster on a Redis of the test's own (redistest.Start),
// which the test may kill to make the backend unavailable.
func RedisAt(t testing.TB, url string) func() Backend {
	return func() Backend { return redisBackend(t, url, "chattest:") }
}

func redisBackend(t testing.TB, url, prefix string) Backend {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	pubsub.TuneOptions(opts, 0)
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() }) // after the node, which is cleaned up first
	return Backend{
		Connect: func(h pubsub.Handler) (pubsub.Backend, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return pubsub.NewRedis(ctx, pubsub.RedisOptions{
				Client:  client,
				Prefix:  prefix,
				NodeID:  fmt.Sprintf("node-%p", h),
				Handler: h,
				Logger:  Logger(),
			})
		},
		Store: auth.NewRedis(client, auth.RedisOptions{Prefix: prefix}),
	}
}

// Node is one in-process chat node serving on a real listener of
// 127.0.0.1, with dev login on.
type Node struct {
	// URL is the node's base URL (http://127.0.0.1:port).
	URL string

	gw       *gateway.Server
	http     *httptest.Server
	stopOnce sync.Once
}

// Start starts a node on b with cfg (a zero field is the gateway's default)
// and stops it when t ends.
func Start(t testing.TB, b Backend, cfg gateway.Config) *Node {
	t.Helper()
	n, err := StartNode(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// StartNode is Start for code without a testing.TB (TestMain, examples):
// the caller stops the node.
func StartNode(b Backend, cfg gateway.Config) (*Node, error) {
	log := Logger()
	n := &Node{}
	authn := auth.New(auth.Config{
		DevLogin: true,
		OnLogout: func(ctx context.Context, s auth.Session) { n.gw.Revoke(ctx, s) },
	}, b.Store, log)
	gw, err := gateway.New(context.Background(), cfg, gateway.Deps{Connect: b.Connect, Auth: authn, Users: authn}, log)
	if err != nil {
		return nil, fmt.Errorf("gateway.New: %w", err)
	}
	n.gw = gw
	mux := http.NewServeMux()
	mux.Handle("/auth/", authn.Handler())
	mux.Handle("/", gw.Handler())
	n.http = httptest.NewServer(mux)
	n.URL = n.http.URL
	return n, nil
}

// Drain shuts the node down as SIGTERM does: readyz turns 503, upgrades are
// refused and every websocket is closed with 1001. The listener stays up,
// refusing upgrades, until Stop.
func (n *Node) Drain(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.gw.Shutdown(ctx); err != nil {
		t.Fatalf("drain %s: %v", n.URL, err)
	}
}

// Stop drains the node and closes its listener. It is safe to call more
// than once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.gw.Shutdown(ctx)
		n.http.Close()
	})
}

// Logger is the nodes' logger: debug lines on stderr with go test -v,
// nothing otherwise.
func Logger() *slog.Logger {
	if verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// verbose is testing.Verbose for code that may run before flags are parsed
// (testing.Verbose panics then).
func verbose() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.v" || a == "-test.v=true" || strings.HasPrefix(a, "-test.v=test2json") {
			return true
		}
	}
	return false
}
