package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The minimal client of the chaos check. A device is one place a user is
// logged in from: it keeps one websocket at a time, reconnects by itself
// with jittered backoff (to another node first), resumes from history what
// moved while it was away (spec section 5: it compares the welcome's
// latest with the last seq it holds without a gap, and asks history
// after it), and
// resends every request that was not answered, with the same id, in the
// order it first sent them. It records exactly what arrived, on which
// connection and when, for the checker.

// world is what every device shares: the clock and the cluster's nodes.
type world struct {
	start   time.Time
	nodes   []*node
	users   map[string]*user // by name; immutable after setup
	byID    map[string]*user // by identifier
	stopped chan struct{}    // closed when the load stops: only retries go on
}

// now is the time since the run started, on the monotonic clock: every
// time the checker compares was taken in this process.
func (w *world) now() time.Duration { return time.Since(w.start) }

// user is a chat user of the load, with one or two devices.
type user struct {
	name, id, token string
	devices         []*device
	stable          []string // the stable channels it is a member of (joined at setup)
	peers           []string // the users it talks to (usernames)
	logs            []string // its stable channels and its conversations: what it must hold

	mu      sync.Mutex
	member  map[string]bool // churn channel -> member, as the acks said
	busy    bool            // a join or leave is under way
	changes []*request      // its joins and leaves of churn channels, in order
}

// device is one place a user is connected from.
type device struct {
	w      *world
	u      *user
	idx    int
	rng    *rand.Rand    // owned by run
	nextAt time.Duration // owned by run: when the load sends next

	mu       sync.Mutex
	conn     *connRec   // the open connection; nil while away
	conns    []*connRec // every connection, in order
	queue    []*request // requests not answered yet, in the order first sent
	all      []*request // every request it made
	nextID   int
	held     map[string]map[uint64][]byte // log -> seq -> frame: what the device holds, live or fetched
	start    map[string]uint64            // log -> latest in its first welcome: where it must hold from
	resuming int                          // history requests under way on the open connection
	wake     chan struct{}                // pokes the serving loop
}

// connRec is one websocket of a device, and what arrived on it.
type connRec struct {
	dev    *device
	n      int // its place in the device's conns
	node   string
	ws     *websocket.Conn
	opened time.Duration // when its welcome arrived
	closed time.Duration // 0 while open
	status websocket.StatusCode
	reason string

	welcome struct {
		Epoch  string            `json:"epoch"`
		Joined []string          `json:"joined"`
		Latest map[string]uint64 `json:"latest"`
	}
	live     map[string][]liveMsg // log -> messages in the order they arrived
	fetched  int                  // messages it fetched from history
	events   int
	eventLog []eventRec // the channel events that arrived, for the report
	sent     int        // requests written on it
}

type eventRec struct {
	at    time.Duration
	frame []byte
}

type liveMsg struct {
	seq   uint64
	frame []byte
	at    time.Duration
}

// request is a request of a device that wants an answer, resent until it
// gets one.
type request struct {
	dev    *device
	id     string
	action string // message, join, leave, history
	target string // as sent: #c or @name
	log    string // the log it writes or reads
	text   string
	after  uint64 // history
	upto   uint64 // history: the welcome's latest it resumes to

	first    time.Duration // first sent
	lastSent time.Duration // sent last
	attempts int
	conns    []*connRec // the connection of each attempt
	sentAt   []int      // its place among its connection's requests, for each attempt
	errs     []string   // the error code of each failed attempt
	retryAt  time.Duration
	inFlight bool // sent on the open connection, not answered yet

	done    bool
	acked   bool // an ack (for a leave: also not_member after a lost answer)
	seq     uint64
	ackConn *connRec
	ackAt   time.Duration
	refused string // the final error code
}

// frame is a frame the server sends, as far as the client reads it.
type frame struct {
	Type       string            `json:"type"`
	ID         string            `json:"id"`
	Seq        uint64            `json:"seq"`
	Code       string            `json:"code"`
	Target     string            `json:"target"`
	Identifier string            `json:"identifier"`
	Username   string            `json:"username"`
	Message    string            `json:"message"`
	More       bool              `json:"more"`
	Messages   []json.RawMessage `json:"messages"`
}

// conversation is the log of the private conversation of two users, by
// name: the checker maps it to the identifiers' log in Redis.
func conversation(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "@" + a + ":" + b
}

// logOf is the log of a message frame that u received: a channel's, or
// the conversation with the other party (the target for one's own
// messages, the sender for the other's: spec section 10, reading 19).
func (u *user) logOf(f *frame) string {
	if strings.HasPrefix(f.Target, "#") {
		return f.Target
	}
	if f.Identifier == u.id {
		return conversation(u.name, f.Target[1:])
	}
	return conversation(u.name, f.Username)
}

// targetLog is the log of a target as u names it (#c or @peer).
func (u *user) targetLog(target string) string {
	if strings.HasPrefix(target, "@") {
		return conversation(u.name, target[1:])
	}
	return target
}

