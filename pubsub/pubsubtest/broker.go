// Package pubsubtest is the conformance suite of the pubsub contracts: every
// implementation of Broker and Registry runs the same cases (RunBroker,
// RunRegistry) from its own tests.
package pubsubtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wirechat/chat/pubsub"
)

// waitFor bounds every wait for a delivery. It is a safety net that ends
// a broken test, not a measure of speed.
const waitFor = 10 * time.Second

// BrokerFactory makes the brokers of one test.
type BrokerFactory struct {
	// Cluster prepares a backend of t's own and returns a function that
	// starts a node on it: nodes of one Cluster share the backend, as the
	// nodes of a cluster do. Nodes are closed by the suite or at the end
	// of t (the factory registers that with t.Cleanup).
	Cluster func(t *testing.T) (newNode func(h pubsub.Handler) pubsub.Broker)

	// SingleNode says that the backend holds one node only (memory): the
	// cases with several nodes are left out.
	SingleNode bool

	// Sharded says that topics may travel on different connections (a
	// Redis Cluster's shards): payloads keep their order within a topic
	// only, and PublishAll is one atomic step only for topics of one
	// shard. The cases check order per topic.
	Sharded bool
}

// drain returns what topic has delivered so far: it publishes a marker on
// topic and waits for it, since a topic's payloads arrive in order (on a
// Redis Cluster, payloads of different topics need not).
func drain(t *testing.T, b pubsub.Broker, rec *Recorder, topic string) []string {
	t.Helper()
	const marker = "\x00drained"
	must(t, b.Publish(ctxT(t), topic, []byte(marker)))
	got := rec.WaitFor(t, "the marker on "+topic, func(ds []Delivery) bool {
		return slices.Contains(ds, Delivery{topic, marker})
	})
	var out []string
	for _, d := range got {
		if d.Topic == topic {
			if d.Payload == marker {
				break
			}
			out = append(out, d.Payload)
		}
	}
	return out
}

// byTopic returns each topic's payloads, in order.
func byTopic(ds []Delivery) map[string][]string {
	out := make(map[string][]string)
	for _, d := range ds {
		out[d.Topic] = append(out[d.Topic], d.Payload)
	}
	return out
}

// RunBroker runs the Broker conformance cases.
func RunBroker(t *testing.T, f BrokerFactory) {
	t.Run("PublishSubscribe", func(t *testing.T) { testPublishSubscribe(t, f) })
	t.Run("PublishAll", func(t *testing.T) { testPublishAll(t, f) })
	t.Run("RegistryNotices", func(t *testing.T) { testRegistryNotices(t, f) })
	t.Run("NotSubscribed", func(t *testing.T) { testNotSubscribed(t, f) })
	t.Run("Unsubscribe", func(t *testing.T) { testUnsubscribe(t, f) })
	t.Run("SubscribeTwice", func(t *testing.T) { testSubscribeTwice(t, f) })
	t.Run("Payloads", func(t *testing.T) { testPayloads(t, f) })
	t.Run("Order", func(t *testing.T) { testOrder(t, f) })
	t.Run("ConcurrentPublish", func(t *testing.T) { testConcurrentPublish(t, f) })
	t.Run("Subscribers", func(t *testing.T) { testSubscribers(t, f) })
	t.Run("Healthy", func(t *testing.T) { testHealthy(t, f) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, f) })
	if !f.SingleNode {
		t.Run("AcrossNodes", func(t *testing.T) { testAcrossNodes(t, f) })
		t.Run("SubscribeThenPublishElsewhere", func(t *testing.T) { testSubscribeThenPublishElsewhere(t, f) })
		t.Run("SameOrderOnEveryNode", func(t *testing.T) { testSameOrderOnEveryNode(t, f) })
	}
}

// Delivery is one payload as the handler received it.
type Delivery struct {
	Topic   string
	Payload string
}

