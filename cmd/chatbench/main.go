// Command chatbench is the load generator of the chat server: it logs in
// virtual users with dev login, spreads them round-robin over the nodes it is
// given, runs one scenario and reports deliveries, loss, duplicates,
// reordering and delivery latency.
//
//	chatbench fanout   -url http://127.0.0.1:8080 -clients 1000 -channels 1 -rate 200 -duration 10s
//	chatbench dm       -url ... -clients 200 -rate 1000
//	chatbench idle     -url ... -clients 5000 -duration 10s -pid $(pidof chatd)
//	chatbench connect  -url ... -clients 5000 -concurrency 64
//	chatbench saturate -url ... -clients 1000 -rate 200 -factor 1.5 -duration 5s -p99-max 1s
//	chatbench presence -url ... -clients 5000 -channels 50 -waves 3 -wave 0.2 -redis redis://127.0.0.1:6379
//	chatbench members  -url ... -clients 10000 -requesters 10 -duration 10s -limit 1000
//	chatbench history  -url ... -clients 50 -messages 10000 -limit 100 -duration 10s
//	chatbench resume   -url ... -clients 1000 -channels 10 -rate 200 -duration 10s -drop 0.2 -outage 3s
//
// Every message text is "source:seq:unixnano:padding"; receivers count each
// stream's messages against what the protocol owes them (every member of a
// channel gets every message sent to it after its join was acked, the
// sender's own echo included; a private message goes to the recipient and
// the sender). Latency is measured from the publisher's clock to the
// receiver's, so all of them must run on one machine.
//
// The server limits each user to CHAT_RATE_LIMIT requests per second
// (default 20). chatbench uses enough publishers to stay under -rate-limit;
// benchmarks run the server with a higher CHAT_RATE_LIMIT and pass the same
// value as -rate-limit.
//
// A progress line goes to stderr every second; the result goes to stdout as
// a table, or with -json as one JSON line (the table then goes to stderr).
// A run stops by itself: every phase is bounded and -timeout ends it.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the benchmark and writes its result; it returns the
// exit status: 0 done, 1 the run failed, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: chatbench fanout|dm|idle|connect|saturate|presence|members|history|resume [flags]")
		fs.PrintDefaults()
	}
	var (
		cfg      Config
		urls     string
		timeout  time.Duration
		asJSON   bool
		quiet    bool
		scenario string
		cpuprof  string
	)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	fs.StringVar(&scenario, "scenario", scenario, "fanout, dm, idle, connect, saturate, presence, members, history or resume (or give it as the first argument)")
	fs.StringVar(&urls, "url", "http://127.0.0.1:8080", "comma-separated base URLs of the nodes; clients are spread over them round-robin")
	fs.IntVar(&cfg.Clients, "clients", 100, "subscribers (fanout, saturate), users (dm, even; presence), connections (idle, connect), channel members (members)")
	fs.IntVar(&cfg.Channels, "channels", 1, "channels (fanout, saturate, presence)")
	fs.IntVar(&cfg.Publishers, "publishers", 0, "publishers (fanout, saturate); 0: enough to stay under -rate-limit")
	fs.Float64Var(&cfg.Rate, "rate", 100, "messages per second over all publishers (saturate: of the first step)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "publishing time (fanout, dm), hold time (idle), time per step (saturate), listing time (members)")
	fs.IntVar(&cfg.Size, "size", 100, "message text size in bytes (at least the header source:seq:unixnano:)")
	fs.BoolFunc("no-ids", "send messages without request ids: the server sends no acks (half the frames a publisher gets for its own messages), "+
		"and a refused message cannot be matched, so it counts as lost", func(string) error { cfg.NoIDs = true; return nil })
	fs.DurationVar(&cfg.Grace, "grace", 5*time.Second, "longest wait for stragglers after publishing stops, or for presence events beyond the grace (ends early when all is in)")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 20, "the server's CHAT_RATE_LIMIT (requests/s per user)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "logins, dials and joins in flight at once")
	fs.Func("pid", "idle: the server's process id (comma-separated: every node's), to report its RSS growth per connection", func(v string) error {
		for _, f := range strings.Split(v, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return fmt.Errorf("not a process id: %q", f)
			}
			cfg.PIDs = append(cfg.PIDs, pid)
		}
		return nil
	})
	fs.Func("source", "local addresses to dial websockets from, in turn: a list (127.0.0.2,127.0.0.3) or a range (127.0.0.2-127.0.0.9); "+
		"one address reaches one node with at most about 28,000 connections", func(v string) error {
		addrs, err := parseSources(v)
		cfg.Sources = addrs
		return err
	})
	fs.Float64Var(&cfg.Factor, "factor", 1.5, "saturate: rate multiplier per step")
	fs.Float64Var(&cfg.MaxRate, "max-rate", 0, "saturate: highest rate to try; 0: -rate * factor^8")
	fs.DurationVar(&cfg.P99Max, "p99-max", time.Second, "saturate: a step with a higher p99 latency is not good")
	addPresenceFlags(fs, &cfg.PresenceConfig)
	fs.IntVar(&cfg.Messages, "messages", 10000, "history: messages to fill the channel with, by -publishers users (0: enough to take about 10 s under -rate-limit, at most 50)")
	fs.Float64Var(&cfg.Drop, "drop", 0.2, "resume: share of the subscribers that drop their connection and resume")
	fs.DurationVar(&cfg.Outage, "outage", 3*time.Second, "resume: how long a dropped subscriber stays away")
	fs.StringVar(&cfg.Prefix, "prefix", "", "prefix of usernames and channel names; empty: a random one per run")
	fs.DurationVar(&timeout, "timeout", 2*time.Minute, "hard limit on the whole run")
	fs.BoolVar(&asJSON, "json", false, "write the result as one JSON line on stdout (the table goes to stderr)")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	fs.StringVar(&cpuprof, "cpuprofile", "", "write chatbench's own CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			cfg.URLs = append(cfg.URLs, u)
		}
	}
	cfg.Scenario = scenario
	if !quiet {
		cfg.Progress = stderr
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintln(stderr, "chatbench:", err)
		fs.Usage()
		return 2
	}
	if cpuprof != "" {
		f, err := os.Create(cpuprof)
		if err != nil {
			fmt.Fprintln(stderr, "chatbench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "chatbench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	res, err := runBench(ctx, cfg, timeout)
	table := stdout
	if asJSON {
		table = stderr
		if jerr := writeJSON(stdout, res); jerr != nil {
			fmt.Fprintln(stderr, "chatbench:", jerr)
		}
	}
	writeTable(table, res)
	if err != nil {
		fmt.Fprintln(stderr, "chatbench:", err)
		return 1
	}
	return 0
}

// check rejects settings no scenario can run with and fills the prefix.
func (cfg *Config) check() error {
	switch cfg.Scenario {
	case "fanout", "dm", "idle", "connect", "saturate", "presence", "members":
	case "history", "resume":
		if err := cfg.checkHistory(); err != nil {
			return err
		}
	case "":
		return errors.New("no scenario")
	default:
		return fmt.Errorf("unknown scenario %q", cfg.Scenario)
	}
	switch {
	case len(cfg.URLs) == 0:
		return errors.New("-url names no node")
	case cfg.Clients < 1:
		return errors.New("-clients must be at least 1")
	case cfg.Rate <= 0 || cfg.RateLimit <= 0:
		return errors.New("-rate and -rate-limit must be positive")
	case cfg.Duration <= 0 || cfg.Grace < 0:
		return errors.New("-duration must be positive and -grace not negative")
	case cfg.Concurrency < 1:
		return errors.New("-concurrency must be at least 1")
	}
	if err := cfg.checkPresence(); err != nil {
		return err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = randomPrefix()
	}
	if len(cfg.Prefix) > 20 {
		return errors.New("-prefix is too long (at most 20 characters)")
	}
	return nil
}

// randomPrefix names a run: "b" and six base-36 characters, so that the
// users and channels of two runs never meet.
func randomPrefix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var raw [6]byte
	rand.Read(raw[:])
	out := []byte{'b'}
	for _, c := range raw {
		out = append(out, alphabet[int(c)%len(alphabet)])
	}
	return string(out)
}

// runBench runs cfg's scenario, bounded by timeout, and always returns a
// result, with whatever was measured when it fails.
func runBench(ctx context.Context, cfg Config, timeout time.Duration) (*Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	b := newBench(cfg)
	switch cfg.Scenario {
	case "fanout", "dm", "saturate", "resume":
		if cfg.RedisURL != "" {
			p, err := newRedisProbe(cfg.RedisURL)
			if err != nil {
				return &Result{Scenario: cfg.Scenario, Failure: err.Error()}, err
			}
			b.probe = p
		}
	}
	progCtx, stopProgress := context.WithCancel(ctx)
	progDone := make(chan struct{})
	go func() {
		defer close(progDone)
		if cfg.Progress != nil {
			b.progress(progCtx, cfg.Progress)
		}
	}()

	var res *Result
	var err error
	switch cfg.Scenario {
	case "fanout":
		res, err = b.fanout(ctx)
	case "dm":
		res, err = b.dm(ctx)
	case "idle":
		res, err = b.idle(ctx)
	case "connect":
		res, err = b.connect(ctx)
	case "saturate":
		res, err = b.saturate(ctx, deadline)
	case "presence":
		res, err = b.presence(ctx)
	case "members":
		res, err = b.members(ctx)
	case "history":
		res, err = b.history(ctx)
	case "resume":
		res, err = b.resume(ctx)
	}
	if res == nil {
		res = &Result{}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("stopped by -timeout %v during %s: %w", timeout, *b.stage.Load(), err)
	}
	b.close()
	stopProgress()
	<-progDone

	res.Scenario = cfg.Scenario
	res.Nodes = cfg.URLs
	res.Params = cfg.params()
	b.mu.Lock()
	res.Errors, res.Disconnects, res.DisconnectsAt = b.errs, b.disconnects, b.disconnectsAt
	b.mu.Unlock()
	res.Elapsed = time.Since(start)
	if err != nil {
		res.Failure = err.Error()
	}
	return res, err
}

// params are the settings that shape the scenario, for the report.
func (cfg Config) params() map[string]any {
	p := map[string]any{"clients": cfg.Clients, "prefix": cfg.Prefix, "concurrency": cfg.Concurrency}
	switch cfg.Scenario {
	case "history", "resume":
		cfg.historyParams(p)
	case "fanout", "saturate":
		p["channels"] = cfg.Channels
		p["publishers"] = cfg.Publishers
		if cfg.Publishers == 0 {
			p["publishers"] = "auto"
		}
		fallthrough
	case "dm":
		p["rate"] = cfg.Rate
		p["duration"] = cfg.Duration.String()
		p["size"] = cfg.Size
		p["grace"] = cfg.Grace.String()
		p["rate_limit"] = cfg.RateLimit
		p["no_ids"] = cfg.NoIDs
	case "idle":
		p["duration"] = cfg.Duration.String()
		p["pids"] = cfg.PIDs
	}
	cfg.presenceParams(p)
	if cfg.Scenario == "saturate" {
		p["factor"] = cfg.Factor
		p["max_rate"] = cfg.MaxRate
		if cfg.MaxRate <= 0 {
			p["max_rate"] = "auto (rate x factor^8)"
		}
		p["p99_max"] = cfg.P99Max.String()
	}
	return p
}

// parseSources reads -source: addresses separated by commas, each one
// address or a range first-last of addresses that differ in the last byte
// only (enough for loopback addresses).
func parseSources(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		first, last, isRange := strings.Cut(f, "-")
		a, err := netip.ParseAddr(first)
		if err != nil {
			return nil, fmt.Errorf("not an address: %q", first)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		z, err := netip.ParseAddr(last)
		if err != nil {
			return nil, fmt.Errorf("not an address: %q", last)
		}
		if z.Less(a) || len(out) > 1<<16 {
			return nil, fmt.Errorf("not a range: %q", f)
		}
		for ; a.Compare(z) <= 0 && len(out) <= 1<<16; a = a.Next() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no address")
	}
	return out, nil
}
