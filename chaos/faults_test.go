package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The kinds of fault.
const (
	faultKill      = "kill"      // SIGKILL a node; started again later
	faultDrain     = "drain"     // SIGTERM a node: 1001 to its clients; started again once it exited
	faultRedis     = "redis"     // SIGKILL Redis; restarted later with its append-only file
	faultPubsub    = "pubsub"    // CLIENT KILL TYPE pubsub
	faultBlackhole = "blackhole" // a node's Redis link carries nothing (or no replies) for a while
)

var faultKinds = []string{faultKill, faultDrain, faultRedis, faultPubsub, faultBlackhole}

// fault is one fault injected, for the report and the checker.
type fault struct {
	kind   string
	node   string // "" for every node
	start  time.Duration
	end    time.Duration // when it was undone (0 while it lasts)
	detail string
}

func (f *fault) String() string {
	where := "all nodes"
	if f.node != "" {
		where = f.node
	}
	s := fmt.Sprintf("%7.2fs %-9s %-9s", f.start.Seconds(), f.kind, where)
	if f.end > f.start {
		s += fmt.Sprintf(" until %6.2fs", f.end.Seconds())
	}
	if f.detail != "" {
		s += " (" + f.detail + ")"
	}
	return s
}

// faults injects the faults on the test's goroutine: each is started at a
// seeded random moment, and what undoes it (a restart, a heal) is a
// pending step that comes due later, so faults overlap.
type faults struct {
	c       *cluster
	rng     *rand.Rand
	start   time.Time
	list    []*fault
	pending []step
	deck    []string
	// What is broken now.
	out       map[*node]bool // killed or draining
	holed     map[*node]bool
	redisDown bool
	exits     []exit // the exits no fault asked for
}

// exit is a node's process that ended by itself.
type exit struct {
	node string
	at   time.Duration
	err  error
	log  string // its last lines
}

// atStart reports whether the process could not reach Redis at its start,
// to connect or in the reads before it serves (it exits then, and its
// supervisor starts it again): a node restarted just before Redis is
// killed fails its start after connecting.
func (e exit) atStart() bool { return strings.Contains(e.log, "chatd: start the gateway:") }

// step is an undo that comes due at at; it returns false to be tried again.
type step struct {
	at time.Duration
	do func() bool
}

func newFaults(c *cluster, start time.Time, rng *rand.Rand) *faults {
	return &faults{c: c, start: start, rng: rng, out: make(map[*node]bool), holed: make(map[*node]bool)}
}

func (f *faults) now() time.Duration { return time.Since(f.start) }

func (f *faults) after(lo, hi time.Duration) time.Duration {
	return f.now() + lo + time.Duration(f.rng.Int64N(int64(hi-lo)))
}

