package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// Topic names (see the package doc).
const (
	clusterTopic  = "cluster"
	channelPrefix = "c:"
)

func channelTopic(channel string) string { return channelPrefix + channel }
func userTopic(user string) string       { return "u:" + user }

// Control notices. Each is one line: "!op arg", optionally followed by
// "\n" and a wire frame that the router forwards before it applies op.
const (
	// opJoin on u:<uuid>: the user joined a channel; its sessions on every
	// node start receiving the channel's topic. The arg is "#name", or
	// "#name reqid reply" when the joining node waits: then every node
	// that receives the notice answers opJoined reqid on the topic reply
	// once it is subscribed to the channel's topic.
	opJoin = "join"
	// opJoined on a node's reply topic: the answer to opJoin with id arg.
	opJoined = "joined"
	// opLeft on c:#name: user arg left; the frame (the left event) goes to
	// every session on the topic, then the user's sessions stop receiving it.
	// The arg may be followed by " " and a wait id, which the publishing
	// node signals when it applies the notice.
	opLeft = "left"
	// opCreate on cluster: channel arg now exists; the frame (the create
	// event) goes to every session.
	opCreate = "create"
	// opDestroy on cluster: channel arg is gone; the frame (the destroy
	// event) goes to every session, then nobody receives c:arg any more.
	// A wait id may follow, as for opLeft.
	opDestroy = "destroy"
	// opLogout on u:<uuid>: login session arg was revoked; its websockets
	// close with 1000.
	opLogout = "logout"
	// opHere on u:<uuid>: the node whose reply topic is arg now holds a
	// session of the user, too (ratelimit.go).
	opHere = "here"
)

// control builds a control payload.
func control(op, arg string, frame []byte) []byte {
	b := make([]byte, 0, 2+len(op)+len(arg)+1+len(frame))
	b = append(b, '!')
	b = append(b, op...)
	b = append(b, ' ')
	b = append(b, arg...)
	if frame != nil {
		b = append(b, '\n')
		b = append(b, frame...)
	}
	return b
}

// router maps topics to the local sessions that receive them, and keeps the
// node's broker subscriptions in step: subscribed while a topic has at least
// one local session.
type router struct {
	log     *slog.Logger
	metrics *metrics
	broker  pubsub.Broker // set once before any session exists

	subMu [64]sync.Mutex // serialise broker (un)subscribe per topic shard
	seed  maphash.Seed

	mu     sync.RWMutex
	topics map[string]*topic // guarded by mu

	// book is which channels the node's sessions have been told exist.
	book channelBook

	dirtyMu sync.Mutex
	dirty   map[string]struct{} // topics whose subscription needs a look
	answers map[string][]answer // guarded by dirtyMu: owed once a topic is reconciled
	wake    chan struct{}       // capacity 1: dirty has news

	// onHere is called with the topic of an !here notice from another
	// node; set once before any session exists.
	onHere func(topic string)

	// reply is this node's own topic, on which other nodes answer its
	// join notices; immutable after newRouter.
	reply     string
	waitMu    sync.Mutex
	waits     map[string]*wait // guarded by waitMu: by request id
	waitCount uint64           // guarded by waitMu
}

// answer is an opJoined this node owes once a topic is subscribed.
type answer struct{ id, reply string }

// wait counts the signals that one request waits for: answers to a join
// notice, or this node's own receipt of a notice it published.
type wait struct {
	need int
	done chan struct{} // closed when need signals came
}

type topic struct {
	// list holds the topic's local sessions for the fan-out to walk; index
	// finds a session's place in it. Both guarded by router.mu.
	list  []*Session
	index map[*Session]int
	// subscribed is whether the broker delivers this topic to the node.
	// Guarded by the topic's subMu shard.
	subscribed bool
}

