package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wirechat/chat/protocol"
)

// Config is one run's settings; main fills it from flags.
type Config struct {
	Scenario    string
	URLs        []string      // node base URLs; clients are spread over them round-robin
	Clients     int           // subscribers (fanout, saturate), users (dm), connections (idle, connect)
	Channels    int           // channels (fanout, saturate)
	Publishers  int           // publishers (fanout, saturate); 0: enough to stay under RateLimit
	Rate        float64       // messages per second over all publishers (the first step of saturate)
	Duration    time.Duration // publishing time (fanout, dm), hold time (idle), time per step (saturate)
	Size        int           // message text size in bytes
	NoIDs       bool          // send messages without request ids: no acks, refusals not matched to messages
	Grace       time.Duration // how long to wait for stragglers after publishing stops
	RateLimit   float64       // the server's CHAT_RATE_LIMIT, requests per second per user
	Concurrency int           // logins, dials and joins in flight at once
	PIDs        []int         // server processes whose RSS idle reports; none: no report
	Factor      float64       // saturate: rate multiplier per step
	MaxRate     float64       // saturate: highest rate tried
	P99Max      time.Duration // saturate: a step with a higher p99 is not good
	Prefix      string        // run prefix of usernames and channel names
	Sources     []netip.Addr  // local addresses to dial from, in turn; none: the system's choice
	Messages    int           // history: messages to fill the channel with
	Drop        float64       // resume: share of subscribers that drop and resume
	Outage      time.Duration // resume: how long a dropped subscriber stays away
	Progress    io.Writer     // progress lines; nil: none

	PresenceConfig // presence and members (presence.go, members.go)
}

// bench is the state of one run shared by its clients.
type bench struct {
	cfg   Config
	hc    *http.Client
	probe *redisProbe // the Redis of -redis, read around each measured phase; nil: none

	closing atomic.Bool // set while we close connections ourselves

	open  atomic.Int64
	hist  atomic.Pointer[Histogram] // latency of the current phase
	win   atomic.Pointer[Histogram] // latency since the last progress line
	sent  atomic.Uint64             // messages written, for progress
	stage atomic.Pointer[string]

	// Set by a scenario before its clients connect, read-only after.
	onEvent func(c *client, frame []byte)      // sees every event frame
	onFrame func(c *client, frame []byte) bool // sees other frames first; true: it handled the frame

	nextIdx    int    // owned by the scenario goroutine
	nextSource uint32 // owned by the scenario goroutine

	mu            sync.Mutex
	clients       []*client         // guarded by mu
	errs          map[string]uint64 // guarded by mu: error codes and write failures
	disconnects   map[string]uint64 // guarded by mu: connections the server ended, by close code
	disconnectsAt map[string]uint64 // guarded by mu: the same, by the stage they happened in
}

func newBench(cfg Config) *bench {
	b := &bench{
		cfg: cfg,
		hc: &http.Client{Transport: &http.Transport{
			MaxIdleConns:        cfg.Concurrency,
			MaxIdleConnsPerHost: cfg.Concurrency,
			IdleConnTimeout:     30 * time.Second,
		}},
		errs:          make(map[string]uint64),
		disconnects:   make(map[string]uint64),
		disconnectsAt: make(map[string]uint64),
	}
	b.hist.Store(new(Histogram))
	b.win.Store(new(Histogram))
	b.setStage("start")
	return b
}

func (b *bench) setStage(s string) { b.stage.Store(&s) }

// sampleRedis reads the Redis of -redis, or returns nil without it or if
// it cannot be read (the phase then reports no Redis cost).
func (b *bench) sampleRedis(ctx context.Context) map[string]serverSample {
	if b.probe == nil {
		return nil
	}
	s, err := b.probe.sample(ctx)
	if err != nil {
		b.noteError("redis-info")
		return nil
	}
	return s
}

// source is the local address client i dials from: the -source addresses
// in turn, or nil for the system's choice.
func (b *bench) source(i int) *net.TCPAddr {
	if len(b.cfg.Sources) == 0 {
		return nil
	}
	return &net.TCPAddr{IP: b.cfg.Sources[i%len(b.cfg.Sources)].AsSlice()}
}

func (b *bench) noteError(code string) {
	b.mu.Lock()
	b.errs[code]++
	b.mu.Unlock()
}

