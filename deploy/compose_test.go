package deploy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
)

// chatdServices are the chatd nodes of docker-compose.yml, in the order
// nginx lists them.
var chatdServices = []string{"chatd-1", "chatd-2", "chatd-3"}

// loadCompose loads docker-compose.yml as `docker compose` would, with env as
// the whole environment for interpolation (neither the test's own
// environment nor a developer's .env leaks in). Loading validates the file
// against the compose specification's schema and checks its consistency.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(list),
		cli.WithInterpolation(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// envExample reads .env.example as compose would read a .env file.
func envExample(t *testing.T) map[string]string {
	t.Helper()
	env, err := dotenv.GetEnvFromFile(nil, []string{filepath.Join(root, ".env.example")})
	if err != nil {
		t.Fatalf(".env.example: %v", err)
	}
	return env
}

func envValue(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	v, ok := s.Environment[name]
	if !ok || v == nil {
		t.Fatalf("service %s does not set %s", s.Name, name)
	}
	return *v
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t, nil)

	want := append([]string{"redis", "nginx"}, chatdServices...)
	slices.Sort(want)
	if got := p.ServiceNames(); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	redis := p.Services["redis"]
	if !strings.HasPrefix(redis.Image, "redis:7") {
		t.Errorf("redis image %q, want redis:7-alpine", redis.Image)
	}
	if redis.HealthCheck == nil || !slices.Contains(redis.HealthCheck.Test, "redis-cli") || !slices.Contains(redis.HealthCheck.Test, "ping") {
		t.Errorf("redis has no `redis-cli ping` health check: %+v", redis.HealthCheck)
	}

	for _, name := range chatdServices {
		s := p.Services[name]
		t.Run(name, func(t *testing.T) {
			if s.Build == nil || s.Build.Dockerfile != "Dockerfile" || filepath.Clean(s.Build.Context) != filepath.Clean(mustAbs(t, root)) {
				t.Errorf("build %+v, want the root Dockerfile with the root as context", s.Build)
			}
			if s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, []string{"CMD", "/chatd", "healthcheck"}) {
				t.Errorf("health check %+v, want CMD /chatd healthcheck", s.HealthCheck)
			}
			if d, ok := s.DependsOn["redis"]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("depends_on redis %+v, want condition %s", d, types.ServiceConditionHealthy)
			}
			for name, want := range map[string]string{
				"CHAT_REDIS_URL":  "redis://redis:6379/0",
				"CHAT_DEV_LOGIN":  "true",
				"CHAT_PUBLIC_URL": "http://localhost:8080",
				"CHAT_NODE_ID":    s.Name,
			} {
				if got := envValue(t, s, name); got != want {
					t.Errorf("%s=%q, want %q", name, got, want)
				}
			}
			// Reachable by nginx: CHAT_ADDR on every interface of the
			// container, set explicitly (dev login is on, and chatd would
			// listen on loopback without it).
			checkAllInterfaces(t, "CHAT_ADDR", envValue(t, s, "CHAT_ADDR"))
			// Metrics on a port of their own, published on the host's
			// loopback only; nothing else of a node is published.
			metrics := envValue(t, s, "CHAT_METRICS_ADDR")
			checkAllInterfaces(t, "CHAT_METRICS_ADDR", metrics)
			if addrPort(t, metrics) == addrPort(t, envValue(t, s, "CHAT_ADDR")) {
				t.Errorf("CHAT_METRICS_ADDR %s shares the chat's port", metrics)
			}
			for _, p := range s.Ports {
				if p.HostIP != "127.0.0.1" || int(p.Target) != addrPort(t, metrics) {
					t.Errorf("port %+v: a node publishes only its metrics port, on 127.0.0.1", p)
				}
			}
			// A node must be given the time to close its websockets with
			// 1001 before compose kills it.
			if s.StopGracePeriod == nil {
				t.Errorf("no stop_grace_period")
			} else {
				v := s.Environment["CHAT_SHUTDOWN_TIMEOUT"]
				shutdown := shutdownTimeout(t, v)
				if got := time.Duration(*s.StopGracePeriod); got <= shutdown {
					t.Errorf("stop_grace_period %v is not above CHAT_SHUTDOWN_TIMEOUT %v", got, shutdown)
				}
			}
		})
	}
}

func TestComposeEnvIsKnown(t *testing.T) {
	p := loadCompose(t, nil)
	for _, s := range p.Services {
		checkKnown(t, "service "+s.Name, sortedKeys(s.Environment))
	}
	checkKnown(t, ".env.example", sortedKeys(envExample(t)))
}

// Every ${VAR} in the compose file has a default, so `docker compose up`
// works without a .env file and warns about nothing.
func TestComposeVariablesHaveDefaults(t *testing.T) {
	src := readFile(t, "docker-compose.yml")
	ref := regexp.MustCompile(`\$\{([^}]*)\}`)
	withDefault := regexp.MustCompile(`^[A-Z0-9_]+:?-`)
	for _, m := range ref.FindAllStringSubmatch(src, -1) {
		if !withDefault.MatchString(m[1]) {
			t.Errorf("docker-compose.yml: ${%s} has no default", m[1])
		}
	}
}

