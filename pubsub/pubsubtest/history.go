package pubsubtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wirechat/chat/pubsub"
)

// BackendFactory makes the backends of one History test.
type BackendFactory struct {
	// Cluster prepares a store of t's own that keeps messages as h says,
	// and returns a function that opens a node's Backend on it,
	// delivering to a handler; backends of one Cluster share the store,
	// as the nodes of a cluster do. The factory closes them at the end of
	// t. If wipe is not nil, it empties the store as a Redis that
	// restarted without its data: the suite then checks that the epoch
	// changes and the numbering starts again.
	Cluster func(t *testing.T, h pubsub.HistoryOptions) (open func(pubsub.Handler) pubsub.Backend, wipe func())
}

// open returns the open function of a new Cluster.
func (f BackendFactory) open(t *testing.T, h pubsub.HistoryOptions) func(pubsub.Handler) pubsub.Backend {
	open, _ := f.Cluster(t, h)
	return open
}

// RunHistory runs the History conformance cases, with the publish steps
// that store.
func RunHistory(t *testing.T, f BackendFactory) {
	t.Run("PublishMessage", func(t *testing.T) { testPublishMessage(t, f) })
	t.Run("Numbering", func(t *testing.T) { testNumbering(t, f) })
	t.Run("Range", func(t *testing.T) { testRange(t, f) })
	t.Run("TrimByCount", func(t *testing.T) { testTrimByCount(t, f) })
	t.Run("TrimByAge", func(t *testing.T) { testTrimByAge(t, f) })
	t.Run("Destroy", func(t *testing.T) { testDestroyHistory(t, f) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, f) })
	t.Run("Direct", func(t *testing.T) { testDirect(t, f) })
	t.Run("View", func(t *testing.T) { testView(t, f) })
	t.Run("Epoch", func(t *testing.T) { testEpoch(t, f) })
	t.Run("ConcurrentNumbering", func(t *testing.T) { testConcurrentNumbering(t, f) })
}

// msg is a message of user from with request id id and text text.
func msg(from, id, text string, topics ...string) pubsub.Message {
	return pubsub.Message{
		From:   from,
		ID:     id,
		Head:   []byte(`{"type":"message","message":"` + text + `"`),
		Topics: topics,
		Prefix: []byte("!msg x "),
	}
}

// text returns the message text of a stored frame, checking that it is
// valid JSON and ends with its seq.
func text(t testing.TB, e pubsub.Entry) string {
	t.Helper()
	var m struct {
		Message string `json:"message"`
		Seq     uint64 `json:"seq"`
	}
	if err := json.Unmarshal(e.Frame, &m); err != nil {
		t.Fatalf("stored frame %q: %v", e.Frame, err)
	}
	if m.Seq != e.Seq || !strings.HasSuffix(string(e.Frame), fmt.Sprintf(`,"seq":%d}`, e.Seq)) {
		t.Fatalf("stored frame %q has not seq %d as its last member", e.Frame, e.Seq)
	}
	return m.Message
}

func texts(t testing.TB, p pubsub.Page) []string {
	t.Helper()
	out := []string{}
	for i, e := range p.Messages {
		if i > 0 && e.Seq != p.Messages[i-1].Seq+1 {
			t.Fatalf("page seqs not consecutive and increasing: %d after %d", e.Seq, p.Messages[i-1].Seq)
		}
		out = append(out, text(t, e))
	}
	return out
}

// channelWith creates channel owned by alice with the members.
func channelWith(t *testing.T, b pubsub.Backend, channel string, members ...string) {
	t.Helper()
	ctx := ctxT(t)
	must(t, b.CreateChannel(ctx, channel, alice, pubsub.Notice{}))
	for _, m := range members {
		_, err := b.Join(ctx, channel, peer(m))
		must(t, err)
	}
}

func send(t *testing.T, b pubsub.Backend, channel string, m pubsub.Message) pubsub.Stored {
	t.Helper()
	st, err := b.PublishMessage(ctxT(t), channel, m)
	must(t, err)
	return st
}