func (b *bench) noteDisconnect(err error) {
	code := "abnormal"
	if s := closeStatus(err); s != -1 {
		code = strconv.Itoa(s)
	}
	b.mu.Lock()
	b.disconnects[code]++
	b.disconnectsAt[*b.stage.Load()]++
	b.mu.Unlock()
}

// newClients makes n virtual users named <prefix>-<role><i>, continuing the
// round-robin over the nodes where the previous call stopped.
func (b *bench) newClients(role string, n int) []*client {
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = &client{
			b:       b,
			idx:     b.nextIdx,
			name:    b.cfg.Prefix + "-" + role + strconv.Itoa(i),
			node:    b.cfg.URLs[b.nextIdx%len(b.cfg.URLs)],
			streams: make(map[streamKey]*stream),
		}
		b.nextIdx++
	}
	b.mu.Lock()
	b.clients = append(b.clients, cs...)
	b.mu.Unlock()
	return cs
}

// parallel runs fn(0..n-1) with at most limit calls at once and returns
// the first error; after an error no new calls start.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func (b *bench) loginAll(ctx context.Context, cs []*client) error {
	b.setStage("login")
	return parallel(ctx, len(cs), b.cfg.Concurrency, func(ctx context.Context, i int) error {
		c := cs[i]
		var err error
		c.token, c.ident, err = login(ctx, b.hc, c.node, c.name)
		return err
	})
}

// connectAll dials every client and records each one's time to welcome in h
// (if not nil).
func (b *bench) connectAll(ctx context.Context, cs []*client, h *Histogram) error {
	b.setStage("connect")
	return parallel(ctx, len(cs), b.cfg.Concurrency, func(ctx context.Context, i int) error {
		d, err := cs[i].dial(ctx)
		if err == nil && h != nil {
			h.Record(d)
		}
		return err
	})
}

// createChannels creates each channel (one creator per channel, spread over
// cs so that nobody hits the rate limit); a channel that exists is fine.
func (b *bench) createChannels(ctx context.Context, names []string, cs []*client) error {
	b.setStage("create")
	return parallel(ctx, len(names), b.cfg.Concurrency, func(ctx context.Context, i int) error {
		c := cs[i%len(cs)]
		e, err := c.do(ctx, protocol.ActionCreate, names[i])
		if err != nil {
			return err
		}
		if e != nil && e.Code != protocol.CodeAlreadyExists {
			return fmt.Errorf("create %s: %s: %s", names[i], e.Code, e.Message)
		}
		return nil
	})
}

// joinAll makes every client join its channels and waits for every ack.
func (b *bench) joinAll(ctx context.Context, cs []*client, channelsOf func(*client) []string) error {
	b.setStage("join")
	return parallel(ctx, len(cs), b.cfg.Concurrency, func(ctx context.Context, i int) error {
		for _, ch := range channelsOf(cs[i]) {
			e, err := cs[i].do(ctx, protocol.ActionJoin, ch)
			if err != nil {
				return err
			}
			if e != nil {
				return fmt.Errorf("join %s as %s: %s: %s", ch, cs[i].name, e.Code, e.Message)
			}
		}
		return nil
	})
}

// settle waits until the join events of the set-up have stopped arriving
// (no event for quiet), or for at most limit, so that the measured phase
// does not pay for the set-up's backlog.
func (b *bench) settle(ctx context.Context, cs []*client, quiet, limit time.Duration) {
	b.setStage("settle")
	count := func() (n uint64) {
		for _, c := range cs {
			n += c.events.Load()
		}
		return n
	}
	deadline := time.Now().Add(limit)
	last, lastChange := count(), time.Now()
	for time.Now().Before(deadline) && time.Since(lastChange) < quiet {
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
		if n := count(); n != last {
			last, lastChange = n, time.Now()
		}
	}
}

