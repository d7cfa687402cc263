package main

import (
	"context"
	"fmt"
)

// dm: Clients users in pairs, each sending private messages to its partner,
// Rate messages per second in all, for Duration. Every message is owed to
// the recipient and, as its echo, to the sender.
func (b *bench) dm(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	if cfg.Clients < 2 || cfg.Clients%2 != 0 {
		return nil, fmt.Errorf("dm needs an even -clients >= 2")
	}
	if per := cfg.Rate / float64(cfg.Clients); per > cfg.RateLimit {
		return nil, fmt.Errorf("%.1f messages/s per user is over the server's rate limit of %g/s: "+
			"add users (-clients), or raise CHAT_RATE_LIMIT on the server and -rate-limit here", per, cfg.RateLimit)
	}
	users := b.newClients("d", cfg.Clients)
	partner := make(map[*client]*client, len(users))
	for i := 0; i < len(users); i += 2 {
		partner[users[i]], partner[users[i+1]] = users[i+1], users[i]
	}
	if err := b.loginAll(ctx, users); err != nil {
		return nil, err
	}
	if err := b.connectAll(ctx, users, nil); err != nil {
		return nil, err
	}
	to := func(c *client) []string { return []string{"@" + partner[c].name} }
	self := func(c *client) []string { return []string{"@" + c.name} }
	ph, err := b.measure(ctx, "publish", users, users, to, self, cfg.Rate, cfg.Duration)
	return &Result{Phase: &ph}, err
}