// A member's message is stored and published, the payload carrying the
// prefix, the seq and the stored frame; a non-member's is neither.
func testPublishMessage(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	rec := NewRecorder()
	b := f.open(t, pubsub.HistoryOptions{})(rec.Handle)
	channelWith(t, b, "#pm", alice)
	must(t, b.Subscribe(ctx, "c:#pm"))
	_, err := b.PublishMessage(ctx, "#none", msg(alice, "", "x", "c:#pm"))
	wantErr(t, "unknown channel", err, pubsub.ErrNotFound)
	_, err = b.PublishMessage(ctx, "#pm", msg(bob, "", "x", "c:#pm"))
	wantErr(t, "not a member", err, pubsub.ErrNotMember)
	st := send(t, b, "#pm", msg(alice, "", "from alice", "c:#pm"))
	if st.Seq != 1 || st.Duplicate {
		t.Fatalf("first message stored as %+v, want seq 1", st)
	}
	must(t, b.Leave(ctx, "#pm", alice, pubsub.Notice{}))
	_, err = b.PublishMessage(ctx, "#pm", msg(alice, "", "x", "c:#pm"))
	wantErr(t, "after leaving", err, pubsub.ErrNotMember)
	want := `!msg x 1` + "\n" + `{"type":"message","message":"from alice","seq":1}`
	if got := drain(t, b, rec, "c:#pm"); !slices.Equal(got, []string{want}) {
		t.Fatalf("published %q, want only %q", got, want)
	}
	p, err := b.Range(ctx, "#pm", pubsub.Query{Limit: 10})
	must(t, err)
	if got := texts(t, p); !slices.Equal(got, []string{"from alice"}) {
		t.Fatalf("stored %q, want only the member's message", got)
	}
}

// Each log numbers its messages from 1, and channels and conversations do
// not share numbers.
func testNumbering(t *testing.T, f BackendFactory) {
	b := f.open(t, pubsub.HistoryOptions{})(nil)
	channelWith(t, b, "#a", bob)
	channelWith(t, b, "#b", bob)
	for i := uint64(1); i <= 3; i++ {
		if st := send(t, b, "#a", msg(bob, "", "a")); st.Seq != i {
			t.Fatalf("#a message %d got seq %d", i, st.Seq)
		}
	}
	if st := send(t, b, "#b", msg(bob, "", "b")); st.Seq != 1 {
		t.Fatalf("#b's first message got seq %d", st.Seq)
	}
	st, err := b.PublishDirect(ctxT(t), pubsub.Peer{ID: bob, Username: "bob"}, pubsub.Peer{ID: carol, Username: "carol"}, msg(bob, "", "dm"))
	must(t, err)
	if st.Seq != 1 {
		t.Fatalf("a conversation's first message got seq %d", st.Seq)
	}
	latest, err := b.Latest(ctxT(t), "#a", "#b", pubsub.Conversation(carol, bob), "#none")
	must(t, err)
	if !slices.Equal(latest, []uint64{3, 1, 1, 0}) {
		t.Fatalf("latest %v, want [3 1 1 0]", latest)
	}
	last, err := b.Last(ctxT(t), "#a", "#b", pubsub.Conversation(carol, bob), "#none")
	must(t, err)
	if !slices.Equal(last, []uint64{3, 1, 1, 0}) {
		t.Fatalf("last %v, want [3 1 1 0]", last)
	}
}

// Range pages a log from the newest, before a seq and after one.
func testRange(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	b := f.open(t, pubsub.HistoryOptions{})(nil)
	p, err := b.Range(ctx, "#never", pubsub.Query{Limit: 5})
	must(t, err)
	if p.First != 1 || len(p.Messages) != 0 || p.More {
		t.Fatalf("a log never written: %+v, want first 1, nothing, no more", p)
	}
	channelWith(t, b, "#r", bob)
	for i := 1; i <= 12; i++ {
		send(t, b, "#r", msg(bob, "", fmt.Sprint(i)))
	}
	seqs := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprint(i))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    pubsub.Query
		want []string
		more bool
	}{
		{"newest", pubsub.Query{Limit: 5}, seqs(8, 12), true},
		{"newest, all", pubsub.Query{Limit: 50}, seqs(1, 12), false},
		{"before", pubsub.Query{Before: 8, Limit: 5}, seqs(3, 7), true},
		{"before, to the start", pubsub.Query{Before: 4, Limit: 5}, seqs(1, 3), false},
		{"before the first", pubsub.Query{Before: 1, Limit: 5}, []string{}, false},
		{"before beyond the newest", pubsub.Query{Before: 100, Limit: 2}, seqs(11, 12), true},
		{"after", pubsub.Query{After: 3, FromAfter: true, Limit: 5}, seqs(4, 8), true},
		{"after, to the end", pubsub.Query{After: 9, FromAfter: true, Limit: 5}, seqs(10, 12), false},
		{"after zero", pubsub.Query{After: 0, FromAfter: true, Limit: 2}, seqs(1, 2), true},
		{"after the newest", pubsub.Query{After: 12, FromAfter: true, Limit: 5}, []string{}, false},
	} {
		p, err := b.Range(ctx, "#r", tc.q)
		must(t, err)
		if got := texts(t, p); !slices.Equal(got, tc.want) || p.More != tc.more || p.First != 1 {
			t.Errorf("%s: %q more %v first %d; want %q more %v first 1", tc.name, got, p.More, p.First, tc.want, tc.more)
		}
	}
	for _, q := range []pubsub.Query{{Limit: 0}, {Before: 3, After: 1, FromAfter: true, Limit: 1}} {
		_, err := b.Range(ctx, "#r", q)
		wantErr(t, fmt.Sprintf("query %+v", q), err, pubsub.ErrBadQuery)
	}
}