// PhaseResult is the outcome of one measured phase.
type PhaseResult struct {
	Counts
	Rate         float64       `json:"rate"`             // messages per second asked for
	Publishers   int           `json:"publishers"`       // users that published
	Duration     time.Duration `json:"duration_ns"`      // publishing time
	Window       time.Duration `json:"window_ns"`        // from the first message written to the last one delivered
	MsgRate      float64       `json:"msg_per_s"`        // messages written per second of publishing
	DeliveryRate float64       `json:"deliveries_per_s"` // expected deliveries that arrived, per second of Window
	Latency      Latency       `json:"latency"`
	Complete     bool          `json:"complete"` // every expected delivery and every ack arrived within the grace period
	// Hops are the nodes' own times of each hop of a message over the
	// phase (hops.go); empty if a node does not expose them.
	Hops []HopStat `json:"hops,omitempty"`
	// GC is what the nodes' garbage collectors did over the phase; nil if
	// a node does not expose Go's runtime metrics.
	GC *GCStat `json:"gc,omitempty"`
	// Redis is what the Redis of -redis did over the phase; nil without it.
	Redis *RedisPhase `json:"redis,omitempty"`
}

// measure runs one phase: each publisher sends its share of rate messages
// per second for dur, round-robin over targetsOf(publisher); then, for at
// most the grace period, it waits for the deliveries and acks still in
// flight; then it counts what every receiver got against what it is owed.
// A receiver is owed every message sent to a target in receives(receiver)
// and, by the echo rule, every message it sent itself.
func (b *bench) measure(ctx context.Context, label string, receivers, pubs []*client,
	targetsOf func(*client) []string, receives func(*client) []string, rate float64, dur time.Duration) (PhaseResult, error) {
	hist := new(Histogram)
	b.hist.Store(hist)
	base := make([]uint64, len(receivers))
	for i, c := range receivers {
		c.resetStreams()
		base[i] = c.fresh.Load()
	}
	ackBase := make([]uint64, len(pubs))
	var all []*outStream
	for i, p := range pubs {
		var outs []*outStream
		for _, t := range targetsOf(p) {
			b.nextSource++
			outs = append(outs, &outStream{target: t, source: b.nextSource, sender: p})
		}
		p.out.Store(&outs)
		all = append(all, outs...)
		ackBase[i] = p.acked.Load()
	}

	nodesBefore := scrapeNodes(ctx, b.hc, b.cfg.URLs)
	redisBefore := b.sampleRedis(ctx)
	b.setStage(label)
	perPub := rate / float64(len(pubs))
	interval := time.Duration(float64(time.Second) / perPub)
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.publish(ctx, p, start.Add(interval*time.Duration(i)/time.Duration(len(pubs))), interval, end)
		}()
	}
	wg.Wait()
	pubEnd := time.Now()

	// Grace: wait until every ack or refusal and every expected delivery is in.
	b.setStage(label + " grace")
	byTarget := make(map[string][]*outStream)
	for _, s := range all {
		byTarget[s.target] = append(byTarget[s.target], s)
	}
	isPub := make(map[*client]bool, len(pubs))
	for _, p := range pubs {
		isPub[p] = true
	}
	owedOf := func(c *client) map[streamKey]uint64 {
		owed := make(map[streamKey]uint64)
		add := func(s *outStream) { owed[streamKey{s.target, s.source}] = s.sent.Load() - s.refused.Load() }
		for _, t := range receives(c) {
			for _, s := range byTarget[t] {
				add(s)
			}
		}
		if isPub[c] {
			for _, s := range *c.out.Load() {
				add(s) // the echo of its own messages
			}
		}
		return owed
	}
	// How many receivers are owed each stream, to tell when all is in.
	owners := make(map[*outStream]uint64)
	for _, c := range receivers {
		for k := range owedOf(c) {
			for _, s := range byTarget[k.target] {
				if s.source == k.source {
					owners[s]++
				}
			}
		}
	}
	complete := false
	graceEnd := pubEnd.Add(b.cfg.Grace)
	for {
		var expected, got, sent, answered uint64
		for s, n := range owners {
			expected += n * (s.sent.Load() - s.refused.Load())
		}
		for i, c := range receivers {
			got += c.fresh.Load() - base[i]
		}
		for i, p := range pubs {
			answered += p.acked.Load() - ackBase[i]
			for _, s := range *p.out.Load() {
				sent += s.sent.Load()
				answered += s.refused.Load()
			}
		}
		if got >= expected && (answered >= sent || b.cfg.NoIDs) {
			complete = true
			break
		}
		if !time.Now().Before(graceEnd) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	res := PhaseResult{Rate: rate, Publishers: len(pubs), Duration: pubEnd.Sub(start), Complete: complete}
	nodesAfter := scrapeNodes(ctx, b.hc, b.cfg.URLs)
	if nodesBefore != nil && nodesAfter != nil {
		res.Hops = hopStats(nodesBefore.hops, nodesAfter.hops)
	}
	redisAfter := b.sampleRedis(ctx)
	for _, c := range receivers {
		owed := owedOf(c)
		c.mu.Lock()
		res.Counts.Add(tally(c.streams, owed))
		c.mu.Unlock()
	}
	for i, p := range pubs {
		res.Acked += p.acked.Load() - ackBase[i]
		for _, s := range *p.out.Load() {
			res.Sent += s.sent.Load()
			res.Refused += s.refused.Load()
		}
	}
	res.Window = res.Duration
	for _, c := range receivers {
		if at := time.Unix(0, c.lastFresh.Load()); at.Sub(start) > res.Window {
			res.Window = at.Sub(start)
		}
	}
	res.MsgRate = round1(float64(res.Sent) / res.Duration.Seconds())
	res.DeliveryRate = round1(float64(res.Delivered) / res.Window.Seconds())
	res.Latency = hist.Summary()
	res.Redis = redisPhase(redisBefore, redisAfter, res.Sent)
	res.GC = gcStat(nodesBefore, nodesAfter, res.Sent)
	return res, ctx.Err()
}