func newRouter(log *slog.Logger, m *metrics) *router {
	return &router{
		log:     log,
		metrics: m,
		seed:    maphash.MakeSeed(),
		topics:  make(map[string]*topic),
		dirty:   make(map[string]struct{}),
		answers: make(map[string][]answer),
		wake:    make(chan struct{}, 1),
		reply:   "n:" + uuid.NewString(),
		waits:   make(map[string]*wait),
	}
}

// add makes sessions receive topic name, and returns once the node is
// subscribed to it (or the broker failed: then the caller removes them).
func (r *router) add(ctx context.Context, name string, sessions ...*Session) error {
	r.addLocal(name, sessions)
	return r.reconcile(ctx, name)
}

func (r *router) addLocal(name string, sessions []*Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.topics[name]
	if t == nil {
		t = &topic{index: make(map[*Session]int, 1)}
		r.topics[name] = t
	}
	for _, s := range sessions {
		if s.closedLocked() {
			continue
		}
		t.addLocked(s)
		s.topics[name] = struct{}{}
	}
}

func (t *topic) addLocked(s *Session) {
	if _, ok := t.index[s]; ok {
		return
	}
	t.index[s] = len(t.list)
	t.list = append(t.list, s)
}

func (t *topic) removeLocked(s *Session) {
	i, ok := t.index[s]
	if !ok {
		return
	}
	last := len(t.list) - 1
	t.list[i] = t.list[last]
	t.index[t.list[i]] = i
	t.list[last] = nil
	t.list = t.list[:last]
	delete(t.index, s)
}

// remove stops sessions receiving topic name. The broker unsubscription,
// if any, happens in the background.
func (r *router) remove(name string, sessions ...*Session) {
	r.mu.Lock()
	if t := r.topics[name]; t != nil {
		for _, s := range sessions {
			t.removeLocked(s)
			delete(s.topics, name)
		}
	}
	r.mu.Unlock()
	r.markDirty(name)
}

// drop stops every session receiving topic name.
func (r *router) drop(name string) {
	r.mu.Lock()
	if t := r.topics[name]; t != nil {
		for _, s := range t.list {
			delete(s.topics, name)
		}
		clear(t.list)
		t.list = t.list[:0]
		clear(t.index)
	}
	r.mu.Unlock()
	r.markDirty(name)
}

// removeAll takes a closing session off every topic.
func (r *router) removeAll(s *Session) {
	r.mu.Lock()
	names := make([]string, 0, len(s.topics))
	for name := range s.topics {
		if t := r.topics[name]; t != nil {
			t.removeLocked(s)
		}
		names = append(names, name)
	}
	clear(s.topics)
	s.gone = true
	r.mu.Unlock()
	for _, name := range names {
		r.markDirty(name)
	}
}

// sessionsOf returns the local sessions on topic name.
func (r *router) sessionsOf(name string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t := r.topics[name]
	if t == nil {
		return nil
	}
	return append([]*Session(nil), t.list...)
}

// reconcile subscribes or unsubscribes the node so that it matches whether
// topic name has local sessions.
func (r *router) reconcile(ctx context.Context, name string) error {
	if name == clusterTopic {
		// Subscribed once by New for the node's whole life: every session
		// receives create and destroy, and a node with no session yet must
		// not drop it when its last session goes.
		return nil
	}
	mu := &r.subMu[maphash.String(r.seed, name)%uint64(len(r.subMu))]
	mu.Lock()
	defer mu.Unlock()

	r.mu.RLock()
	t := r.topics[name]
	want := t != nil && len(t.list) > 0
	r.mu.RUnlock()
	if t == nil {
		return nil
	}
	switch {
	case want && !t.subscribed:
		if err := r.broker.Subscribe(ctx, name); err != nil {
			return err
		}
		t.subscribed = true
		r.metrics.subscriptions.Inc()
	case !want && t.subscribed:
		if err := r.broker.Unsubscribe(ctx, name); err != nil {
			// Stray deliveries find no session; the next reconcile of
			// this topic tries again.
			r.log.Warn("unsubscribe failed", "topic", name, "err", err)
		}
		t.subscribed = false
		r.metrics.subscriptions.Dec()
	}
	if !t.subscribed {
		r.mu.Lock()
		if len(t.list) == 0 && r.topics[name] == t {
			delete(r.topics, name)
		}
		r.mu.Unlock()
	}
	return nil
}