// run injects faults for d: one every 1 to 3.5 s, the kinds dealt from a
// shuffled deck so that each kind comes once in every five.
func (f *faults) run(t *testing.T, d time.Duration) {
	end := f.now() + d
	next := f.after(time.Second, 3500*time.Millisecond)
	for f.now() < end {
		f.due(t, false)
		f.supervise()
		if f.now() >= next {
			f.inject(t)
			next = f.after(time.Second, 3500*time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// due runs the pending steps that are due (all of them, with all set).
func (f *faults) due(t *testing.T, all bool) {
	steps := f.pending
	f.pending = nil // a step may add steps
	var later []step
	for _, s := range steps {
		if (all || f.now() >= s.at) && s.do() {
			continue
		}
		if all {
			s.at = 0
		}
		later = append(later, s)
	}
	f.pending = append(later, f.pending...)
}

// healAll undoes every fault, and waits until every node is ready.
func (f *faults) healAll(t *testing.T) {
	deadline := time.Now().Add(30 * time.Second)
	for len(f.pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("faults not undone within 30 s: %d steps left", len(f.pending))
		}
		f.due(t, true)
		time.Sleep(20 * time.Millisecond)
	}
	for _, nd := range f.c.nodes {
		deadline := time.Now().Add(60 * time.Second)
		for readyz(nd) != 200 {
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready 60 s after the faults ended", nd.name)
			}
			f.supervise()
			f.due(t, true)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// supervise starts again, as a supervisor would, every node that exited
// without being told to: one that cannot reach Redis when it starts exits
// (docs/cluster.md, "Faults"). Any other exit is a crash, for the checker.
func (f *faults) supervise() {
	for _, nd := range f.c.nodes {
		p := nd.current()
		if p == nil || f.out[nd] {
			continue
		}
		select {
		case <-p.exited:
		default:
			continue
		}
		f.c.down(nd, p)
		f.exits = append(f.exits, exit{node: nd.name, at: f.now(), err: p.err, log: p.logs.tail(5)})
		f.restartNode(nd, &fault{}, f.now()+500*time.Millisecond)
		f.out[nd] = true // until the restart
	}
}

func (f *faults) add(kind, node, detail string) *fault {
	ft := &fault{kind: kind, node: node, start: f.now(), detail: detail}
	f.list = append(f.list, ft)
	return ft
}

// upNodes are the nodes running, not draining, in a stable order.
func (f *faults) upNodes() []*node {
	var up []*node
	for _, nd := range f.c.nodes {
		if !f.out[nd] && nd.current() != nil {
			up = append(up, nd)
		}
	}
	return up
}

// inject starts the next fault of the deck that can happen now: one node
// out at a time, Redis killed once at a time, one blackhole per node.
func (f *faults) inject(t *testing.T) {
	for range len(faultKinds) {
		if len(f.deck) == 0 {
			f.deck = slices.Clone(faultKinds)
			f.rng.Shuffle(len(f.deck), func(i, j int) { f.deck[i], f.deck[j] = f.deck[j], f.deck[i] })
		}
		kind := f.deck[0]
		if f.try(t, kind) {
			f.deck = f.deck[1:]
			return
		}
		// Not now: the kind goes to the back of the deck.
		f.deck = append(f.deck[1:], kind)
	}
}

func (f *faults) try(t *testing.T, kind string) bool {
	up := f.upNodes()
	switch kind {
	case faultKill, faultDrain:
		if len(up) < len(f.c.nodes) {
			return false
		}
		nd := up[f.rng.IntN(len(up))]
		f.out[nd] = true
		if kind == faultKill {
			ft := f.add(kind, nd.name, "SIGKILL")
			p := f.c.kill(nd, syscall.SIGKILL)
			f.c.down(nd, p)
			f.restartNode(nd, ft, f.after(time.Second, 4*time.Second))
			return true
		}
		ft := f.add(kind, nd.name, "SIGTERM")
		p := f.c.kill(nd, syscall.SIGTERM)
		pause := f.after(500*time.Millisecond, 3*time.Second)
		f.pending = append(f.pending, step{at: f.now(), do: func() bool {
			select {
			case <-p.exited:
			default:
				return false
			}
			f.c.down(nd, p)
			ft.detail = "SIGTERM; exit status 0"
			if p.err != nil {
				ft.detail = fmt.Sprintf("SIGTERM; %v", p.err)
				f.exits = append(f.exits, exit{node: nd.name, at: f.now(), err: p.err, log: "drained: " + p.logs.tail(5)})
			}
			f.restartNode(nd, ft, max(pause, f.now()+200*time.Millisecond))
			return true
		}})
		return true
	case faultRedis:
		if f.redisDown {
			return false
		}
		f.redisDown = true
		ft := f.add(kind, "", "SIGKILL, restarted with its append-only file")
		f.c.redis.Kill(t)
		f.pending = append(f.pending, step{at: f.after(300*time.Millisecond, 2500*time.Millisecond), do: func() bool {
			f.c.redis.Restart(t)
			f.redisDown = false
			ft.end = f.now()
			return true
		}})
		return true
	case faultPubsub:
		if f.redisDown {
			return false
		}
		ft := f.add(kind, "", "")
		n, err := f.c.clientKillPubsub()
		ft.detail = fmt.Sprintf("CLIENT KILL TYPE pubsub: %d killed", n)
		if err != nil {
			ft.detail += fmt.Sprintf(", %v", err)
		}
		ft.end = ft.start
		return true
	case faultBlackhole:
		var cands []*node
		for _, nd := range f.c.nodes {
			if !f.holed[nd] {
				cands = append(cands, nd)
			}
		}
		if len(cands) == 0 {
			return false
		}
		nd := cands[f.rng.IntN(len(cands))]
		repliesOnly := f.rng.IntN(3) == 0
		detail := "both ways"
		if repliesOnly {
			detail = "replies only: requests reach Redis, answers are lost"
		}
		ft := f.add(kind, nd.name, detail)
		if err := blackhole(nd, repliesOnly); err != nil {
			t.Fatalf("blackhole %s: %v", nd.name, err)
		}
		f.holed[nd] = true
		// At most 5 s: with a Redis restart on top, a node's history stays
		// readable within the 10 s after which a repair may give up
		// (spec section 10, reading 17).
		f.pending = append(f.pending, step{at: f.after(time.Second, 5*time.Second), do: func() bool {
			heal(nd)
			f.holed[nd] = false
			ft.end = f.now()
			return true
		}})
		return true
	}
	return false
}

// restartNode starts nd again at at.
func (f *faults) restartNode(nd *node, ft *fault, at time.Duration) {
	f.pending = append(f.pending, step{at: at, do: func() bool {
		f.c.start(nd)
		f.out[nd] = false
		ft.end = f.now()
		return true
	}})
}

// cuts reports whether a fault cut node's pub/sub path at some moment of
// [from, to], or up to settle after.
func (f *faults) cuts(node string, from, to, settle time.Duration) bool {
	for _, ft := range f.list {
		if ft.node != "" && ft.node != node {
			continue
		}
		end := ft.end
		if end < ft.start {
			end = f.now()
		}
		if ft.start <= to && from <= end+settle {
			return true
		}
	}
	return false
}