// publish sends p's messages on schedule: the k-th at first+k*interval,
// until end, rotating over p's streams. A publisher that falls behind sends
// as fast as it can until it is back on schedule (an open-loop load).
func (b *bench) publish(ctx context.Context, p *client, first time.Time, interval time.Duration, end time.Time) {
	outs := *p.out.Load()
	if len(outs) == 0 {
		return
	}
	for k := 0; ; k++ {
		due := first.Add(interval * time.Duration(k))
		if !due.Before(end) || ctx.Err() != nil {
			return
		}
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		j := k % len(outs)
		s := outs[j]
		if err := p.send(ctx, j, s, s.sent.Load()+1, b.cfg.Size); err != nil {
			if ctx.Err() == nil {
				b.noteError("write_failed")
			}
			return
		}
		s.sent.Add(1)
		b.sent.Add(1)
	}
}

// close ends every connection with a normal close, in parallel, waiting at
// most a few seconds for the server's answers.
func (b *bench) close() {
	b.setStage("close")
	if b.probe != nil {
		b.probe.close()
	}
	b.closing.Store(true)
	b.mu.Lock()
	cs := slices.Clone(b.clients)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = parallel(ctx, len(cs), 256, func(ctx context.Context, i int) error {
		if c := cs[i]; c.conn != nil {
			c.conn.Close(closeNormal, "benchmark done")
		}
		return nil
	})
	for _, c := range cs {
		if c.conn != nil {
			c.conn.CloseNow() // whoever did not answer in time
		}
	}
	for _, c := range cs {
		if c.done != nil {
			<-c.done
		}
	}
}

// progress prints one line a second to w until ctx ends.
func (b *bench) progress(ctx context.Context, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	var lastSent, lastDel uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		var del, events uint64
		for _, c := range b.clients {
			del += c.delivered.Load()
			events += c.events.Load()
		}
		errs, disc := sum(b.errs), sum(b.disconnects)
		b.mu.Unlock()
		sent := b.sent.Load()
		// The window's p99 and max tell a steady tail from a stall.
		win := b.win.Swap(new(Histogram))
		lat := ""
		if win.Count() > 0 {
			lat = fmt.Sprintf("  p99 %.1f ms  max %.1f ms", ms(win.Quantile(0.99)), ms(win.Max()))
		}
		fmt.Fprintf(w, "chatbench %s %5.0fs %-14s conns %d  sent %d (%d/s)  delivered %d (%d/s)%s  events %d  errors %d  disconnects %d\n",
			b.cfg.Scenario, time.Since(start).Seconds(), *b.stage.Load(), b.open.Load(),
			sent, sent-lastSent, del, del-lastDel, lat, events, errs, disc)
		lastSent, lastDel = sent, del
	}
}

func sum(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

func round1(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*10) / 10
}
