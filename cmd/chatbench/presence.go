package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PresenceConfig is the part of Config that only presence and members use.
type PresenceConfig struct {
	Waves        int           // presence: waves of disconnects and reconnects
	Wave         float64       // presence: share of the users that leave in each wave
	OfflineAfter time.Duration // presence: the server's grace before offline (spec 6: 15 s)
	PresenceMax  int           // presence: the server's CHAT_PRESENCE_MAX_MEMBERS
	RedisURL     string        // presence: the Redis whose INFO commandstats is read; empty: none
	Requesters   int           // members: users that list the channel
	Limit        int           // members: page size
}

// addPresenceFlags registers the flags of presence and members.
func addPresenceFlags(fs *flag.FlagSet, pc *PresenceConfig) {
	fs.IntVar(&pc.Waves, "waves", 3, "presence: waves of disconnects and reconnects")
	fs.Float64Var(&pc.Wave, "wave", 0.2, "presence: share of the users that disconnect (and reconnect) in each wave")
	fs.DurationVar(&pc.OfflineAfter, "offline-after", 15*time.Second, "presence: the server's grace before a user is offline (spec 6: 15 s)")
	fs.IntVar(&pc.PresenceMax, "presence-max", 1000, "presence: the server's CHAT_PRESENCE_MAX_MEMBERS (larger channels are owed no events)")
	fs.StringVar(&pc.RedisURL, "redis", "", "the nodes' Redis (redis://host:port, or redis+cluster://host:port,... for every primary): presence reports Redis commands per connect; "+
		"fanout, dm, saturate and resume report Redis's CPU and commands per message over each measured phase, and each primary's share; empty: not reported")
	fs.IntVar(&pc.Requesters, "requesters", 10, "members: users that list the channel's members over and over")
	fs.IntVar(&pc.Limit, "limit", 0, "page size: of a members request (members: 1 to 1000; 0: 1000), of a history request (history: 1 to 200; 0: 100)")
}

// checkPresence rejects presence and members settings that cannot run.
func (cfg *Config) checkPresence() error {
	switch cfg.Scenario {
	case "presence":
		switch {
		case cfg.Channels < 1:
			return errors.New("-channels must be at least 1")
		case cfg.Waves < 1:
			return errors.New("-waves must be at least 1")
		case cfg.Wave <= 0 || cfg.Wave >= 1:
			return errors.New("-wave must be above 0 and below 1 (the rest observe)")
		case int(cfg.Wave*float64(cfg.Clients)) < 1:
			return errors.New("-wave x -clients must be at least one user")
		case cfg.OfflineAfter < 0:
			return errors.New("-offline-after must not be negative")
		case cfg.PresenceMax < 1:
			return errors.New("-presence-max must be at least 1")
		}
	case "members":
		if cfg.Limit == 0 {
			cfg.Limit = 1000
		}
		switch {
		case cfg.Requesters < 1:
			return errors.New("-requesters must be at least 1")
		case cfg.Limit < 1 || cfg.Limit > 1000:
			return errors.New("-limit must be 1 to 1000")
		}
	}
	return nil
}

// presenceParams adds the settings of presence and members to a report.
func (cfg Config) presenceParams(p map[string]any) {
	switch cfg.Scenario {
	case "presence":
		p["channels"] = cfg.Channels
		p["waves"] = cfg.Waves
		p["wave"] = cfg.Wave
		p["offline_after"] = cfg.OfflineAfter.String()
		p["presence_max"] = cfg.PresenceMax
		p["grace"] = cfg.Grace.String()
		p["redis"] = cfg.RedisURL != ""
	case "members":
		p["requesters"] = cfg.Requesters
		p["limit"] = cfg.Limit
		p["duration"] = cfg.Duration.String()
		p["rate_limit"] = cfg.RateLimit
	}
}