func (r *router) markDirty(name string) {
	r.dirtyMu.Lock()
	r.dirty[name] = struct{}{}
	r.dirtyMu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// reconcileLoop brings dirty topics' subscriptions in step, in the
// background, until ctx ends. A failed subscription is tried again.
func (r *router) reconcileLoop(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-retry.C:
		}
		r.dirtyMu.Lock()
		names := make([]string, 0, len(r.dirty))
		for name := range r.dirty {
			names = append(names, name)
		}
		clear(r.dirty)
		r.dirtyMu.Unlock()

		failed := false
		for _, name := range names {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := r.reconcile(cctx, name)
			if err == nil {
				r.answer(cctx, name)
			}
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Warn("subscribe failed, will retry", "topic", name, "err", err)
				r.dirtyMu.Lock()
				r.dirty[name] = struct{}{}
				r.dirtyMu.Unlock()
				failed = true
			}
		}
		if failed {
			retry.Reset(time.Second)
		}
	}
}

// answer sends the opJoined answers owed for topic name, which is now in
// step with the node's sessions.
func (r *router) answer(ctx context.Context, name string) {
	r.dirtyMu.Lock()
	owed := r.answers[name]
	delete(r.answers, name)
	r.dirtyMu.Unlock()
	for _, a := range owed {
		if err := r.broker.Publish(ctx, a.reply, control(opJoined, a.id, nil)); err != nil {
			r.log.Warn("answer join notice", "topic", name, "err", err)
		}
	}
}

// newWait registers a wait for n signals under an id that is unique in
// the cluster. The caller must call release when done with it.
func (r *router) newWait(n int) (id string, w *wait, release func()) {
	r.waitMu.Lock()
	r.waitCount++
	id = r.reply + "." + strconv.FormatUint(r.waitCount, 10)
	w = &wait{need: n, done: make(chan struct{})}
	r.waits[id] = w
	r.waitMu.Unlock()
	return id, w, func() {
		r.waitMu.Lock()
		delete(r.waits, id)
		r.waitMu.Unlock()
	}
}

// signal counts one signal for the wait id, if it is this node's.
func (r *router) signal(id string) {
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	w := r.waits[id]
	if w == nil || w.need == 0 {
		return
	}
	if w.need--; w.need == 0 {
		close(w.done)
	}
}

// publishApplied has publish send a control notice that carries a wait id
// (publish builds it around id) and returns once this node has applied it,
// or ctx ended. A request's ack then follows the notice's local effect: the
// leaver's sessions are off the channel before the client can send its
// next request (a join that a late notice would undo). If the notice does
// not come back in time (the node's pub/sub path is being rebuilt),
// fallback applies its effect on this node's sessions directly, so that
// they at least stop receiving what they must not. An error from publish
// (the request failed, nothing was published) is returned as it is.
func (r *router) publishApplied(ctx context.Context, publish func(id string) error, fallback func()) error {
	id, w, release := r.newWait(1)
	defer release()
	if err := publish(id); err != nil {
		return err
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		r.log.Warn("own notice not received in time, applied locally")
		fallback()
	}
	return nil
}

// spreadJoin tells the nodes that hold sessions of user that it joined
// channel, and waits (at most until ctx ends) until each of them is
// subscribed to the channel's topic, so that whatever is published there
// next reaches every session of the user.
func (r *router) spreadJoin(ctx context.Context, user, channel string) error {
	ut := userTopic(user)
	counts, err := r.broker.Subscribers(ctx, ut)
	if err != nil {
		return err
	}
	n := counts[0]
	if n <= 1 { // only this node, whose sessions are on the topic already
		return r.broker.Publish(ctx, ut, control(opJoin, channel, nil))
	}
	id, w, release := r.newWait(n)
	defer release()
	if err := r.broker.Publish(ctx, ut, control(opJoin, channel+" "+id+" "+r.reply, nil)); err != nil {
		return err
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		// A node that went away does not answer; the join stands, and
		// that node's sessions catch up when its subscription is made.
		r.log.Warn("join notice not answered by every node", "user", user, "channel", channel, "nodes", n)
	}
	return nil
}

