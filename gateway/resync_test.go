package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/protocol"
	"github.com/wirechat/chat/pubsub"
)

// flakyBackend is the in-memory backend with the faults of a real one: an
// outage count that can move while Healthy stays true (an outage shorter
// than the node's health poll), and a channel read that fails.
type flakyBackend struct {
	*pubsub.Memory
	outages      atomic.Uint64
	failChannels atomic.Int32 // Channels fails while this is above zero, counting down
	duringCount  atomic.Pointer[func(topic string)]

	mu        sync.Mutex
	nodes     map[string]int // topic -> nodes Subscribers says
	counts    int            // calls of Subscribers
	published [][]string     // the topics of each PublishAll
}

func (f *flakyBackend) Outages() uint64 { return f.outages.Load() }

// Subscribers answers what nodes says for a topic it names (other nodes
// holding the user, say), and calls duringCount, if set, before it answers.
func (f *flakyBackend) Subscribers(ctx context.Context, topics ...string) ([]int, error) {
	n, err := f.Memory.Subscribers(ctx, topics...)
	f.mu.Lock()
	f.counts++
	for i, t := range topics {
		if c, ok := f.nodes[t]; ok && err == nil {
			n[i] = c
		}
	}
	f.mu.Unlock()
	if during := f.duringCount.Load(); during != nil {
		for _, t := range topics {
			(*during)(t)
		}
	}
	return n, err
}

// PublishAll records the topics of each call.
func (f *flakyBackend) PublishAll(ctx context.Context, topics []string, payload []byte) error {
	f.mu.Lock()
	f.published = append(f.published, slices.Clone(topics))
	f.mu.Unlock()
	return f.Memory.PublishAll(ctx, topics, payload)
}

func (f *flakyBackend) Channels(ctx context.Context) ([]string, error) {
	if f.failChannels.Add(-1) >= 0 {
		return nil, errors.New("flaky: channels not read")
	}
	return f.Memory.Channels(ctx)
}