// PresenceResult is the presence scenario's outcome.
type PresenceResult struct {
	Users        int           `json:"users"`
	Channels     int           `json:"channels"`
	Memberships  int           `json:"memberships"`
	Waves        int           `json:"waves"`
	PerWave      int           `json:"users_per_wave"`
	Observers    int           `json:"observers"` // users never in a wave
	Frames       uint64        `json:"presence_frames"`
	FramesPerSec float64       `json:"presence_frames_per_s"` // Frames over the waves' wall time
	PeakPerSec   uint64        `json:"presence_frames_peak_per_s"`
	Wall         time.Duration `json:"wall_ns"` // from the first wave's start to the last wave's end

	ExpectedOffline uint64  `json:"expected_offline"`
	ExpectedOnline  uint64  `json:"expected_online"`
	MissingOffline  uint64  `json:"missing_offline"`
	MissingOnline   uint64  `json:"missing_online"`
	Unexpected      uint64  `json:"unexpected"`           // presence events at a connected observer that it was not owed (or got twice)
	Offline         Latency `json:"offline"`              // close to receipt; includes the server's grace
	OfflineBeyond   Latency `json:"offline_beyond_grace"` // the same minus -offline-after (0 if less): the histogram's 1.6% of 15 s would hide it
	Online          Latency `json:"online"`               // dial to receipt

	Redis *RedisCost `json:"redis,omitempty"`
}

// RedisCost is what the Redis of -redis executed while the waves ran
// (INFO commandstats deltas, the INFO calls themselves left out). Every
// other client of that Redis counts too: the nodes' own background work
// (sweeps, heartbeats) is in it.
type RedisCost struct {
	Reconnects         int               `json:"reconnects"`
	ReconnectCommands  uint64            `json:"reconnect_commands"` // from the first dial of a wave to its last online event
	PerReconnect       float64           `json:"commands_per_reconnect"`
	Disconnects        int               `json:"disconnects"`
	DisconnectCommands uint64            `json:"disconnect_commands"` // from the first close of a wave to its last offline event (the grace included)
	PerDisconnect      float64           `json:"commands_per_disconnect"`
	ByCommand          map[string]uint64 `json:"reconnect_by_command"` // ReconnectCommands by command
}

// presKey is one presence event an observer is owed.
type presKey struct {
	online bool
	target string
	user   string
}

// watch is what one user is owed of presence events.
type watch struct {
	inWave    atomic.Bool  // away in the current wave: owed nothing
	changedAt atomic.Int64 // when this user last closed or dialled, Unix nanoseconds
	mu        sync.Mutex
	owed      map[presKey]*client // guarded by mu: events not received yet, by the user whose change it is
}

// presenceRun is the presence scenario's state shared with the read loops.
type presenceRun struct {
	watch      []*watch        // by client index, fixed before the first dial
	start      time.Time       // the scenario's start
	frames     atomic.Uint64   // presence frames received
	perSec     []atomic.Uint64 // the same by second since start, for the peak
	unexpected atomic.Uint64
	online     *Histogram
	offline    *Histogram
	beyond     *Histogram    // offline minus grace
	grace      time.Duration // the server's grace before offline
}

var (
	keyEvent    = []byte(`"event":"`)
	keyUsername = []byte(`"username":"`)
)

// onEvent counts a presence event and settles what it was owed.
func (p *presenceRun) onEvent(c *client, frame []byte) {
	ev := stringAfter(frame, keyEvent)
	online := string(ev) == "online"
	if !online && string(ev) != "offline" {
		return
	}
	now := time.Now()
	p.frames.Add(1)
	if s := int(now.Sub(p.start) / time.Second); s >= 0 && s < len(p.perSec) {
		p.perSec[s].Add(1)
	}
	w := p.watch[c.idx]
	k := presKey{online, string(stringAfter(frame, keyTarget)), strings.ToLower(string(stringAfter(frame, keyUsername)))}
	w.mu.Lock()
	u, ok := w.owed[k]
	delete(w.owed, k)
	w.mu.Unlock()
	if !ok {
		if !w.inWave.Load() {
			p.unexpected.Add(1)
		}
		return
	}
	lat := time.Duration(now.UnixNano() - p.watch[u.idx].changedAt.Load())
	if online {
		p.online.Record(lat)
	} else {
		p.offline.Record(lat)
		p.beyond.Record(max(lat-p.grace, 0))
	}
}