// deliver is the broker's Handler: it runs on the broker's delivery
// goroutine, in publish order, and never blocks.
func (r *router) deliver(name string, payload []byte) {
	if len(payload) > 0 && payload[0] == '!' {
		r.control(name, payload)
		return
	}
	if name == clusterTopic {
		r.legacyCreate(payload)
		return
	}
	r.forward(name, payload)
}

// legacyCreate takes a create event that a node of an earlier version
// published as a bare frame, not as a !create notice, during a rolling
// upgrade: it goes into the book like a notice, or a later destroy would
// not be news to the book and would be dropped.
func (r *router) legacyCreate(frame []byte) {
	var ev protocol.Event
	if err := json.Unmarshal(frame, &ev); err == nil && ev.Emitter == protocol.EmitterChannel && ev.Event == protocol.EventCreate {
		r.book.tell(ev.Identifier, true, func() { r.forward(clusterTopic, frame) })
		return
	}
	r.forward(clusterTopic, frame)
}

// forward writes one encoded frame to every local session on topic name:
// the same bytes to each, without blocking on any.
func (r *router) forward(name string, frame []byte) {
	r.forwardExcept(name, frame, nil)
}

// forwardExcept is forward to every local session on topic name but
// except (nil: none).
func (r *router) forwardExcept(name string, frame []byte, except *Session) {
	start := time.Now()
	r.mu.RLock()
	n := 0
	if t := r.topics[name]; t != nil {
		for _, s := range t.list {
			if s != except {
				s.send(frame)
				n++
			}
		}
	}
	r.mu.RUnlock()
	if n > 0 {
		r.metrics.delivered(frame, n, time.Since(start))
	}
}

func (r *router) control(name string, payload []byte) {
	line, frame, _ := bytes.Cut(payload[1:], []byte{'\n'})
	op, arg, _ := bytes.Cut(line, []byte{' '})
	send := func() {
		if len(frame) > 0 {
			r.forward(name, frame)
		}
	}
	switch string(op) {
	case opCreate:
		r.book.tell(string(arg), true, send)
	case opDestroy:
		channel, id, _ := strings.Cut(string(arg), " ")
		r.book.tell(channel, false, send)
		r.drop(channelTopic(channel))
		if id != "" {
			r.signal(id)
		}
	default:
		send()
		r.apply(name, string(op), arg)
	}
}

// apply carries out a control notice other than create and destroy.
func (r *router) apply(name, op string, arg []byte) {
	switch op {
	case opJoin:
		fields := strings.Fields(string(arg))
		if len(fields) == 0 {
			break
		}
		channel := channelTopic(fields[0])
		r.addLocal(channel, r.sessionsOf(name))
		if len(fields) == 3 {
			r.dirtyMu.Lock()
			r.answers[channel] = append(r.answers[channel], answer{id: fields[1], reply: fields[2]})
			r.dirtyMu.Unlock()
		}
		r.markDirty(channel)
	case opJoined:
		r.signal(string(arg))
	case opLeft:
		user, id, _ := strings.Cut(string(arg), " ")
		r.remove(name, r.sessionsOf(userTopic(user))...)
		if id != "" {
			r.signal(id)
		}
	case opHere:
		if string(arg) != r.reply {
			r.onHere(name)
		}
	case opLogout:
		for _, s := range r.sessionsOf(name) {
			if s.login.ID == string(arg) {
				s.close(statusNormal, "logged out")
			}
		}
	default:
		r.log.Warn("unknown control notice", "topic", name, "op", string(op))
	}
}