// A log keeps exactly its newest Limit messages.
func testTrimByCount(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	b := f.open(t, pubsub.HistoryOptions{Limit: 5})(nil)
	channelWith(t, b, "#t", bob)
	for i := 1; i <= 9; i++ {
		send(t, b, "#t", msg(bob, "", fmt.Sprint(i)))
	}
	p, err := b.Range(ctx, "#t", pubsub.Query{Limit: 50})
	must(t, err)
	if got := texts(t, p); !slices.Equal(got, []string{"5", "6", "7", "8", "9"}) || p.First != 5 || p.More {
		t.Fatalf("kept %q first %d more %v, want 5 to 9, first 5", got, p.First, p.More)
	}
	p, err = b.Range(ctx, "#t", pubsub.Query{Before: 7, Limit: 50})
	must(t, err)
	if got := texts(t, p); !slices.Equal(got, []string{"5", "6"}) || p.More {
		t.Fatalf("before 7: %q more %v, want 5 6 and no more", got, p.More)
	}
}

// With a TTL, no message older than it is returned, and the rest are.
func testTrimByAge(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	const ttl = 400 * time.Millisecond
	b := f.open(t, pubsub.HistoryOptions{TTL: ttl})(nil)
	channelWith(t, b, "#age", bob)
	send(t, b, "#age", msg(bob, "", "old"))
	time.Sleep(ttl + 100*time.Millisecond)
	send(t, b, "#age", msg(bob, "", "new"))
	p, err := b.Range(ctx, "#age", pubsub.Query{Limit: 50})
	must(t, err)
	if got := texts(t, p); !slices.Equal(got, []string{"new"}) || p.First != 2 {
		t.Fatalf("kept %q first %d, want only the new one, first 2", got, p.First)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	p, err = b.Range(ctx, "#age", pubsub.Query{Limit: 50})
	must(t, err)
	if len(p.Messages) != 0 || p.First != 3 {
		t.Fatalf("after the TTL: %d messages, first %d; want none, first 3", len(p.Messages), p.First)
	}
	latest, err := b.Latest(ctx, "#age")
	must(t, err)
	last, err := b.Last(ctx, "#age")
	must(t, err)
	if latest[0] != 0 || last[0] != 2 {
		t.Fatalf("latest %d, last %d of a log whose messages all expired; want 0 and 2", latest[0], last[0])
	}
	if st := send(t, b, "#age", msg(bob, "", "again")); st.Seq != 3 {
		t.Fatalf("numbering after expiry: seq %d, want 3", st.Seq)
	}
}

// Destroy deletes a channel's messages; created again, it numbers on.
func testDestroyHistory(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	b := f.open(t, pubsub.HistoryOptions{})(nil)
	channelWith(t, b, "#d", bob)
	send(t, b, "#d", msg(bob, "", "1"))
	send(t, b, "#d", msg(bob, "", "2"))
	_, err := b.DestroyChannel(ctx, "#d", alice, pubsub.Notice{})
	must(t, err)
	p, err := b.Range(ctx, "#d", pubsub.Query{Limit: 50})
	must(t, err)
	if len(p.Messages) != 0 || p.First != 3 {
		t.Fatalf("after destroy: %d messages, first %d; want none, first 3", len(p.Messages), p.First)
	}
	channelWith(t, b, "#d", bob)
	v, err := b.View(ctx, bob)
	must(t, err)
	if _, ok := v.Latest["#d"]; ok || v.Last["#d"] != 2 {
		t.Fatalf("re-created channel in a view: latest %v, last %v; want no latest, last 2", v.Latest, v.Last)
	}
	if st := send(t, b, "#d", msg(bob, "", "3")); st.Seq != 3 {
		t.Fatalf("first message after re-creating got seq %d, want 3", st.Seq)
	}
}

// A message with an id is stored and published once per sender, log and
// id: a repeat gets the first's seq and publishes nothing.
func testIdempotent(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	rec := NewRecorder()
	open := f.open(t, pubsub.HistoryOptions{})
	b := open(rec.Handle)
	other := open(nil) // another node: the retry may come through any
	channelWith(t, b, "#i", bob, carol)
	channelWith(t, b, "#j", bob)
	must(t, b.Subscribe(ctx, "c:#i"))
	first := send(t, b, "#i", msg(bob, "7", "once", "c:#i"))
	again := send(t, other, "#i", msg(bob, "7", "once, retried", "c:#i"))
	if again.Seq != first.Seq || !again.Duplicate || first.Duplicate {
		t.Fatalf("retry stored as %+v after %+v, want the same seq, a duplicate", again, first)
	}
	// The same id of another sender, or in another log, is another message.
	if st := send(t, b, "#i", msg(carol, "7", "carol's", "c:#i")); st.Duplicate || st.Seq != 2 {
		t.Fatalf("carol's message with bob's id: %+v, want seq 2", st)
	}
	if st := send(t, b, "#j", msg(bob, "7", "elsewhere")); st.Duplicate {
		t.Fatalf("bob's id in another channel: %+v, want a new message", st)
	}
	// No id: never a duplicate.
	send(t, b, "#i", msg(bob, "", "no id", "c:#i"))
	send(t, b, "#i", msg(bob, "", "no id", "c:#i"))
	if got := len(drain(t, b, rec, "c:#i")); got != 4 {
		t.Fatalf("%d payloads published, want 4 (the retry not among them)", got)
	}
	p, err := b.Range(ctx, "#i", pubsub.Query{Limit: 50})
	must(t, err)
	if got := texts(t, p); !slices.Equal(got, []string{"once", "carol's", "no id", "no id"}) {
		t.Fatalf("stored %q", got)
	}
	// A retry that comes after the sender left still gets the first's
	// seq: the message was stored while it was a member, and the sender
	// must not be told it failed.
	must(t, b.Leave(ctx, "#i", bob, pubsub.Notice{}))
	if st, err := other.PublishMessage(ctx, "#i", msg(bob, "7", "once, retried late", "c:#i")); err != nil || st.Seq != first.Seq || !st.Duplicate {
		t.Fatalf("retry after a leave: %+v, %v; want a duplicate of %+v", st, err, first)
	}
	if _, err := other.PublishMessage(ctx, "#i", msg(bob, "8", "new", "c:#i")); !errors.Is(err, pubsub.ErrNotMember) {
		t.Fatalf("a new message after the leave: %v, want ErrNotMember", err)
	}
}

// A private message is stored once for both users, published to both
// topics (once to a user writing to itself), and makes the conversation
// the most recent of both.
func testDirect(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	rec := NewRecorder()
	b := f.open(t, pubsub.HistoryOptions{})(rec.Handle)
	must(t, b.Subscribe(ctx, "u:bob"))
	must(t, b.Subscribe(ctx, "u:carol"))
	bobP, carolP := pubsub.Peer{ID: bob, Username: "bob"}, pubsub.Peer{ID: carol, Username: "carol"}
	for i, from := range []pubsub.Peer{bobP, carolP, bobP} {
		to := carolP
		if from == carolP {
			to = bobP
		}
		st, err := b.PublishDirect(ctx, from, to, msg(from.ID, "", fmt.Sprint(i), "u:"+to.Username, "u:"+from.Username))
		must(t, err)
		if st.Seq != uint64(i+1) {
			t.Fatalf("message %d of the conversation got seq %d", i, st.Seq)
		}
	}
	self, err := b.PublishDirect(ctx, bobP, bobP, msg(bob, "", "note", "u:bob"))
	must(t, err)
	if self.Seq != 1 {
		t.Fatalf("a note to self got seq %d, want 1 (a log of its own)", self.Seq)
	}
	if got := len(drain(t, b, rec, "u:bob")); got != 4 {
		t.Fatalf("bob's topic got %d payloads, want 4", got)
	}
	if got := len(drain(t, b, rec, "u:carol")); got != 3 {
		t.Fatalf("carol's topic got %d payloads, want 3", got)
	}
	p, err := b.Range(ctx, pubsub.Conversation(carol, bob), pubsub.Query{Limit: 10})
	must(t, err)
	if got := texts(t, p); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("conversation stored %q", got)
	}
	v, err := b.View(ctx, bob)
	must(t, err)
	if !slices.Equal(v.Peers, []pubsub.Peer{bobP, carolP}) {
		t.Fatalf("bob's recent conversations %+v, want himself, then carol", v.Peers)
	}
}