// owed counts the events not received yet.
func (p *presenceRun) owed() (n uint64) {
	for _, w := range p.watch {
		w.mu.Lock()
		n += uint64(len(w.owed))
		w.mu.Unlock()
	}
	return n
}

// dropOwed forgets what is still owed and returns how much that was.
func (p *presenceRun) dropOwed() uint64 {
	var n uint64
	for _, w := range p.watch {
		w.mu.Lock()
		n += uint64(len(w.owed))
		clear(w.owed)
		w.mu.Unlock()
	}
	return n
}

// presence: Clients users spread over Channels channels (user i is in
// 1 + i%3 of them, at most Channels: i%Channels and the next ones), all
// connected. Then Waves waves: a Wave share of the users (a different one
// each wave, while there are users left) closes its websockets; every
// connected member of their channels is owed an offline event per user and
// channel, after the server's grace; once those are in (or the grace plus
// -grace has passed), the same users connect again and the same members
// are owed an online event each. Channels with more than PresenceMax
// members are owed nothing.
func (b *bench) presence(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	cs := b.newClients("u", cfg.Clients)
	channels := make([]string, cfg.Channels)
	for i := range channels {
		channels[i] = "#" + cfg.Prefix + "-" + strconv.Itoa(i)
	}
	joined := make(map[*client][]string, len(cs))
	members := make(map[string][]*client, len(channels))
	res := &PresenceResult{Users: len(cs), Channels: len(channels), Waves: cfg.Waves,
		PerWave: int(cfg.Wave * float64(len(cs)))}
	for i, c := range cs {
		for j := range min(1+i%3, len(channels)) {
			ch := channels[(i+j)%len(channels)]
			joined[c] = append(joined[c], ch)
			members[ch] = append(members[ch], c)
			res.Memberships++
		}
	}
	// start and perSec are set before the first dial: the read loops read them.
	p := &presenceRun{online: new(Histogram), offline: new(Histogram), beyond: new(Histogram),
		grace: cfg.OfflineAfter, start: time.Now()}
	if d, ok := ctx.Deadline(); ok {
		p.perSec = make([]atomic.Uint64, int(time.Until(d)/time.Second)+2)
	}
	for range cs {
		p.watch = append(p.watch, &watch{owed: make(map[presKey]*client)})
	}
	b.onEvent = p.onEvent
	out := &Result{Presence: res}

	if err := b.loginAll(ctx, cs); err != nil {
		return out, err
	}
	if err := b.connectAll(ctx, cs, nil); err != nil {
		return out, err
	}
	if err := b.createChannels(ctx, channels, cs); err != nil {
		return out, err
	}
	if err := b.joinAll(ctx, cs, func(c *client) []string { return joined[c] }); err != nil {
		return out, err
	}
	b.settle(ctx, cs, 500*time.Millisecond, 10*time.Second)

	var rc *redisCounter
	if cfg.RedisURL != "" {
		var err error
		if rc, err = newRedisCounter(cfg.RedisURL); err != nil {
			return out, err
		}
		defer rc.close()
		res.Redis = &RedisCost{ByCommand: make(map[string]uint64)}
	}

	// The waves take disjoint slices of one shuffle while there are users
	// left, then start over.
	order := rand.Perm(len(cs))
	away := make([]bool, len(cs))
	next := 0
	wavesStart := time.Now()
	framesBefore := p.frames.Load() // none by the spec: fresh users have no channels when they connect
	var err error
	for w := 1; w <= cfg.Waves && err == nil; w++ {
		if next+res.PerWave > len(order) {
			next = 0
		}
		wave := make([]*client, res.PerWave)
		for i := range wave {
			wave[i] = cs[order[next+i]]
			away[wave[i].idx] = true
			p.watch[wave[i].idx].inWave.Store(true)
		}
		next += res.PerWave
		err = b.presenceWave(ctx, p, rc, res, w, wave, joined, members)
		for _, c := range wave {
			p.watch[c.idx].inWave.Store(false)
		}
	}
	res.Wall = time.Since(wavesStart)
	for _, a := range away {
		if !a {
			res.Observers++
		}
	}
	res.Frames = p.frames.Load() - framesBefore
	res.FramesPerSec = round1(float64(res.Frames) / res.Wall.Seconds())
	for i := range p.perSec {
		res.PeakPerSec = max(res.PeakPerSec, p.perSec[i].Load())
	}
	res.Unexpected = p.unexpected.Load()
	res.Online, res.Offline, res.OfflineBeyond = p.online.Summary(), p.offline.Summary(), p.beyond.Summary()
	if r := res.Redis; r != nil {
		r.PerReconnect = round1(float64(r.ReconnectCommands) / float64(max(r.Reconnects, 1)))
		r.PerDisconnect = round1(float64(r.DisconnectCommands) / float64(max(r.Disconnects, 1)))
	}
	if err == nil && res.MissingOffline+res.MissingOnline > 0 {
		err = fmt.Errorf("%d offline and %d online events never arrived", res.MissingOffline, res.MissingOnline)
	}
	return out, err
}

