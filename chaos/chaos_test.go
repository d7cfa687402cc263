package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// The shape of the load.
const (
	nodeCount    = 3
	userCount    = 10
	twoDevices   = 6 // users 0..twoDevices-1 have a second device
	window       = 3 // messages a device sends before it waits for their acks
	messageEvery = 500 * time.Millisecond
	churnChance  = 0.12 // per send of a user's first device: a join or leave instead
)

var (
	stableChannels = []string{"#s0", "#s1"}
	churnChannels  = []string{"#k0", "#k1"}
)

// settings reads CHAT_TEST_CHAOS_SEED and CHAT_TEST_CHAOS_DURATION.
func settings(t *testing.T) (seed uint64, duration time.Duration) {
	seed = rand.Uint64() >> 12 // short enough to type
	if s := os.Getenv("CHAT_TEST_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAT_TEST_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	duration = 40 * time.Second
	if s := os.Getenv("CHAT_TEST_CHAOS_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CHAT_TEST_CHAOS_DURATION=%q: %v", s, err)
		}
		duration = v
	}
	return seed, duration
}

// TestChaos: see the package comment.
func TestChaos(t *testing.T) {
	seed, duration := settings(t)
	// Printed at once, so that a run that hangs or crashes can be replayed.
	fmt.Printf("chaos: seed %d (replay: CHAT_TEST_CHAOS_SEED=%d), faults for %v, race detector in the nodes: %v\n", seed, seed, duration, raceEnabled)
	t.Logf("seed %d", seed)
	began := time.Now()

	c := startCluster(t, nodeCount)
	w := setup(t, c, seed)
	t.Logf("set up in %v", time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	defer func() { cancel(); running.Wait() }()
	load := w.load()
	for _, u := range sortedUsers(w) {
		for _, d := range u.devices {
			running.Add(1)
			go func() {
				defer running.Done()
				d.run(ctx, (userIndex(u)+d.idx)%nodeCount, load)
			}()
		}
	}
	if _, ok := waitUntil(t, 30*time.Second, func() bool { return everyDevice(w, (*device).connected) }); !ok {
		t.Fatal("not within 30 s: every device connected")
	}

	f := newFaults(c, w.start, rand.New(rand.NewPCG(seed, 0xfa)))
	go scrapeEvery(ctx, c, time.Second)
	f.run(t, duration)
	faultsEnded := w.now()
	f.healAll(t)
	t.Logf("faults ended at %v; cluster healed at %v", faultsEnded.Round(time.Millisecond), w.now().Round(time.Millisecond))

	// Quiet: no new requests; what is unanswered is retried until it is
	// answered, every device reconnects and resumes.
	// Past these bounds the checker says what is missing.
	close(w.stopped)
	if _, ok := waitUntil(t, 60*time.Second, func() bool { return everyDevice(w, (*device).idle) }); !ok {
		t.Errorf("not within 60 s: every request answered and every device connected and resumed")
	}
	final := lastSeqs(t, c, w)
	settled, ok := waitUntil(t, 30*time.Second, func() bool { return caughtUp(w, final) })
	if !ok {
		t.Errorf("not within 30 s: every open connection has every message")
	}
	quiet := w.now()
	for _, nd := range c.nodes {
		c.scrape(nd)
	}
	cancel()
	running.Wait()

	rep := check(t, c, w, f, final, quiet)
	rep.print(t, seed, duration, time.Since(began), settled)
}

// setup logs the users in, creates the channels, makes the memberships of
// the stable channels and a first membership of the churn ones, and opens
// every conversation of the load with a first message, so that every
// welcome of the load lists what its devices must hold.
func setup(t *testing.T, c *cluster, seed uint64) *world {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5e7))
	w := &world{start: time.Now(), nodes: c.nodes, users: make(map[string]*user), byID: make(map[string]*user), stopped: make(chan struct{})}
	for i := range userCount {
		u := &user{name: fmt.Sprintf("chaos%d", i), member: make(map[string]bool)}
		var err error
		u.token, u.id, err = login(c.nodes[i%nodeCount], u.name)
		if err != nil {
			t.Fatal(err)
		}
		w.users[u.name], w.byID[u.id] = u, u
	}
	users := sortedUsers(w)
	for i, u := range users {
		u.stable = []string{stableChannels[0]}
		if i%2 == 0 {
			u.stable = append(u.stable, stableChannels[1])
		}
		for _, k := range churnChannels {
			u.member[k] = rng.IntN(2) == 0
		}
		for _, step := range []int{1, 3} {
			u.peers = append(u.peers, users[(i+step)%len(users)].name)
		}
	}
	for i, u := range users {
		u.logs = append([]string{}, u.stable...)
		for _, step := range []int{1, 3, len(users) - 1, len(users) - 3} {
			u.logs = append(u.logs, conversation(u.name, users[(i+step)%len(users)].name))
		}
	}
	for i, u := range users {
		s := dialSync(t, c.nodes[i%nodeCount], u.token)
		if i == 0 {
			for _, ch := range append(append([]string{}, stableChannels...), churnChannels...) {
				s.do(`{"type":"command","action":"create","target":"`+ch+`"`, "ack")
			}
		}
		for _, ch := range u.stable {
			s.do(`{"type":"command","action":"join","target":"`+ch+`"`, "ack")
		}
		for _, k := range churnChannels {
			if u.member[k] {
				s.do(`{"type":"command","action":"join","target":"`+k+`"`, "ack")
			}
		}
		for _, p := range u.peers {
			s.do(`{"type":"message","target":"@`+p+`","message":"setup:`+p+`"`, "ack")
		}
		s.ws.Close(websocket.StatusNormalClosure, "")
		n := 1
		if i < twoDevices {
			n = 2
		}
		for d := range n {
			u.devices = append(u.devices, newDevice(w, u, d, seed^uint64(i)<<8))
		}
	}
	return w
}