// Recorder is a Handler that keeps what it receives.
type Recorder struct {
	mu   sync.Mutex
	got  []Delivery
	more chan struct{} // closed and replaced at every delivery
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{more: make(chan struct{})} }

// Handle is the Handler.
func (r *Recorder) Handle(topic string, payload []byte) {
	r.mu.Lock()
	r.got = append(r.got, Delivery{topic, string(payload)})
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
}

// All returns the deliveries so far.
func (r *Recorder) All() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// Topic returns the payloads received on topic so far.
func (r *Recorder) Topic(topic string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.got {
		if d.Topic == topic {
			out = append(out, d.Payload)
		}
	}
	return out
}

// WaitFor waits until cond holds for the deliveries so far, and fails t if
// it does not within a generous bound.
func (r *Recorder) WaitFor(t testing.TB, what string, cond func([]Delivery) bool) []Delivery {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		r.mu.Lock()
		got, more := r.got, r.more
		ok := cond(got)
		r.mu.Unlock()
		if ok {
			return slices.Clone(got)
		}
		select {
		case <-more:
		case <-timer.C:
			t.Fatalf("waited %v for %s; got %d deliveries: %.20v", waitFor, what, len(got), got)
		}
	}
}

// WaitTopic waits until topic has received n payloads and returns them.
func (r *Recorder) WaitTopic(t testing.TB, topic string, n int) []string {
	t.Helper()
	r.WaitFor(t, fmt.Sprintf("%d payloads on %q", n, topic), func(ds []Delivery) bool {
		c := 0
		for _, d := range ds {
			if d.Topic == topic {
				c++
			}
		}
		return c >= n
	})
	return r.Topic(topic)
}

