package pubsubtest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wirechat/chat/pubsub"
)

// Members lists a channel's members by username, in pages, with whether
// each is online; a missing channel is ErrNotFound.
func testMembers(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	_, _, err := r.Members(ctx, "#none", "", 10)
	wantErr(t, "members of a missing channel", err, pubsub.ErrNotFound)
	must(t, r.CreateChannel(ctx, "#m", alice, pubsub.Notice{}))
	list, more, err := r.Members(ctx, "#m", "", 10)
	must(t, err)
	if len(list) != 0 || more {
		t.Fatalf("an empty channel lists %v (more %v)", list, more)
	}
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("00000000-0000-4000-a000-%012d", i)
		p := pubsub.Peer{ID: id, Username: fmt.Sprint("m", 6-i)} // joined out of name order
		_, err := r.Join(ctx, "#m", p)
		must(t, err)
		want = append(want, p.Username)
	}
	slices.Sort(want)
	sizes, err := r.Sizes(ctx, "#m", "#none")
	must(t, err)
	if !slices.Equal(sizes, []int{7, 0}) {
		t.Fatalf("sizes %v, want [7 0]", sizes)
	}
	must(t, placed(r.AcquirePlace(ctx, pubsub.Peer{ID: "00000000-0000-4000-a000-000000000002", Username: "m4"}, "c", 5, time.Hour)))
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, more, err := r.Members(ctx, "#m", after, 3)
		must(t, err)
		for _, m := range page {
			got = append(got, m.Username)
			if m.Online != (m.Username == "m4") {
				t.Errorf("%s online = %v", m.Username, m.Online)
			}
		}
		if !more {
			break
		}
		after = page[len(page)-1].Username
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("members by page %v, want %v", got, want)
	}
	must(t, r.Leave(ctx, "#m", "00000000-0000-4000-a000-000000000000", pubsub.Notice{}))
	page, _, err := r.Members(ctx, "#m", "m5", 10)
	must(t, err)
	if len(page) != 0 {
		t.Fatalf("after m5, with m6 gone: %v", page)
	}
	_, err = r.DestroyChannel(ctx, "#m", alice, pubsub.Notice{})
	must(t, err)
	must(t, r.CreateChannel(ctx, "#m", alice, pubsub.Notice{}))
	if page, _, err = r.Members(ctx, "#m", "", 10); err != nil || len(page) != 0 {
		t.Fatalf("a re-created channel lists %v, %v", page, err)
	}
}

