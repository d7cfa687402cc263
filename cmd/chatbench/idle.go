package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// idle: Clients connections that send nothing, held for Duration. With
// PIDs it reads the servers' resident memory before the connections open
// (after the logins) and after they are all up, and reports the growth per
// connection: the sum over every process given, divided by every
// connection, so give the pid of every node the clients are spread over.
func (b *bench) idle(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	cs := b.newClients("i", cfg.Clients)
	if err := b.loginAll(ctx, cs); err != nil {
		return nil, err
	}
	res := &Result{Idle: &IdleResult{Connections: len(cs), Hold: cfg.Duration}}
	if len(cfg.PIDs) > 0 {
		kb, err := rssKiB(cfg.PIDs)
		if err != nil {
			return nil, err
		}
		res.Idle.RSSBeforeKiB = kb
	}
	// The connections are timed as the connect scenario times them: a
	// connect at this scale is the measure of a node's 100,000 (issue 21).
	welcome := new(Histogram)
	start := time.Now()
	if err := b.connectAll(ctx, cs, welcome); err != nil {
		return nil, err
	}
	wall := time.Since(start)
	res.Connect = &ConnectResult{Connections: len(cs), Wall: wall,
		PerSecond: round1(float64(len(cs)) / wall.Seconds()), Welcome: welcome.Summary()}
	// Let the server finish what the connections started (welcome writes,
	// join bookkeeping) before reading its memory.
	b.setStage("hold")
	if err := sleep(ctx, min(time.Second, cfg.Duration)); err != nil {
		return nil, err
	}
	if len(cfg.PIDs) > 0 {
		kb, err := rssKiB(cfg.PIDs)
		if err != nil {
			return nil, err
		}
		res.Idle.RSSAfterKiB = kb
		res.Idle.RSSPerConnKiB = round1(float64(kb-res.Idle.RSSBeforeKiB) / float64(len(cs)))
	}
	if err := sleep(ctx, cfg.Duration-min(time.Second, cfg.Duration)); err != nil {
		return nil, err
	}
	res.Idle.Open = int(b.open.Load())
	return res, nil
}

// rssKiB sums VmRSS of processes, from /proc.
func rssKiB(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		kb, err := vmRSS(pid)
		if err != nil {
			return 0, err
		}
		sum += kb
	}
	return sum, nil
}

// vmRSS reads VmRSS of a process from /proc.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("server memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("server memory: VmRSS %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("server memory: no VmRSS in /proc/%d/status", pid)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