// What .env sets reaches every chatd node: OAuth credentials pass through,
// and dev login can be turned off.
func TestComposeEnvFilePassesThrough(t *testing.T) {
	env := envExample(t)
	for k := range env {
		env[k] = "from-env-file-" + strings.ToLower(k)
	}
	p := loadCompose(t, env)
	for _, name := range chatdServices {
		s := p.Services[name]
		for k, want := range env {
			if got, ok := s.Environment[k]; !ok || got == nil || *got != want {
				t.Errorf("%s: .env sets %s but the node does not get it", name, k)
			}
		}
	}

	off := loadCompose(t, map[string]string{"CHAT_DEV_LOGIN": "false"})
	for _, name := range chatdServices {
		if got := envValue(t, off.Services[name], "CHAT_DEV_LOGIN"); got != "false" {
			t.Errorf("%s: CHAT_DEV_LOGIN=false in .env gives %q", name, got)
		}
	}
}

func TestComposeNginx(t *testing.T) {
	p := loadCompose(t, nil)
	ngx := p.Services["nginx"]

	if len(ngx.Ports) != 1 || ngx.Ports[0].Published != "8080" || ngx.Ports[0].HostIP != "127.0.0.1" {
		t.Errorf("nginx ports %+v, want 127.0.0.1:8080 published", ngx.Ports)
	}
	var conf string
	for _, v := range ngx.Volumes {
		if v.Target == "/etc/nginx/nginx.conf" {
			if !v.ReadOnly {
				t.Errorf("nginx.conf mounted read-write")
			}
			conf = v.Source
		}
	}
	if want := filepath.Join(mustAbs(t, root), "deploy", "nginx", "nginx.conf"); conf != want {
		t.Fatalf("nginx.conf mounted from %q, want %q", conf, want)
	}
	for _, name := range chatdServices {
		if d, ok := ngx.DependsOn[name]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("nginx does not wait for %s to be healthy: %+v", name, d)
		}
	}

	cfg := nginxConfig(t)
	if cfg.listen != int(ngx.Ports[0].Target) {
		t.Errorf("nginx listens on %d, compose maps container port %d", cfg.listen, ngx.Ports[0].Target)
	}
	// The upstream holds exactly the chatd nodes, each on the port its
	// CHAT_ADDR listens on.
	var want []string
	for _, name := range chatdServices {
		addr := ""
		if v := p.Services[name].Environment["CHAT_ADDR"]; v != nil {
			addr = *v
		}
		want = append(want, name+":"+strconv.Itoa(addrPort(t, addr)))
	}
	if !slices.Equal(cfg.upstream, want) {
		t.Errorf("nginx upstream %v, want %v", cfg.upstream, want)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestComposeRedisCluster loads docker-compose.yml with the Redis Cluster
// override, as `docker compose -f docker-compose.yml -f
// deploy/redis-cluster.compose.yml` would: six Redis nodes with cluster
// mode on, a one-shot job that creates the cluster from all six with a
// replica each, and chatd nodes on a redis+cluster:// URL of the
// primaries' addresses, started once the job is done.
func TestComposeRedisCluster(t *testing.T) {
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml"), filepath.Join(root, "deploy", "redis-cluster.compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
		cli.WithInterpolation(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("the Redis Cluster override does not load: %v", err)
	}
	var addrs []string
	for i := 1; i <= 6; i++ {
		s, ok := p.Services[fmt.Sprint("redis-node-", i)]
		if !ok {
			t.Fatalf("no redis-node-%d", i)
		}
		if !slices.Contains(s.Command, "--cluster-enabled") || !strings.HasPrefix(s.Image, "redis:7") {
			t.Errorf("%s: %v %v, want redis:7 with --cluster-enabled", s.Name, s.Image, s.Command)
		}
		n := s.Networks["default"]
		if n == nil || n.Ipv4Address == "" {
			t.Fatalf("%s has no fixed address", s.Name)
		}
		addrs = append(addrs, n.Ipv4Address+":6379")
	}
	job := p.Services["redis-cluster-create"]
	script := strings.Join(job.Entrypoint, " ")
	if !strings.Contains(script, "--cluster create "+strings.Join(addrs[:3], " ")) || !strings.Contains(script, strings.Join(addrs[3:], " ")+" --cluster-replicas 1") {
		t.Errorf("the create job does not create the cluster of %v with a replica each: %s", addrs, script)
	}
	for i := 1; i <= 6; i++ {
		if d, ok := job.DependsOn[fmt.Sprint("redis-node-", i)]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("the create job does not wait for redis-node-%d", i)
		}
	}
	want := "redis+cluster://" + strings.Join(addrs[:3], ",") + "/"
	for _, name := range chatdServices {
		s := p.Services[name]
		if got := envValue(t, s, "CHAT_REDIS_URL"); got != want {
			t.Errorf("%s: CHAT_REDIS_URL=%q, want %q", name, got, want)
		}
		if d, ok := s.DependsOn["redis-cluster-create"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s does not wait for the cluster to be created", name)
		}
		if envValue(t, s, "CHAT_NODE_ID") != name {
			t.Errorf("%s lost its own settings in the override", name)
		}
	}
}