func newDevice(w *world, u *user, idx int, seed uint64) *device {
	return &device{
		w: w, u: u, idx: idx,
		rng:   rand.New(rand.NewPCG(seed, uint64(idx))),
		held:  make(map[string]map[uint64][]byte),
		start: make(map[string]uint64),
		wake:  make(chan struct{}, 1),
	}
}

func (d *device) String() string { return fmt.Sprintf("%s/%d", d.u.name, d.idx) }

func (d *device) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run keeps the device connected until ctx ends, starting on node first.
func (d *device) run(ctx context.Context, first int, load func(*device)) {
	nd := first
	failures := 0
	last := -1
	for ctx.Err() == nil {
		c, err := d.connect(ctx, d.w.nodes[nd])
		if err == nil {
			failures = 0
			last = nd
			d.serve(ctx, c, load)
		} else {
			failures++
		}
		// Jittered backoff, then another node than the last one first.
		backoff := min(100*time.Millisecond<<min(failures, 5), 2*time.Second)
		select {
		case <-time.After(time.Duration(d.rng.Int64N(int64(backoff))) + 20*time.Millisecond):
		case <-ctx.Done():
			return
		}
		nd = d.rng.IntN(len(d.w.nodes))
		if nd == last && failures == 0 {
			nd = (nd + 1 + d.rng.IntN(len(d.w.nodes)-1)) % len(d.w.nodes)
		}
	}
}

// connect opens a websocket to nd and reads its welcome.
func (d *device) connect(ctx context.Context, nd *node) (*connRec, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "ws://"+nd.addr+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + d.u.token}},
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(4 << 20)
	_, b, err := ws.Read(dctx)
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	c := &connRec{dev: d, node: nd.name, ws: ws, live: make(map[string][]liveMsg)}
	if err := json.Unmarshal(b, &c.welcome); err != nil || !strings.HasPrefix(string(b), `{"type":"welcome"`) {
		ws.CloseNow()
		return nil, fmt.Errorf("first frame is not a welcome: %.200s", b)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c.opened = d.w.now()
	c.n = len(d.conns)
	d.conns = append(d.conns, c)
	d.conn = c
	if c.n == 0 {
		for _, ch := range c.welcome.Joined {
			d.start[ch] = c.welcome.Latest[ch]
		}
		for t, seq := range c.welcome.Latest {
			d.start[d.u.targetLog(t)] = seq
		}
	}
	return c, nil
}

// serve runs one connection: it resumes, resends what was not answered,
// and sends the load, until the connection ends.
func (d *device) serve(ctx context.Context, c *connRec, load func(*device)) {
	// Resume from what the device held when the welcome came, before the
	// reader adds what this connection receives live: a frame that comes
	// right after the welcome is newer than the gap to be read, and
	// counted first it would make the device ask history only after it.
	d.resume(c)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		d.read(ctx, c)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		d.flush(ctx, c)
		select {
		case <-readerDone:
			d.mu.Lock()
			d.conn = nil
			d.resuming = 0
			d.queue = slices.DeleteFunc(d.queue, func(r *request) bool {
				if r.action == "history" { // the next connection resumes anew
					r.done, r.refused = true, "connection ended"
					return true
				}
				r.inFlight = false // resent on the next connection, same id
				return false
			})
			d.mu.Unlock()
			return
		case <-ctx.Done():
			c.ws.Close(websocket.StatusNormalClosure, "done")
			<-readerDone
			return
		case <-tick.C:
			load(d)
		case <-d.wake:
		}
	}
}

// resume asks history, for each target whose welcome's latest is beyond
// what the device holds, for what it missed (spec section 5).
func (d *device) resume(c *connRec) {
	d.mu.Lock()
	defer d.mu.Unlock()
	targets := make([]string, 0, len(c.welcome.Latest))
	for t := range c.welcome.Latest {
		targets = append(targets, t)
	}
	slices.Sort(targets)
	for _, t := range targets {
		latest := c.welcome.Latest[t]
		log := d.u.targetLog(t)
		if top := d.heldThroughLocked(log); latest > top {
			d.historyLocked(t, log, top, latest)
		}
	}
}

// heldThroughLocked is the seq of log up to which the device holds every
// message since its start (its first welcome's latest): where a resume
// reads history from. Not the newest it holds: a connection that ended
// before its own resume was answered can leave a gap below frames that
// came live.
func (d *device) heldThroughLocked(log string) uint64 {
	seq := d.start[log]
	for {
		if _, ok := d.held[log][seq+1]; !ok {
			return seq
		}
		seq++
	}
}

func (d *device) historyLocked(target, log string, after, upto uint64) {
	r := d.newRequestLocked("history", target, log, "")
	r.after, r.upto = after, upto
	d.resuming++
}

// newRequestLocked queues a request; the serving loop sends it.
func (d *device) newRequestLocked(action, target, log, text string) *request {
	d.nextID++
	r := &request{dev: d, id: fmt.Sprintf("%d-%d", d.idx, d.nextID), action: action, target: target, log: log, text: text, first: -1}
	if action == "message" {
		r.text = r.id + " " + text
	}
	d.queue = append(d.queue, r)
	d.all = append(d.all, r)
	d.poke()
	return r
}