func node(t *testing.T, f BrokerFactory) (pubsub.Broker, *Recorder) {
	rec := NewRecorder()
	return f.Cluster(t)(rec.Handle), rec
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A registry change publishes its notice if and only if it was made.
func testRegistryNotices(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	r, ok := b.(pubsub.Registry)
	if !ok {
		t.Skip("this backend's Broker is not its Registry")
	}
	must(t, b.Subscribe(ctx, "ev"))
	n := func(p string) pubsub.Notice { return pubsub.Notice{Topic: "ev", Payload: []byte(p)} }
	must(t, r.CreateChannel(ctx, "#n", alice, n("created")))
	wantErr(t, "create again", r.CreateChannel(ctx, "#n", bob, n("created twice")), pubsub.ErrExists)
	wantErr(t, "leave, not a member", r.Leave(ctx, "#n", bob, n("bob left")), pubsub.ErrNotMember)
	_, err := r.Join(ctx, "#n", peer(bob))
	must(t, err)
	must(t, r.Leave(ctx, "#n", bob, n("bob left")))
	_, err = r.DestroyChannel(ctx, "#n", bob, n("destroyed by bob"))
	wantErr(t, "destroy, not the owner", err, pubsub.ErrForbidden)
	_, err = r.DestroyChannel(ctx, "#n", alice, n("destroyed"))
	must(t, err)
	must(t, r.CreateChannel(ctx, "#quiet", alice, pubsub.Notice{}))
	must(t, b.Publish(ctx, "ev", []byte("end")))
	want := []string{"created", "bob left", "destroyed", "end"}
	if got := rec.WaitTopic(t, "ev", len(want)); !slices.Equal(got, want) {
		t.Fatalf("notices %q, want %q", got, want)
	}
}

func testPublishSubscribe(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	must(t, b.Subscribe(ctx, "c:#go"))
	must(t, b.Publish(ctx, "c:#go", []byte("hello")))
	got := rec.WaitTopic(t, "c:#go", 1)
	if !slices.Equal(got, []string{"hello"}) {
		t.Fatalf("got %q, want [hello]", got)
	}
}

// PublishAll publishes on each topic in order, skips unsubscribed ones
// like Publish, and lets no other publish come between its topics, even
// one racing it on the same topic from another node.
func testPublishAll(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	newNode := f.Cluster(t)
	rec := NewRecorder()
	b := newNode(rec.Handle)
	racer := b // publishes on a while b publishes pairs
	if !f.SingleNode {
		racer = newNode(NewRecorder().Handle)
	}
	for _, topic := range []string{"a", "b", "marker"} {
		must(t, b.Subscribe(ctx, topic))
	}
	must(t, b.PublishAll(ctx, []string{"a", "unsubscribed", "b"}, []byte("both")))
	must(t, b.PublishAll(ctx, []string{"b"}, []byte("one")))
	must(t, b.PublishAll(ctx, nil, []byte("none")))
	must(t, b.Publish(ctx, "marker", []byte("m")))
	rec.WaitTopic(t, "marker", 1)
	if f.Sharded {
		if got := rec.WaitTopic(t, "a", 1); !slices.Equal(got, []string{"both"}) {
			t.Fatalf("a got %q, want [both]", got)
		}
		if got := rec.WaitTopic(t, "b", 2); !slices.Equal(got, []string{"both", "one"}) {
			t.Fatalf("b got %q, want [both one]", got)
		}
	} else {
		want := []Delivery{{"a", "both"}, {"b", "both"}, {"b", "one"}, {"marker", "m"}}
		if got := rec.All(); !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}

	const n = 200
	var wg sync.WaitGroup
	var racerErr error
	wg.Go(func() {
		for i := range n {
			if racerErr = racer.Publish(ctx, "a", []byte("racer-"+strconv.Itoa(i))); racerErr != nil {
				return
			}
		}
	})
	for i := range n {
		must(t, b.PublishAll(ctx, []string{"a", "b"}, []byte("pair-"+strconv.Itoa(i))))
	}
	wg.Wait()
	must(t, racerErr)
	must(t, b.Publish(ctx, "marker", []byte("end")))
	rec.WaitTopic(t, "marker", 2)
	if f.Sharded {
		// Each topic has every pair, in order; a and b are not atomic
		// together.
		rec.WaitTopic(t, "a", 1+2*n)
		rec.WaitTopic(t, "b", 2+n)
		got := byTopic(rec.All())
		var pairsA, racers, pairsB []string
		for _, p := range got["a"][1:] {
			if strings.HasPrefix(p, "pair-") {
				pairsA = append(pairsA, p)
			} else {
				racers = append(racers, p)
			}
		}
		pairsB = got["b"][2:]
		for i := range n {
			if pairsA[i] != "pair-"+strconv.Itoa(i) || pairsB[i] != "pair-"+strconv.Itoa(i) || racers[i] != "racer-"+strconv.Itoa(i) {
				t.Fatalf("payload %d out of order: a's pairs %q, b's %q, the racer's %q", i, pairsA[i], pairsB[i], racers[i])
			}
		}
		return
	}
	all := rec.All()
	pairs := 0
	for i, d := range all {
		if d.Topic == "a" && strings.HasPrefix(d.Payload, "pair-") {
			pairs++
			if i+1 == len(all) || all[i+1] != (Delivery{"b", d.Payload}) {
				t.Fatalf("%v on a is not followed at once by the same on b: %v", d, all[i:min(i+3, len(all))])
			}
		}
	}
	if pairs != n {
		t.Fatalf("%d pairs arrived, want %d", pairs, n)
	}
}

// A payload on a topic the node did not subscribe to never arrives: the
// backend delivers in order, so once a later payload on a subscribed topic
// is in, the earlier one would have been too.
func testNotSubscribed(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	must(t, b.Subscribe(ctx, "marker"))
	must(t, b.Publish(ctx, "other", []byte("no")))
	must(t, b.Publish(ctx, "marker", []byte("yes")))
	rec.WaitTopic(t, "marker", 1)
	if got := rec.All(); len(got) != 1 {
		t.Fatalf("got %v, want only the marker", got)
	}
}

func testUnsubscribe(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	must(t, b.Subscribe(ctx, "a"))
	must(t, b.Subscribe(ctx, "marker"))
	must(t, b.Publish(ctx, "a", []byte("1")))
	rec.WaitTopic(t, "a", 1)
	must(t, b.Unsubscribe(ctx, "a"))
	must(t, b.Unsubscribe(ctx, "never-subscribed"))
	must(t, b.Publish(ctx, "a", []byte("2")))
	must(t, b.Publish(ctx, "marker", []byte("m")))
	rec.WaitTopic(t, "marker", 1)
	if got := rec.Topic("a"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("after unsubscribe got %q on a, want [1]", got)
	}
	// Subscribing again works, and at once.
	must(t, b.Subscribe(ctx, "a"))
	must(t, b.Publish(ctx, "a", []byte("3")))
	if got := rec.WaitTopic(t, "a", 2); !slices.Equal(got, []string{"1", "3"}) {
		t.Fatalf("after resubscribe got %q on a, want [1 3]", got)
	}
}

func testSubscribeTwice(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	must(t, b.Subscribe(ctx, "t"))
	must(t, b.Subscribe(ctx, "t"))
	must(t, b.Subscribe(ctx, "marker"))
	must(t, b.Publish(ctx, "t", []byte("once")))
	if got := drain(t, b, rec, "t"); !slices.Equal(got, []string{"once"}) {
		t.Fatalf("got %q, want [once]", got)
	}
	// One Unsubscribe ends it.
	must(t, b.Unsubscribe(ctx, "t"))
	must(t, b.Publish(ctx, "t", []byte("gone")))
	must(t, b.Publish(ctx, "marker", []byte("m")))
	rec.WaitTopic(t, "marker", 1)
	if got := rec.Topic("t"); slices.Contains(got, "gone") {
		t.Fatalf("got %q after the unsubscribe", got)
	}
}

// Payloads are opaque bytes: empty, binary, large, and topics with the
// characters the gateway uses.
func testPayloads(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	payloads := [][]byte{{}, {0, 1, 2, 0xff, 0}, []byte("!control"), []byte(`{"type":"message"}`), big}
	topics := []string{"cluster", "u:6f1c3c2e-8b0a-4b8e-9a57-2b9c1d0e4f11", "c:#go-lang_2", "with space", "ünï"}
	for _, tp := range topics {
		must(t, b.Subscribe(ctx, tp))
	}
	for i, tp := range topics {
		must(t, b.Publish(ctx, tp, payloads[i]))
	}
	for i, tp := range topics {
		got := rec.WaitTopic(t, tp, 1)
		if len(got) != 1 || got[0] != string(payloads[i]) {
			t.Fatalf("topic %q: got %d payloads, want exactly the %d bytes published", tp, len(got), len(payloads[i]))
		}
	}
}

// One publisher's payloads arrive in the order published.
func testOrder(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	const n = 2000
	must(t, b.Subscribe(ctx, "a"))
	must(t, b.Subscribe(ctx, "b"))
	var want []Delivery
	for i := range n {
		tp := []string{"a", "b"}[i%3%2]
		p := strconv.Itoa(i)
		must(t, b.Publish(ctx, tp, []byte(p)))
		want = append(want, Delivery{tp, p})
	}
	got := rec.WaitFor(t, "every payload", func(ds []Delivery) bool { return len(ds) >= n })
	if f.Sharded {
		w, g := byTopic(want), byTopic(got)
		for _, tp := range []string{"a", "b"} {
			if !slices.Equal(g[tp], w[tp]) {
				t.Fatalf("deliveries on %s out of order or wrong: first 10 %v", tp, g[tp][:min(10, len(g[tp]))])
			}
		}
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("deliveries out of order or wrong: first 10 %v", got[:10])
	}
}

// Many goroutines publish at once: every payload arrives once, and each
// goroutine's payloads in its order.
func testConcurrentPublish(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, rec := node(t, f)
	const pubs, each = 16, 300
	must(t, b.Subscribe(ctx, "t"))
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for g := range pubs {
		wg.Go(func() {
			for i := range each {
				if err := b.Publish(ctx, "t", fmt.Appendf(nil, "%d/%d", g, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := rec.WaitTopic(t, "t", pubs*each)
	if len(got) != pubs*each {
		t.Fatalf("got %d payloads, want %d", len(got), pubs*each)
	}
	next := make([]int, pubs)
	for _, p := range got {
		var g, i int
		fmt.Sscanf(p, "%d/%d", &g, &i)
		if i != next[g] {
			t.Fatalf("publisher %d: got %d, want %d", g, i, next[g])
		}
		next[g]++
	}
}

// wantSubscribers checks how many nodes b counts on topic.
func wantSubscribers(t *testing.T, b pubsub.Broker, topic string, want int) {
	t.Helper()
	n, err := b.Subscribers(ctxT(t), topic)
	must(t, err)
	if len(n) != 1 || n[0] != want {
		t.Fatalf("Subscribers(%q) = %v, want [%d]", topic, n, want)
	}
}

func testSubscribers(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	newNode := f.Cluster(t)
	a := newNode(func(string, []byte) {})
	wantSubscribers(t, a, "t", 0)
	must(t, a.Subscribe(ctx, "t"))
	wantSubscribers(t, a, "t", 1)
	if !f.SingleNode {
		b := newNode(func(string, []byte) {})
		must(t, b.Subscribe(ctx, "t"))
		must(t, b.Subscribe(ctx, "only-b"))
		wantSubscribers(t, a, "t", 2)
		// Many topics at once, in the order asked, a repeat included.
		n, err := a.Subscribers(ctx, "only-b", "none", "t", "only-b")
		must(t, err)
		if want := []int{1, 0, 2, 1}; !slices.Equal(n, want) {
			t.Fatalf("Subscribers(only-b, none, t, only-b) = %v, want %v", n, want)
		}
		must(t, b.Unsubscribe(ctx, "t"))
	}
	must(t, a.Unsubscribe(ctx, "t"))
	wantSubscribers(t, a, "t", 0)
}

func testHealthy(t *testing.T, f BrokerFactory) {
	b, _ := node(t, f)
	waitHealthy(t, b, true)
	must(t, b.Close())
	if b.Healthy() {
		t.Fatal("healthy after Close")
	}
}

// WaitHealthy waits until b.Healthy() is want.
func WaitHealthy(t testing.TB, b pubsub.Broker, want bool, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for b.Healthy() != want {
		if time.Since(start) > bound {
			t.Fatalf("Healthy() stayed %v for %v", !want, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func waitHealthy(t testing.TB, b pubsub.Broker, want bool) {
	t.Helper()
	WaitHealthy(t, b, want, waitFor)
}

func testClosed(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	b, _ := node(t, f)
	must(t, b.Subscribe(ctx, "t"))
	must(t, b.Close())
	if err := b.Publish(ctx, "t", []byte("x")); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	for _, topics := range [][]string{{"t", "u"}, nil} {
		if err := b.PublishAll(ctx, topics, []byte("x")); !errors.Is(err, pubsub.ErrClosed) {
			t.Errorf("PublishAll(%q) after Close: %v, want ErrClosed", topics, err)
		}
	}
	if err := b.Subscribe(ctx, "u"); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := b.Unsubscribe(ctx, "t"); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Unsubscribe after Close: %v, want ErrClosed", err)
	}
}

// A payload published on one node reaches every node subscribed, the
// publisher included.
func testAcrossNodes(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	newNode := f.Cluster(t)
	ra, rb, rc := NewRecorder(), NewRecorder(), NewRecorder()
	a, b, c := newNode(ra.Handle), newNode(rb.Handle), newNode(rc.Handle)
	must(t, a.Subscribe(ctx, "t"))
	must(t, b.Subscribe(ctx, "t"))
	must(t, c.Subscribe(ctx, "marker"))
	must(t, c.Publish(ctx, "t", []byte("from c")))
	must(t, a.Publish(ctx, "t", []byte("from a")))
	want := []string{"from c", "from a"}
	for name, r := range map[string]*Recorder{"a": ra, "b": rb} {
		if got := r.WaitTopic(t, "t", 2); !slices.Equal(got, want) {
			t.Errorf("node %s got %q, want %q", name, got, want)
		}
	}
	must(t, c.Publish(ctx, "marker", []byte("m")))
	rc.WaitTopic(t, "marker", 1)
	if got := rc.Topic("t"); len(got) != 0 {
		t.Errorf("node c, not subscribed, got %q", got)
	}
}

// Once Subscribe returns, a payload published at once by another node
// arrives: Subscribe waited for the backend's confirmation.
func testSubscribeThenPublishElsewhere(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	newNode := f.Cluster(t)
	ra := NewRecorder()
	a, b := newNode(ra.Handle), newNode(func(string, []byte) {})
	const rounds = 300
	for i := range rounds {
		topic := "round-" + strconv.Itoa(i)
		must(t, a.Subscribe(ctx, topic))
		must(t, b.Publish(ctx, topic, []byte("x")))
	}
	ra.WaitFor(t, "one payload per round", func(ds []Delivery) bool { return len(ds) >= rounds })
	got := ra.All()
	if f.Sharded {
		// In any order across topics: one payload each.
		slices.SortFunc(got, func(a, b Delivery) int { return strings.Compare(a.Topic, b.Topic) })
		want := make([]Delivery, rounds)
		for i := range rounds {
			want[i] = Delivery{"round-" + strconv.Itoa(i), "x"}
		}
		slices.SortFunc(want, func(a, b Delivery) int { return strings.Compare(a.Topic, b.Topic) })
		if !slices.Equal(got, want) {
			t.Fatalf("got %d deliveries, want one on each of %d topics", len(got), rounds)
		}
	}
	for i, d := range got {
		if want := "round-" + strconv.Itoa(i); !f.Sharded && d.Topic != want {
			t.Fatalf("delivery %d on %q, want %q", i, d.Topic, want)
		}
	}
	// And the other way round: unsubscribe, subscribe again, publish.
	for i := range 50 {
		must(t, a.Unsubscribe(ctx, "again"))
		must(t, a.Subscribe(ctx, "again"))
		must(t, b.Publish(ctx, "again", []byte(strconv.Itoa(i))))
	}
	if got := ra.WaitTopic(t, "again", 50); len(got) != 50 {
		t.Fatalf("got %d payloads on again, want 50", len(got))
	}
}

// Payloads published concurrently by several nodes reach every node in one
// and the same order.
func testSameOrderOnEveryNode(t *testing.T, f BrokerFactory) {
	ctx := ctxT(t)
	newNode := f.Cluster(t)
	const nodes, each = 3, 300
	recs := make([]*Recorder, nodes)
	bs := make([]pubsub.Broker, nodes)
	for i := range nodes {
		recs[i] = NewRecorder()
		bs[i] = newNode(recs[i].Handle)
		must(t, bs[i].Subscribe(ctx, "t"))
	}
	var wg sync.WaitGroup
	for i, b := range bs {
		wg.Go(func() {
			for j := range each {
				if err := b.Publish(ctx, "t", fmt.Appendf(nil, "%d/%d", i, j)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	first := recs[0].WaitTopic(t, "t", nodes*each)
	for i := 1; i < nodes; i++ {
		if got := recs[i].WaitTopic(t, "t", nodes*each); !slices.Equal(got, first) {
			t.Fatalf("node %d saw another order than node 0", i)
		}
	}
}