// syncConn is a websocket of the set-up: one request at a time.
type syncConn struct {
	t  *testing.T
	ws *websocket.Conn
	n  int
}

func dialSync(t *testing.T, nd *node, token string) *syncConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+nd.addr+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatalf("set-up: dial %s: %v", nd.name, err)
	}
	s := &syncConn{t: t, ws: ws}
	s.next("welcome", "")
	return s
}

// do sends a request (its frame without the id and closing brace) and
// waits for its answer, which must be of type want.
func (s *syncConn) do(head, want string) {
	s.t.Helper()
	s.n++
	id := "setup-" + strconv.Itoa(s.n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, []byte(head+`,"id":"`+id+`"}`)); err != nil {
		s.t.Fatalf("set-up: %v", err)
	}
	if f := s.next("", id); f.Type != want {
		s.t.Fatalf("set-up: %s: got %+v", head, f)
	}
}

// next reads until a frame of type typ, or one answering id.
func (s *syncConn) next(typ, id string) frame {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := s.ws.Read(ctx)
		if err != nil {
			s.t.Fatalf("set-up: waiting for %s%s: %v", typ, id, err)
		}
		var f frame
		json.Unmarshal(b, &f)
		if (typ != "" && f.Type == typ) || (id != "" && f.ID == id) {
			return f
		}
	}
}

func sortedUsers(w *world) []*user {
	out := make([]*user, 0, len(w.users))
	for i := range len(w.users) {
		out = append(out, w.users[fmt.Sprintf("chaos%d", i)])
	}
	return out
}

func userIndex(u *user) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(u.name, "chaos"))
	return i
}

func everyDevice(w *world, ok func(*device) bool) bool {
	for _, u := range w.users {
		for _, d := range u.devices {
			if !ok(d) {
				return false
			}
		}
	}
	return true
}

func (d *device) connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil
}

// waitUntil waits for cond, at most bound; it returns how long it took
// and whether cond came true.
func waitUntil(t *testing.T, bound time.Duration, cond func() bool) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			return bound, false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), true
}

func scrapeEvery(ctx context.Context, c *cluster, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, nd := range c.nodes {
				c.scrape(nd)
			}
		}
	}
}

// load returns what a device sends at each tick of its serving loop: a
// message every messageEvery or so (to a stable channel, a churn channel
// its user is in, or a peer), with at most window unanswered; and, on a
// user's first device now and then, a join or leave of a churn channel
// instead, one at a time per user.
func (w *world) load() func(*device) {
	return func(d *device) {
		select {
		case <-w.stopped:
			return
		default:
		}
		now := w.now()
		if now < d.nextAt {
			return
		}
		d.nextAt = now + time.Duration(d.rng.Int64N(int64(2*messageEvery)))
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.conn == nil || d.pendingLocked("message") >= window {
			return
		}
		u := d.u
		u.mu.Lock()
		defer u.mu.Unlock()
		if d.idx == 0 && !u.busy && d.rng.Float64() < churnChance {
			k := churnChannels[d.rng.IntN(len(churnChannels))]
			action := "join"
			if u.member[k] {
				action = "leave"
			}
			u.busy = true
			u.changes = append(u.changes, d.newRequestLocked(action, k, k, ""))
			return
		}
		targets := append([]string{}, u.stable...)
		for _, k := range churnChannels {
			if u.member[k] {
				targets = append(targets, k)
			}
		}
		for _, p := range u.peers {
			targets = append(targets, "@"+p)
		}
		target := targets[d.rng.IntN(len(targets))]
		filler := strings.Repeat("x", 1+d.rng.IntN(120))
		d.newRequestLocked("message", target, u.targetLog(target), filler)
	}
}
