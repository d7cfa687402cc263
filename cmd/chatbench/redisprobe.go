package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/pubsub"
)

// redisProbe reads what the nodes' Redis has done so far: each server's
// CPU time and commands (INFO cpu and commandstats), every primary's if
// it is a Redis Cluster. Whatever else uses that Redis counts too.
type redisProbe struct {
	client redis.UniversalClient
}

// newRedisProbe connects to the Redis of url: redis://, rediss:// or
// redis+cluster://host:port,.../ as chatd takes it.
func newRedisProbe(url string) (*redisProbe, error) {
	c, err := pubsub.NewClient(url, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	return &redisProbe{client: c}, nil
}

func (p *redisProbe) close() { p.client.Close() }

// serverSample is one server's totals so far.
type serverSample struct {
	cpu   float64           // seconds, system and user
	calls map[string]uint64 // by command
}

// sample reads every server, by address.
func (p *redisProbe) sample(ctx context.Context) (map[string]serverSample, error) {
	out := make(map[string]serverSample)
	var mu sync.Mutex
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "cpu", "commandstats").Result()
		if err != nil {
			return fmt.Errorf("redis INFO at %s: %w", c.Options().Addr, err)
		}
		mu.Lock()
		out[c.Options().Addr] = serverSample{cpu: parseCPU(info), calls: parseCommandStats(info)}
		mu.Unlock()
		return nil
	}
	switch c := p.client.(type) {
	case *redis.ClusterClient:
		if err := c.ForEachMaster(ctx, read); err != nil {
			return nil, err
		}
	case *redis.Client:
		if err := read(ctx, c); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("-redis: a %T cannot be read", c)
	}
	return out, nil
}

// parseCPU reads used_cpu_sys plus used_cpu_user from INFO.
func parseCPU(info string) float64 {
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}

// RedisPhase is what Redis did during a measured phase.
type RedisPhase struct {
	CPU         float64           `json:"cpu_s"`          // seconds, over every server
	CPUPerMsg   float64           `json:"cpu_us_per_msg"` // microseconds per message sent
	Commands    uint64            `json:"commands"`
	CommandsPer float64           `json:"commands_per_msg"`
	Servers     []RedisServer     `json:"servers,omitempty"` // a cluster's primaries
	ByCommand   map[string]uint64 `json:"by_command"`        // over every server
}

// RedisServer is one server's part of a phase.
type RedisServer struct {
	Addr     string  `json:"addr"`
	CPU      float64 `json:"cpu_s"`
	Commands uint64  `json:"commands"`
	Share    float64 `json:"share"` // of the commands, 0 to 1
}

// redisPhase compares two samples over a phase that sent msgs messages;
// nil if either is missing. INFO itself is left out of the commands.
func redisPhase(before, after map[string]serverSample, msgs uint64) *RedisPhase {
	if before == nil || after == nil {
		return nil
	}
	r := &RedisPhase{ByCommand: make(map[string]uint64)}
	for _, addr := range slices.Sorted(maps.Keys(after)) {
		a, b := after[addr], before[addr]
		s := RedisServer{Addr: addr, CPU: a.cpu - b.cpu}
		for k, v := range commandDelta(b.calls, a.calls) {
			if k != "info" {
				s.Commands += v
				r.ByCommand[k] += v
			}
		}
		r.CPU += s.CPU
		r.Commands += s.Commands
		r.Servers = append(r.Servers, s)
	}
	for i := range r.Servers {
		if r.Commands > 0 {
			r.Servers[i].Share = round3(float64(r.Servers[i].Commands) / float64(r.Commands))
		}
	}
	if len(r.Servers) == 1 {
		r.Servers = nil
	}
	if msgs > 0 {
		r.CPUPerMsg = round1(r.CPU / float64(msgs) * 1e6)
		r.CommandsPer = round1(float64(r.Commands) / float64(msgs))
	}
	r.CPU = round3(r.CPU)
	return r
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
