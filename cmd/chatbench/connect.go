package main

import (
	"context"
	"time"
)

// connect: Clients users, logged in first, then connected as fast as
// Concurrency dials in flight allow. It reports connections per second
// (from the first dial to the last welcome) and the time from dial to
// welcome of each connection.
func (b *bench) connect(ctx context.Context) (*Result, error) {
	cs := b.newClients("c", b.cfg.Clients)
	if err := b.loginAll(ctx, cs); err != nil {
		return nil, err
	}
	var h Histogram
	start := time.Now()
	err := b.connectAll(ctx, cs, &h)
	wall := time.Since(start)
	res := &Result{Connect: &ConnectResult{
		Connections: int(h.Count()),
		Wall:        wall,
		PerSecond:   round1(float64(h.Count()) / wall.Seconds()),
		Welcome:     h.Summary(),
	}}
	return res, err
}