// pendingLocked counts the requests of action not answered yet.
func (d *device) pendingLocked(action string) int {
	n := 0
	for _, r := range d.queue {
		if r.action == action {
			n++
		}
	}
	return n
}

// flush sends, in order, every queued request that is not on its way and
// is due.
func (d *device) flush(ctx context.Context, c *connRec) {
	d.mu.Lock()
	now := d.w.now()
	var out [][]byte
	for _, r := range d.queue {
		if r.inFlight || r.retryAt > now || d.conn != c {
			continue
		}
		r.inFlight = true
		r.attempts++
		r.conns = append(r.conns, c)
		if r.first < 0 {
			r.first = now
		}
		r.lastSent = now
		c.sent++
		r.sentAt = append(r.sentAt, c.sent)
		out = append(out, r.encode())
	}
	d.mu.Unlock()
	for _, b := range out {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.ws.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			c.ws.CloseNow() // the reader ends, and serve with it
			return
		}
	}
}

func (r *request) encode() []byte {
	var v map[string]any
	switch r.action {
	case "message":
		v = map[string]any{"type": "message", "target": r.target, "message": r.text, "id": r.id}
	case "history":
		v = map[string]any{"type": "command", "action": "history", "target": r.target, "after": r.after, "limit": 200, "id": r.id}
	default:
		v = map[string]any{"type": "command", "action": r.action, "target": r.target, "id": r.id}
	}
	b, _ := json.Marshal(v)
	return b
}

// read records what arrives on c until it ends.
func (d *device) read(ctx context.Context, c *connRec) {
	for {
		_, b, err := c.ws.Read(ctx)
		if err != nil {
			d.mu.Lock()
			c.closed = d.w.now()
			c.status = websocket.CloseStatus(err)
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				c.reason = ce.Reason
			} else {
				c.reason = err.Error()
			}
			d.mu.Unlock()
			return
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			d.mu.Lock()
			c.reason = "bad frame: " + string(b)
			d.mu.Unlock()
			continue
		}
		d.mu.Lock()
		switch f.Type {
		case "message":
			log := d.u.logOf(&f)
			c.live[log] = append(c.live[log], liveMsg{seq: f.Seq, frame: b, at: d.w.now()})
			d.holdLocked(log, f.Seq, b)
		case "ack", "error", "history":
			d.answerLocked(c, &f)
		default:
			c.events++
			if f.Type == "event" && strings.HasPrefix(f.Target, "#") {
				c.eventLog = append(c.eventLog, eventRec{at: d.w.now(), frame: b})
			}
		}
		d.mu.Unlock()
	}
}

func (d *device) holdLocked(log string, seq uint64, b []byte) {
	m := d.held[log]
	if m == nil {
		m = make(map[uint64][]byte)
		d.held[log] = m
	}
	if _, ok := m[seq]; !ok {
		m[seq] = b
	}
}

// Error codes after which a request is sent again (it had no effect, or
// may have had one that a retry with its id does not repeat).
var retried = map[string]bool{"unavailable": true, "rate_limited": true, "internal": true}

// answerLocked takes the answer to one of the device's requests.
func (d *device) answerLocked(c *connRec, f *frame) {
	i := slices.IndexFunc(d.queue, func(r *request) bool { return r.id == f.ID })
	if i < 0 {
		return // an answer to an attempt whose request is done already
	}
	r := d.queue[i]
	now := d.w.now()
	r.inFlight = false
	if f.Type == "error" {
		r.errs = append(r.errs, f.Code)
		switch {
		case retried[f.Code]:
			r.retryAt = now + time.Duration(100+rand.IntN(200))*time.Millisecond // jitter, not part of the schedule
			return
		case r.action == "leave" && f.Code == "not_member" && r.attempts > 1:
			// An earlier attempt left and its answer was lost (with its
			// connection, or as unavailable).
			r.acked = true
		default:
			r.refused = f.Code
		}
	} else {
		r.acked = true
		r.seq = f.Seq
	}
	r.done, r.ackConn, r.ackAt = true, c, now
	d.queue = slices.Delete(d.queue, i, i+1)
	switch r.action {
	case "join", "leave":
		d.u.membershipDone(r)
	case "history":
		d.resuming--
		for _, m := range f.Messages {
			var mf frame
			json.Unmarshal(m, &mf)
			d.holdLocked(r.log, mf.Seq, m)
			c.fetched++
		}
		if n := len(f.Messages); r.acked && f.More && n > 0 {
			var last frame
			json.Unmarshal(f.Messages[n-1], &last)
			if last.Seq < r.upto {
				d.historyLocked(r.target, r.log, last.Seq, r.upto)
			}
		}
	}
}

// membershipDone records the outcome of a join or leave of u.
func (u *user) membershipDone(r *request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.busy = false
	if r.acked {
		u.member[r.target] = r.action == "join"
	}
}

// idle reports whether the device is connected, has resumed and has no
// request left unanswered.
func (d *device) idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil && len(d.queue) == 0 && d.resuming == 0
}