// sweep sweeps until want users went offline or the deadline passes.
func sweep(t *testing.T, r pubsub.Registry, want int, d time.Duration) []string {
	t.Helper()
	var gone []string
	deadline := time.Now().Add(d)
	for len(gone) < want && time.Now().Before(deadline) {
		peers, err := r.SweepPresence(ctxT(t), 100)
		must(t, err)
		for _, p := range peers {
			gone = append(gone, p.Username)
		}
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(gone)
	return gone
}

// A user comes online with its first place; goes offline once its last
// is released and the grace has passed, or when its places lapse; a place
// taken within the grace is no change; each change is told once, across
// nodes.
func testPresence(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	open := f.Cluster(t)
	a, b := open(), open()
	const grace = 300 * time.Millisecond
	online, err := a.AcquirePlace(ctx, peer(alice), "a1", 5, time.Hour)
	must(t, err)
	if !online {
		t.Fatal("alice's first place: not online")
	}
	online, err = b.AcquirePlace(ctx, peer(alice), "a2", 5, time.Hour)
	must(t, err)
	if online {
		t.Fatal("alice's second place: online again")
	}
	must(t, a.ReleasePlace(ctx, alice, "a1", grace))
	must(t, b.ReleasePlace(ctx, alice, "a2", grace))
	// Back within the grace: no change, now or later.
	online, err = a.AcquirePlace(ctx, peer(alice), "a3", 5, time.Hour)
	must(t, err)
	if online {
		t.Fatal("alice back within the grace: online again")
	}
	if gone := sweep(t, b, 1, grace+200*time.Millisecond); len(gone) != 0 {
		t.Fatalf("offline while a place is held: %v", gone)
	}
	// Gone for good: offline after the grace, told once across nodes.
	must(t, a.ReleasePlace(ctx, alice, "a3", grace))
	if gone := sweep(t, a, 1, 100*time.Millisecond); len(gone) != 0 {
		t.Fatalf("offline within the grace: %v", gone)
	}
	var gone []string
	deadline := time.Now().Add(5 * time.Second)
	for len(gone) == 0 && time.Now().Before(deadline) {
		for _, r := range []pubsub.Registry{a, b} {
			peers, err := r.SweepPresence(ctx, 100)
			must(t, err)
			for _, p := range peers {
				gone = append(gone, p.Username)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if again := sweep(t, b, 1, 200*time.Millisecond); len(gone) != 1 || gone[0] != "alice" || len(again) != 0 {
		t.Fatalf("offline: %v, then %v; want alice once", gone, again)
	}
	online, err = b.AcquirePlace(ctx, peer(alice), "a4", 5, time.Hour)
	must(t, err)
	if !online {
		t.Fatal("alice back after going offline: not online")
	}
	// A node dies: bob's places lapse, and he goes offline without a
	// release.
	online, err = a.AcquirePlace(ctx, peer(bob), "b1", 5, 200*time.Millisecond)
	must(t, err)
	if !online {
		t.Fatal("bob's first place: not online")
	}
	if gone := sweep(t, b, 1, 5*time.Second); !slices.Equal(gone, []string{"bob"}) {
		t.Fatalf("after bob's places lapsed: %v, want bob", gone)
	}
}

// A read marker only moves up, publishing its notice when it moves; a
// view shows it; leaving the channel drops it.
func testReadMarkers(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	must(t, r.CreateChannel(ctx, "#rm", alice, pubsub.Notice{}))
	_, err := r.Join(ctx, "#rm", peer(bob))
	must(t, err)
	for _, step := range []struct {
		seq   uint64
		moved bool
	}{{5, true}, {3, false}, {5, false}, {9, true}} {
		moved, err := r.MarkRead(ctx, bob, "#rm", step.seq, pubsub.Notice{})
		must(t, err)
		if moved != step.moved {
			t.Fatalf("mark %d: moved %v, want %v", step.seq, moved, step.moved)
		}
	}
	v, err := r.View(ctx, bob)
	must(t, err)
	if v.Read["#rm"] != 9 {
		t.Fatalf("view's read %v, want #rm at 9", v.Read)
	}
	must(t, r.Leave(ctx, "#rm", bob, pubsub.Notice{}))
	_, err = r.Join(ctx, "#rm", peer(bob))
	must(t, err)
	v, err = r.View(ctx, bob)
	must(t, err)
	if _, ok := v.Read["#rm"]; ok {
		t.Fatalf("the marker outlived a leave: %v", v.Read)
	}
	// A destroy drops the members' markers too.
	_, err = r.MarkRead(ctx, bob, "#rm", 2, pubsub.Notice{})
	must(t, err)
	_, err = r.DestroyChannel(ctx, "#rm", alice, pubsub.Notice{})
	must(t, err)
	must(t, r.CreateChannel(ctx, "#rm", alice, pubsub.Notice{}))
	_, err = r.Join(ctx, "#rm", peer(bob))
	must(t, err)
	if moved, err := r.MarkRead(ctx, bob, "#rm", 1, pubsub.Notice{}); err != nil || !moved {
		t.Fatalf("marker after destroy and re-create: moved %v, %v; want it gone and moved", moved, err)
	}
}

// Throttle passes a key once per period, across nodes.
func testThrottle(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	open := f.Cluster(t)
	a, b := open(), open()
	const every = 300 * time.Millisecond
	if ok, err := a.Throttle(ctx, "k", every); err != nil || !ok {
		t.Fatalf("first: %v %v", ok, err)
	}
	if ok, err := b.Throttle(ctx, "k", every); err != nil || ok {
		t.Fatalf("again at once, elsewhere: %v %v", ok, err)
	}
	if ok, err := a.Throttle(ctx, "other", every); err != nil || !ok {
		t.Fatalf("another key: %v %v", ok, err)
	}
	time.Sleep(every + 50*time.Millisecond)
	if ok, err := b.Throttle(ctx, "k", every); err != nil || !ok {
		t.Fatalf("after the period: %v %v", ok, err)
	}
}
