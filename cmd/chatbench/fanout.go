package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
)

// rateHeadroom is the share of the server's per-user rate limit that one
// publisher uses when chatbench picks the number of publishers itself.
const rateHeadroom = 0.9

// publishersFor returns how many publishers carry rate messages per second:
// the configured number, or enough to keep each under the rate limit.
func publishersFor(cfg Config, rate float64) (int, error) {
	if cfg.Publishers > 0 {
		if per := rate / float64(cfg.Publishers); per > cfg.RateLimit {
			return 0, fmt.Errorf("%.1f messages/s per publisher is over the server's rate limit of %g/s per user: "+
				"add publishers (-publishers), or raise CHAT_RATE_LIMIT on the server and -rate-limit here", per, cfg.RateLimit)
		}
		return cfg.Publishers, nil
	}
	return max(1, int(math.Ceil(rate/(cfg.RateLimit*rateHeadroom)))), nil
}

// channelGroup is the set-up of fanout and saturate: subscribers spread
// round-robin over the channels, publishers that are members of the
// channels they publish to.
type channelGroup struct {
	subs, pubs []*client
	channels   []string
	joined     map[*client][]string
}

func (g *channelGroup) receivers() []*client {
	return append(g.subs[:len(g.subs):len(g.subs)], g.pubs...)
}
func (g *channelGroup) of(c *client) []string { return g.joined[c] }

// setupChannels logs in, connects and joins the subscribers and publishers
// of a fanout, and waits for the join events to settle.
func (b *bench) setupChannels(ctx context.Context, publishers int) (*channelGroup, error) {
	cfg := b.cfg
	if cfg.Clients < 1 || cfg.Channels < 1 {
		return nil, fmt.Errorf("%s needs -clients >= 1 and -channels >= 1", cfg.Scenario)
	}
	g := &channelGroup{
		subs:   b.newClients("s", cfg.Clients),
		pubs:   b.newClients("p", publishers),
		joined: make(map[*client][]string),
	}
	for i := range cfg.Channels {
		g.channels = append(g.channels, "#"+cfg.Prefix+"-"+strconv.Itoa(i))
	}
	for i, s := range g.subs {
		g.joined[s] = []string{g.channels[i%len(g.channels)]}
	}
	for p, c := range g.pubs {
		if len(g.pubs) >= len(g.channels) {
			g.joined[c] = []string{g.channels[p%len(g.channels)]}
			continue
		}
		for ch := p; ch < len(g.channels); ch += len(g.pubs) {
			g.joined[c] = append(g.joined[c], g.channels[ch])
		}
	}
	all := g.receivers()
	if err := b.loginAll(ctx, all); err != nil {
		return nil, err
	}
	if err := b.connectAll(ctx, all, nil); err != nil {
		return nil, err
	}
	if err := b.createChannels(ctx, g.channels, all); err != nil {
		return nil, err
	}
	if err := b.joinAll(ctx, all, g.of); err != nil {
		return nil, err
	}
	b.settle(ctx, all, 500*time.Millisecond, 10*time.Second)
	return g, nil
}

// fanout: Clients subscribers in Channels channels, publishers sending Rate
// messages per second in all for Duration.
func (b *bench) fanout(ctx context.Context) (*Result, error) {
	p, err := publishersFor(b.cfg, b.cfg.Rate)
	if err != nil {
		return nil, err
	}
	g, err := b.setupChannels(ctx, p)
	if err != nil {
		return nil, err
	}
	ph, err := b.measure(ctx, "publish", g.receivers(), g.pubs, g.of, g.of, b.cfg.Rate, b.cfg.Duration)
	return &Result{Phase: &ph}, err
}

// saturate: the fanout set-up, then steps of Duration at a rate that grows
// by Factor from Rate to at most MaxRate, until a step loses a message,
// duplicates one, does not complete within the grace period, or has a p99
// over P99Max. It reports every step and the last good one.
func (b *bench) saturate(ctx context.Context, deadline time.Time) (*Result, error) {
	cfg := b.cfg
	if cfg.Factor <= 1 {
		return nil, fmt.Errorf("saturate needs -factor > 1")
	}
	maxRate := cfg.MaxRate
	if maxRate <= 0 {
		maxRate = cfg.Rate * math.Pow(cfg.Factor, 8)
	}
	p, err := publishersFor(cfg, maxRate)
	if err != nil {
		return nil, err
	}
	g, err := b.setupChannels(ctx, p)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for step, rate := 1, cfg.Rate; rate <= maxRate*1.0001; step, rate = step+1, rate*cfg.Factor {
		if time.Until(deadline) < cfg.Duration+cfg.Grace+5*time.Second {
			res.Note = "stopped early: the next step would not fit in -timeout"
			break
		}
		ph, err := b.measure(ctx, "step "+strconv.Itoa(step), g.receivers(), g.pubs, g.of, g.of, rate, cfg.Duration)
		res.Steps = append(res.Steps, ph)
		if err != nil {
			return res, err
		}
		if !good(ph, cfg.P99Max) {
			return res, nil
		}
		res.LastGood = &res.Steps[len(res.Steps)-1]
	}
	return res, nil
}

// good says whether a step kept up: everything delivered once, in time.
func good(ph PhaseResult, p99Max time.Duration) bool {
	return ph.Complete && ph.Lost == 0 && ph.Duplicated == 0 && ph.Refused == 0 &&
		ph.Latency.P99 <= float64(p99Max)/float64(time.Millisecond)
}
