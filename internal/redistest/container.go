package redistest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// container runs redis-server in a container, with testcontainers-go:
// image EnvImage, host networking (the server binds 127.0.0.1 on the
// port chosen on this machine, so no port mapping is needed), and the data
// directory, if any, mounted at the same path. Readiness is the Server's
// own PING, as for a process: an image without shell tools needs nothing
// of testcontainers' wait strategies.
type container struct {
	args  []string // immutable
	dir   string   // immutable
	addr  string   // immutable
	image string   // immutable

	mu  sync.Mutex                      // guards ctr
	ctr *testcontainers.DockerContainer // nil until created
}

func newContainer(args []string, dir, addr string) *container {
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}
	return &container{args: args, dir: dir, addr: addr, image: image}
}

func (c *container) String() string { return "redis-server in a container of " + c.image }

func (c *container) start(ctx context.Context) (err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctr != nil {
		return c.ctr.Start(ctx)
	}
	if c.dir != "" {
		// The official image runs redis-server as the user redis.
		if err := os.Chmod(c.dir, 0o777); err != nil {
			return err
		}
	}
	defer func() { // testcontainers panics on some ways of finding no engine
		if r := recover(); r != nil {
			err = fmt.Errorf("container of %s: testcontainers: %v", c.image, r)
		}
	}()
	ctr, err := testcontainers.Run(ctx, c.image,
		testcontainers.WithLogger(tclog.NewNoopLogger()),
		testcontainers.WithCmd(append([]string{"redis-server"}, c.args...)...),
		testcontainers.WithLabels(map[string]string{"chat.redistest": c.addr}),
		testcontainers.WithHostConfigModifier(func(hc *dcontainer.HostConfig) {
			hc.NetworkMode = "host"
			if c.dir != "" {
				hc.Binds = append(hc.Binds, c.dir+":"+c.dir)
			}
		}),
	)
	if ctr != nil {
		c.ctr = ctr // created: close removes it, started or not
	}
	if err != nil {
		return fmt.Errorf("container of %s: %w", c.image, err)
	}
	// Said on stderr, which go test shows with -v: CI proves with it that
	// its container run went through here.
	fmt.Fprintf(os.Stderr, "redistest: Redis in a container of %s (id %.12s) on %s\n", c.image, ctr.GetContainerID(), c.addr)
	return nil
}

func (c *container) running(ctx context.Context) bool {
	c.mu.Lock()
	ctr := c.ctr
	c.mu.Unlock()
	if ctr == nil {
		return false
	}
	st, err := ctr.State(ctx)
	return err == nil && st.Running
}

func (c *container) halt(kill bool) {
	c.do(func(ctx context.Context) {
		grace := 5 * time.Second
		if kill {
			grace = 0 // docker stop -t 0: SIGKILL at once after the SIGTERM
		}
		c.ctr.Stop(ctx, &grace)
	})
}

func (c *container) close() {
	c.do(func(ctx context.Context) {
		if err := c.ctr.Terminate(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "redistest: remove container %.12s: %v\n", c.ctr.GetContainerID(), err)
		}
		c.ctr = nil
	})
}

// do calls f with c.mu held, if the container exists, with a deadline.
func (c *container) do(f func(ctx context.Context)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f(ctx)
}