// presenceWave runs one wave: wave's users close, their channels' connected
// members are owed offline events; then they dial again and are owed
// online events.
func (b *bench) presenceWave(ctx context.Context, p *presenceRun, rc *redisCounter, res *PresenceResult, n int,
	wave []*client, joined map[*client][]string, members map[string][]*client) error {
	cfg := b.cfg
	owe := func(online bool) (total uint64) {
		for _, u := range wave {
			name := strings.ToLower(u.name)
			for _, ch := range joined[u] {
				if len(members[ch]) > cfg.PresenceMax {
					continue
				}
				k := presKey{online, strings.ToLower(ch), name}
				for _, o := range members[ch] {
					w := p.watch[o.idx]
					if o == u || w.inWave.Load() {
						continue
					}
					w.mu.Lock()
					w.owed[k] = u
					w.mu.Unlock()
					total++
				}
			}
		}
		return total
	}
	// wait polls until nothing is owed or until the deadline.
	wait := func(deadline time.Time) error {
		for p.owed() > 0 && time.Now().Before(deadline) {
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
		return nil
	}
	snap := func() (map[string]uint64, error) {
		if rc == nil {
			return nil, nil
		}
		return rc.snapshot(ctx)
	}

	// Offline.
	res.ExpectedOffline += owe(false)
	before, err := snap()
	if err != nil {
		return err
	}
	b.setStage(fmt.Sprintf("wave %d close", n))
	err = parallel(ctx, len(wave), b.cfg.Concurrency, func(ctx context.Context, i int) error {
		c := wave[i]
		c.quitting.Store(true)
		p.watch[c.idx].changedAt.Store(time.Now().UnixNano())
		c.conn.Close(closeNormal, "presence wave")
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		return err
	}
	b.setStage(fmt.Sprintf("wave %d offline", n))
	// The server sweeps once a second and gathers changes for a quarter of
	// a second before it tells them.
	if err := wait(time.Now().Add(cfg.OfflineAfter + 2*time.Second + cfg.Grace)); err != nil {
		return err
	}
	res.MissingOffline += p.dropOwed()
	if rc != nil {
		after, err := snap()
		if err != nil {
			return err
		}
		d := commandDelta(before, after)
		res.Redis.Disconnects += len(wave)
		for _, v := range d {
			res.Redis.DisconnectCommands += v
		}
	}

	// Online.
	res.ExpectedOnline += owe(true)
	if before, err = snap(); err != nil {
		return err
	}
	b.setStage(fmt.Sprintf("wave %d dial", n))
	err = parallel(ctx, len(wave), b.cfg.Concurrency, func(ctx context.Context, i int) error {
		c := wave[i]
		c.quitting.Store(false)
		p.watch[c.idx].changedAt.Store(time.Now().UnixNano())
		_, err := c.dial(ctx)
		return err
	})
	if err != nil {
		return err
	}
	b.setStage(fmt.Sprintf("wave %d online", n))
	if err := wait(time.Now().Add(cfg.Grace)); err != nil {
		return err
	}
	res.MissingOnline += p.dropOwed()
	if rc != nil {
		after, err := snap()
		if err != nil {
			return err
		}
		res.Redis.Reconnects += len(wave)
		for k, v := range commandDelta(before, after) {
			res.Redis.ReconnectCommands += v
			res.Redis.ByCommand[k] += v
		}
	}
	return nil
}

// parseCommandStats reads the calls of each command from INFO commandstats
// ("cmdstat_get:calls=12,usec=..."), leaving out INFO itself.
func parseCommandStats(info string) map[string]uint64 {
	m := make(map[string]uint64)
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		if n, err := strconv.ParseUint(calls, 10, 64); err == nil {
			m[name] = n
		}
	}
	return m
}

// commandDelta is after - before per command, without the zeros.
func commandDelta(before, after map[string]uint64) map[string]uint64 {
	d := make(map[string]uint64)
	for k, v := range after {
		if v > before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// presenceRows writes a presence result for people.
func presenceRows(row func(string, any), r *PresenceResult) {
	row("users / channels / memberships", fmt.Sprintf("%d / %d / %d", r.Users, r.Channels, r.Memberships))
	row("waves x users", fmt.Sprintf("%d x %d (observers, never away: %d)", r.Waves, r.PerWave, r.Observers))
	row("presence frames", fmt.Sprintf("%d (%.1f/s over %v; peak %d in one second)", r.Frames, r.FramesPerSec,
		r.Wall.Round(time.Millisecond), r.PeakPerSec))
	row("offline owed / MISSING", fmt.Sprintf("%d / %d", r.ExpectedOffline, r.MissingOffline))
	row("online owed / MISSING", fmt.Sprintf("%d / %d", r.ExpectedOnline, r.MissingOnline))
	row("unexpected", r.Unexpected)
	latencyRows(row, "offline (close to event, grace included)", r.Offline)
	latencyRows(row, "  of which beyond -offline-after", r.OfflineBeyond)
	latencyRows(row, "online (dial to event)", r.Online)
	if c := r.Redis; c != nil {
		row("redis commands per reconnect", fmt.Sprintf("%.1f (%d over %d)", c.PerReconnect, c.ReconnectCommands, c.Reconnects))
		row("redis commands per disconnect", fmt.Sprintf("%.1f (%d over %d, grace included)", c.PerDisconnect, c.DisconnectCommands, c.Disconnects))
		row("  reconnect by command", counts(c.ByCommand))
	}
}

// redisCounter reads the commands the Redis of -redis has run, summed
// over its primaries if it is a cluster (redisprobe.go).
type redisCounter struct{ probe *redisProbe }

func newRedisCounter(url string) (*redisCounter, error) {
	p, err := newRedisProbe(url)
	if err != nil {
		return nil, err
	}
	return &redisCounter{probe: p}, nil
}

func (r *redisCounter) snapshot(ctx context.Context) (map[string]uint64, error) {
	sample, err := r.probe.sample(ctx)
	if err != nil {
		return nil, err
	}
	total := make(map[string]uint64)
	for _, srv := range sample {
		for k, v := range srv.calls {
			total[k] += v
		}
	}
	return total, nil
}

func (r *redisCounter) close() { r.probe.close() }
