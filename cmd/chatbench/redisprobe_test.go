package main

import (
	"context"
	"testing"
)

// TestRedisPhase: a phase's Redis cost is the difference of two samples,
// INFO's own calls left out, with each server's share.
func TestRedisPhase(t *testing.T) {
	before := map[string]serverSample{
		"a:1": {cpu: 1.0, calls: map[string]uint64{"evalsha": 10, "info": 3}},
		"b:2": {cpu: 2.0, calls: map[string]uint64{"evalsha": 5}},
	}
	after := map[string]serverSample{
		"a:1": {cpu: 1.5, calls: map[string]uint64{"evalsha": 40, "info": 4}},
		"b:2": {cpu: 2.5, calls: map[string]uint64{"evalsha": 15, "xrange": 50}},
	}
	r := redisPhase(before, after, 100)
	if r.CPU != 1 || r.Commands != 90 || r.CPUPerMsg != 10000 || r.CommandsPer != 0.9 {
		t.Fatalf("redisPhase = %+v", r)
	}
	if len(r.Servers) != 2 || r.Servers[0].Addr != "a:1" || r.Servers[0].Share != 0.333 || r.Servers[1].Commands != 60 {
		t.Fatalf("servers = %+v", r.Servers)
	}
	if redisPhase(nil, after, 1) != nil {
		t.Error("a missing sample gave a cost")
	}
}

// TestRedisProbe reads a real Redis: a PING between two samples is
// counted, and its CPU time does not go back.
func TestRedisProbe(t *testing.T) {
	url := startRedis(t)
	p, err := newRedisProbe(url)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx := context.Background()
	a, err := p.sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.client.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	b, err := p.sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("samples %v %v: want the same servers", a, b)
	}
	var pingsA, pingsB uint64
	for addr, s := range b {
		pingsA, pingsB = pingsA+a[addr].calls["ping"], pingsB+s.calls["ping"]
		if s.cpu < a[addr].cpu {
			t.Fatalf("the second sample %+v is before the first %+v", s, a[addr])
		}
	}
	if pingsB <= pingsA {
		t.Fatalf("a PING between the samples was not counted: %d, then %d", pingsA, pingsB)
	}
}