// newResyncServer starts a node on a flakyBackend.
func newResyncServer(t *testing.T) (*Server, *flakyBackend) {
	t.Helper()
	var f *flakyBackend
	s, err := New(t.Context(), Config{}, Deps{Connect: func(h pubsub.Handler) (pubsub.Backend, error) {
		f = &flakyBackend{Memory: pubsub.NewMemory(h, pubsub.HistoryOptions{})}
		return f, nil
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, f
}

// newResyncSession registers a session of user uid that writes nothing:
// what the node sends it stays in its queue (see toldTo).
func newResyncSession(t testing.TB, s *Server, uid string) *Session {
	t.Helper()
	login := auth.Session{UserID: uid, Username: "u" + uid[len(uid)-2:]}
	sess := newSession("conn-"+uid, login, &s.env, nil, nil, s.limits.enter(uid))
	sess.out.hold() // as if a writer held the role: nothing is written
	if !s.sessions.add(sess) {
		t.Fatal("register")
	}
	s.router.enter(sess)
	t.Cleanup(func() {
		s.router.leave(sess)
		s.limits.leave(uid)
		s.sessions.done(sess)
	})
	return sess
}

// toldTo takes the channel events queued for sess, as "event #name".
func toldTo(t *testing.T, sess *Session) []string {
	t.Helper()
	sess.out.mu.Lock()
	defer sess.out.mu.Unlock()
	var out []string
	for _, f := range sess.out.queue {
		var ev protocol.Event
		if err := json.Unmarshal(f, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Event+" "+ev.Identifier)
	}
	sess.out.queue = sess.out.queue[:0]
	return out
}

// TestResync: changes whose notices a node missed (made here straight in
// the registry, so no notice is published) are applied to the node's
// sessions when it resyncs after its pub/sub path came back: membership
// changes put the session on the right channels, and creates and destroys
// are told as events, once each, also to a session that connected while
// the node was cut off.
func TestResync(t *testing.T) {
	ctx := t.Context()
	s, mem := newResyncServer(t)
	const uid = "00000000-0000-4000-8000-00000000000a"
	sess := newResyncSession(t, s, uid)
	s.router.add(userTopic(uid), sess)
	s.router.add(clusterTopic, sess)
	for _, c := range []string{"#kept", "#left", "#joined", "#gone"} {
		if err := s.members.create(ctx, sess, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"#kept", "#left"} {
		if _, err := mem.Join(ctx, c, pubsub.Peer{ID: uid, Username: "u" + uid[len(uid)-3:]}); err != nil {
			t.Fatal(err)
		}
		s.router.add(channelTopic(c), sess)
	}
	// Missed while the node was cut off: a leave and a join elsewhere.
	if err := mem.Leave(ctx, "#left", uid, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Join(ctx, "#joined", pubsub.Peer{ID: uid, Username: "u" + uid[len(uid)-3:]}); err != nil {
		t.Fatal(err)
	}
	// And a channel created, one destroyed.
	if err := mem.CreateChannel(ctx, "#new", uid, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.DestroyChannel(ctx, "#gone", uid, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	// A session that connects meanwhile gets the node's view in its
	// welcome, so that the resync's events are right for it too, and its
	// user's own channels.
	late := newResyncSession(t, s, "00000000-0000-4000-8000-00000000000b")
	if _, err := mem.Join(ctx, "#new", pubsub.Peer{ID: late.login.UserID, Username: "u" + late.login.UserID[len(late.login.UserID)-3:]}); err != nil {
		t.Fatal(err)
	}
	frame, _, err := s.chat.attach(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	var welcome protocol.Welcome
	if err := json.Unmarshal(frame, &welcome); err != nil {
		t.Fatal(err)
	}
	if want := []string{"#gone", "#joined", "#kept", "#left", "#new"}; !slices.Equal(welcome.Channels, want) {
		t.Fatalf("welcome during the outage lists %q, want the node's view and the user's own %q", welcome.Channels, want)
	}

	// The late session's own channel #new is news to the node: its other
	// sessions hear of it at once, the late one from its welcome.
	if got, want := toldTo(t, sess), []string{"create #kept", "create #left", "create #joined", "create #gone", "create #new"}; !slices.Equal(got, want) {
		t.Fatalf("before resync the session was told %q, want %q", got, want)
	}
	if got := toldTo(t, late); len(got) > 0 {
		t.Fatalf("the late session was told %q besides its welcome, want nothing", got)
	}
	if !s.re.resync(ctx, 0) {
		t.Fatal("resync failed")
	}
	for _, c := range []*Session{sess, late} {
		if got, want := toldTo(t, c), []string{"destroy #gone"}; !slices.Equal(got, want) {
			t.Fatalf("resync told %s %q, want %q", c.login.Username, got, want)
		}
	}
	if !s.re.resync(ctx, 0) {
		t.Fatal("second resync failed")
	}
	if got := toldTo(t, sess); len(got) > 0 {
		t.Fatalf("a second resync told the session %q, want nothing", got)
	}
	// The leave takes effect once the node has delivered #left's messages
	// stored before it (none here): when its stream knows where it stands.
	want := []string{"c:#joined", "c:#kept"}
	var got []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got = s.router.topicsOf(sess, channelPrefix)
		slices.Sort(got)
		if slices.Equal(got, want) || time.Now().After(deadline) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after resync the session receives %v, want %v", got, want)
	}
}

// TestResyncAfterShortOutage: an outage that is over before the node's
// health poll sees it still leads to a resync, and a resync that fails is
// tried again.
func TestResyncAfterShortOutage(t *testing.T) {
	ctx := t.Context()
	s, f := newResyncServer(t)
	const uid = "00000000-0000-4000-8000-00000000000a"
	sess := newResyncSession(t, s, uid)
	s.router.add(clusterTopic, sess)
	if err := f.CreateChannel(ctx, "#missed", uid, pubsub.Notice{}); err != nil {
		t.Fatal(err)
	}
	f.failChannels.Store(2)
	f.outages.Add(1) // Healthy stays true throughout
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		got = toldTo(t, sess)
	}
	if want := []string{"create #missed"}; !slices.Equal(got, want) {
		t.Fatalf("after a short outage the session was told %q, want %q", got, want)
	}
	if n := f.failChannels.Load(); n > 0 {
		t.Fatalf("the resync succeeded with %d failures still to come", n)
	}
}

// bookEvents records what a channelBook passes on.
type bookEvents []string

func (e *bookEvents) send(channel string, exists bool) func() {
	return func() { e.change(channel, exists) }
}

func (e *bookEvents) change(channel string, exists bool) {
	op := "destroy"
	if exists {
		op = "create"
	}
	*e = append(*e, op+" "+channel)
}

func (e *bookEvents) take() []string {
	out := slices.Clone(*e)
	slices.Sort(out)
	*e = nil
	return out
}

// TestChannelBook: the book passes on each change of a channel's existence
// once, whether a notice or settle finds it, and settle leaves alone the
// channels whose notices arrived while it read the registry.
func TestChannelBook(t *testing.T) {
	var b channelBook
	var ev bookEvents
	read := func(names ...string) func() ([]string, error) {
		return func() ([]string, error) { return names, nil }
	}
	check := func(what string, want ...string) {
		t.Helper()
		if got := ev.take(); !slices.Equal(got, want) {
			t.Fatalf("%s: passed on %q, want %q", what, got, want)
		}
	}

	if err := b.settle(read("#a", "#b"), ev.change); err != nil {
		t.Fatal(err)
	}
	check("first settle", "create #a", "create #b")

	b.tell("#c", true, ev.send("#c", true))
	b.tell("#c", true, ev.send("#c", true))
	b.tell("#a", false, ev.send("#a", false))
	b.tell("#a", false, ev.send("#a", false))
	check("notices, each twice", "create #c", "destroy #a")

	// Notices that arrive while settle reads win over what it reads: the
	// read may have been answered before they were published.
	err := b.settle(func() ([]string, error) {
		b.tell("#d", true, ev.send("#d", true))
		b.tell("#b", false, ev.send("#b", false))
		return []string{"#b", "#c"}, nil // from before both
	}, ev.change)
	if err != nil {
		t.Fatal(err)
	}
	check("settle racing notices", "create #d", "destroy #b")

	// A settle with no notice meanwhile takes the registry's word.
	if err := b.settle(read("#c", "#e"), ev.change); err != nil {
		t.Fatal(err)
	}
	check("settle after missed notices", "create #e", "destroy #d")

	// A failed read changes nothing, and later notices count as usual.
	fail := errors.New("down")
	if err := b.settle(func() ([]string, error) { return nil, fail }, ev.change); !errors.Is(err, fail) {
		t.Fatalf("settle with a failing read: %v", err)
	}
	check("failed settle")
	b.tell("#e", true, ev.send("#e", true))
	check("known create after a failed settle")
	if err := b.settle(read("#c", "#e"), ev.change); err != nil {
		t.Fatal(err)
	}
	check("settle with nothing new")

	// learn: a welcome's own channels that the book lacks. One created
	// and destroyed after the snapshot stays out: the registry's word is
	// older than the destroy, which the session got as an event.
	_, since := b.snapshot(func() {})
	b.tell("#f", true, ev.send("#f", true))
	b.tell("#f", false, ev.send("#f", false))
	check("create and destroy after the snapshot", "create #f", "destroy #f")
	if b.learn("#f", since, ev.send("#f", true)) {
		t.Fatal("learn brought back a channel destroyed after the snapshot")
	}
	check("learn of a channel destroyed after the snapshot")
	// One the book never heard of, or that left it before the snapshot
	// (created again since; its notice is on its way), is news.
	if !b.learn("#g", since, ev.send("#g", true)) || !b.learn("#d", since, ev.send("#d", true)) {
		t.Fatal("learn refused a channel the registry has and the book lacks")
	}
	if !b.learn("#g", since, ev.send("#g", true)) {
		t.Fatal("learn refused a channel the book knows")
	}
	check("learn of new channels", "create #d", "create #g")
	b.tell("#g", true, ev.send("#g", true))
	check("the notice after learn")

	// A destroy heard for a channel the book never had (its create was
	// lost) keeps learn from bringing it back.
	_, since = b.snapshot(func() {})
	b.tell("#h", false, ev.send("#h", false))
	if b.learn("#h", since, ev.send("#h", true)) {
		t.Fatal("learn brought back a channel heard destroyed after the snapshot")
	}
	check("learn after a destroy of a channel the book lacked")

	// A channel learned while settle reads is left alone by that settle,
	// like one whose notice arrives then.
	err = b.settle(func() ([]string, error) {
		b.learn("#i", since, ev.send("#i", true))
		return []string{"#c", "#d", "#e", "#g"}, nil // from before #i
	}, ev.change)
	if err != nil {
		t.Fatal(err)
	}
	check("settle racing learn", "create #i")
}

// TestSharedCountRace: an !here notice that arrives while the node counts
// a user's nodes keeps the user shared, though the count (taken before the
// other node subscribed) says one node.
func TestSharedCountRace(t *testing.T) {
	s, f := newResyncServer(t)
	const uid = "00000000-0000-4000-8000-00000000000a"
	sess := newResyncSession(t, s, uid)
	s.limits.heard(userTopic(uid))
	if !sess.user.shared.Load() {
		t.Fatal("an !here notice did not make the user shared")
	}
	here := s.limits.heard
	f.duringCount.Store(&here)
	if err := s.limits.check(t.Context(), []string{uid}); err != nil {
		t.Fatal(err)
	}
	if !sess.user.shared.Load() {
		t.Fatal("a count of one node cleared shared although an !here notice arrived meanwhile")
	}
	f.duringCount.Store(nil)
	if err := s.limits.check(t.Context(), []string{uid}); err != nil {
		t.Fatal(err)
	}
	if sess.user.shared.Load() {
		t.Fatal("a count of one node with no notice meanwhile left the user shared")
	}
}

// TestResyncInBatches: the resync reads memberships and counts nodes for
// countBatch users per round trip, and announces the shared users of a
// batch with one PublishAll.
func TestResyncInBatches(t *testing.T) {
	old := countBatch
	countBatch = 2
	t.Cleanup(func() { countBatch = old })
	ctx := t.Context()
	s, f := newResyncServer(t)
	uids := []string{
		"00000000-0000-4000-8000-00000000000a",
		"00000000-0000-4000-8000-00000000000b",
		"00000000-0000-4000-8000-00000000000c",
	}
	sessions := make([]*Session, len(uids))
	for i, uid := range uids {
		sessions[i] = newResyncSession(t, s, uid)
		c := "#" + uid[len(uid)-1:]
		if err := f.CreateChannel(ctx, c, uid, pubsub.Notice{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Join(ctx, c, pubsub.Peer{ID: uid, Username: "u" + uid[len(uid)-3:]}); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	f.nodes = map[string]int{userTopic(uids[0]): 2, userTopic(uids[1]): 1, userTopic(uids[2]): 3}
	f.counts = 0
	f.mu.Unlock()

	if !s.re.resync(ctx, 0) {
		t.Fatal("resync failed")
	}
	for i, sess := range sessions {
		want := []string{channelTopic("#" + uids[i][len(uids[i])-1:])}
		if got := s.router.topicsOf(sess, channelPrefix); !slices.Equal(got, want) {
			t.Errorf("user %d receives %v, want %v", i, got, want)
		}
		if got, want := sess.user.shared.Load(), i != 1; got != want {
			t.Errorf("user %d shared = %v, want %v", i, got, want)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts != 2 {
		t.Errorf("%d counts of nodes for 3 users in batches of 2, want 2", f.counts)
	}
	var told []string
	for _, topics := range f.published {
		if len(topics) > 2 {
			t.Errorf("one PublishAll for %d topics, more than a batch", len(topics))
		}
		told = append(told, topics...)
	}
	slices.Sort(told)
	if want := []string{userTopic(uids[0]), userTopic(uids[2])}; !slices.Equal(told, want) {
		t.Errorf("!here went to %v, want %v", told, want)
	}
}