// A View lists memberships, the recent conversations (at most
// RecentConversations), the newest seq of each and the epoch.
func testView(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	b := f.open(t, pubsub.HistoryOptions{})(nil)
	v, err := b.View(ctx, bob)
	must(t, err)
	if len(v.Joined) != 0 || len(v.Owned) != 0 || len(v.Peers) != 0 || len(v.Latest) != 0 || v.Epoch == "" {
		t.Fatalf("a new user's view %+v, want empty lists and an epoch", v)
	}
	channelWith(t, b, "#quiet", bob)
	channelWith(t, b, "#busy", bob)
	must(t, b.CreateChannel(ctx, "#own", bob, pubsub.Notice{}))
	send(t, b, "#busy", msg(bob, "", "1"))
	send(t, b, "#busy", msg(bob, "", "2"))
	bobP := pubsub.Peer{ID: bob, Username: "bob"}
	for i := range pubsub.RecentConversations + 5 {
		peer := pubsub.Peer{ID: fmt.Sprintf("00000000-0000-4000-8000-1%011d", i), Username: fmt.Sprint("p", i)}
		_, err := b.PublishDirect(ctx, peer, bobP, msg(peer.ID, "", "hi"))
		must(t, err)
	}
	v, err = b.View(ctx, bob)
	must(t, err)
	if !slices.Equal(v.Joined, []string{"#busy", "#quiet"}) || !slices.Equal(v.Owned, []string{"#own"}) {
		t.Fatalf("joined %q owned %q", v.Joined, v.Owned)
	}
	if len(v.Peers) != pubsub.RecentConversations || v.Peers[0].Username != fmt.Sprint("p", pubsub.RecentConversations+4) {
		t.Fatalf("%d peers, newest %+v; want %d, p%d first", len(v.Peers), v.Peers[0], pubsub.RecentConversations, pubsub.RecentConversations+4)
	}
	if len(v.Latest) != 1+pubsub.RecentConversations || v.Latest["#busy"] != 2 {
		t.Fatalf("latest has %d logs, #busy at %d; want #busy (2) and every recent conversation, not #quiet", len(v.Latest), v.Latest["#busy"])
	}
	if v.Latest[pubsub.Conversation(bob, v.Peers[0].ID)] != 1 {
		t.Fatal("the newest conversation's latest is not 1")
	}
}

// The epoch is the same on every node of a store and across calls; a
// wiped store gets a new one and numbers from 1 again.
func testEpoch(t *testing.T, f BackendFactory) {
	ctx := ctxT(t)
	open, wipe := f.Cluster(t, pubsub.HistoryOptions{})
	a, b := open(nil), open(nil)
	e1, err := a.Epoch(ctx)
	must(t, err)
	e2, err := b.Epoch(ctx)
	must(t, err)
	if e1 == "" || e1 != e2 {
		t.Fatalf("epochs %q and %q of one store", e1, e2)
	}
	other, err := f.open(t, pubsub.HistoryOptions{})(nil).Epoch(ctx)
	must(t, err)
	if other == e1 {
		t.Fatalf("two stores share the epoch %q", e1)
	}
	if wipe == nil {
		return
	}
	channelWith(t, a, "#e", bob)
	send(t, a, "#e", msg(bob, "", "before"))
	wipe()
	e3, err := b.Epoch(ctx)
	must(t, err)
	if e3 == e1 {
		t.Fatal("the epoch of a wiped store did not change")
	}
	channelWith(t, a, "#e", bob)
	if st := send(t, a, "#e", msg(bob, "", "after")); st.Seq != 1 {
		t.Fatalf("first message after the wipe got seq %d, want 1", st.Seq)
	}
}

// Nodes racing to publish in one channel get distinct, gapless seqs, and
// each node's sends are numbered in the order it sent them.
func testConcurrentNumbering(t *testing.T, f BackendFactory) {
	open := f.open(t, pubsub.HistoryOptions{})
	nodes := []pubsub.Backend{open(nil), open(nil), open(nil)}
	channelWith(t, nodes[0], "#race", bob)
	const each = 50
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			last := uint64(0)
			for range each {
				st, err := n.PublishMessage(context.Background(), "#race", msg(bob, "", "r"))
				if err != nil {
					t.Error(err)
					return
				}
				if st.Seq <= last {
					t.Errorf("a node's sends numbered out of order: %d after %d", st.Seq, last)
				}
				last = st.Seq
				mu.Lock()
				seen[st.Seq] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i := uint64(1); i <= uint64(len(nodes)*each); i++ {
		if !seen[i] {
			t.Fatalf("seq %d never given (got %d seqs)", i, len(seen))
		}
	}
}
