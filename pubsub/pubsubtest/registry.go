package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wirechat/chat/pubsub"
)

// RegistryFactory makes the registries of one test.
type RegistryFactory struct {
	// Cluster prepares a backend of t's own and returns a function that
	// opens a registry on it; registries of one Cluster share the backend,
	// as the nodes of a cluster do (an in-memory backend may return the
	// same registry every time). The factory closes them at the end of t.
	Cluster func(t *testing.T) (open func() pubsub.Registry)

	// Close, if set, closes a registry that open returned; the suite then
	// checks that calls after Close fail with ErrClosed.
	Close func(pubsub.Registry) error
}

// RunRegistry runs the Registry conformance cases.
func RunRegistry(t *testing.T, f RegistryFactory) {
	t.Run("CreateChannel", func(t *testing.T) { testCreate(t, f) })
	t.Run("DestroyChannel", func(t *testing.T) { testDestroy(t, f) })
	t.Run("JoinLeave", func(t *testing.T) { testJoinLeave(t, f) })
	t.Run("Memberships", func(t *testing.T) { testMemberships(t, f) })
	t.Run("CreateRace", func(t *testing.T) { testCreateRace(t, f) })
	t.Run("DestroyRace", func(t *testing.T) { testDestroyRace(t, f) })
	t.Run("DestroyWhileJoining", func(t *testing.T) { testDestroyWhileJoining(t, f) })
	t.Run("PlacesLimit", func(t *testing.T) { testPlacesLimit(t, f) })
	t.Run("PlacesLapse", func(t *testing.T) { testPlacesLapse(t, f) })
	t.Run("PlacesRefresh", func(t *testing.T) { testPlacesRefresh(t, f) })
	t.Run("Allow", func(t *testing.T) { testAllow(t, f) })
	t.Run("Members", func(t *testing.T) { testMembers(t, f) })
	t.Run("Presence", func(t *testing.T) { testPresence(t, f) })
	t.Run("ReadMarkers", func(t *testing.T) { testReadMarkers(t, f) })
	t.Run("Throttle", func(t *testing.T) { testThrottle(t, f) })
	t.Run("Ping", func(t *testing.T) { must(t, f.Cluster(t)().Ping(ctxT(t))) })
	if f.Close != nil {
		t.Run("Closed", func(t *testing.T) { testRegistryClosed(t, f) })
	}
}

const (
	alice = "00000000-0000-4000-8000-00000000000a"
	bob   = "00000000-0000-4000-8000-00000000000b"
	carol = "00000000-0000-4000-8000-00000000000c"
)

// checkMember tells whether user is a member of channel, asking both ways
// (CheckMember, and as a message does: a member's message is stored and
// published on no topic), which must agree.
func checkMember(ctx context.Context, r pubsub.Registry, channel, user string) error {
	err := r.CheckMember(ctx, channel, user)
	_, msgErr := r.PublishMessage(ctx, channel, pubsub.Message{From: user, Head: []byte("{")})
	if !errors.Is(msgErr, err) && !(err == nil && msgErr == nil) {
		return fmt.Errorf("CheckMember says %v, a message %v", err, msgErr)
	}
	return err
}

// peer is the user id with a username, as the gateway passes it.
func peer(id string) pubsub.Peer {
	name := map[string]string{alice: "alice", bob: "bob", carol: "carol"}[id]
	if name == "" {
		name = "u" + id[len(id)-6:]
	}
	return pubsub.Peer{ID: id, Username: name}
}

// placed drops AcquirePlace's online flag.
func placed(_ bool, err error) error { return err }

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func testCreate(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	chans, err := r.Channels(ctx)
	must(t, err)
	if len(chans) != 0 {
		t.Fatalf("fresh registry has channels %q", chans)
	}
	must(t, r.CreateChannel(ctx, "#go", alice, pubsub.Notice{}))
	must(t, r.CreateChannel(ctx, "#al", bob, pubsub.Notice{}))
	wantErr(t, "create existing", r.CreateChannel(ctx, "#go", bob, pubsub.Notice{}), pubsub.ErrExists)
	wantErr(t, "create existing, same owner", r.CreateChannel(ctx, "#go", alice, pubsub.Notice{}), pubsub.ErrExists)
	chans, err = r.Channels(ctx)
	must(t, err)
	if want := []string{"#al", "#go"}; !slices.Equal(chans, want) {
		t.Fatalf("channels %q, want %q", chans, want)
	}
	// The creator owns the channel but is not a member.
	wantErr(t, "creator's membership", checkMember(ctx, r, "#go", alice), pubsub.ErrNotMember)
	_, owned, err := r.Memberships(ctx, alice)
	must(t, err)
	if !slices.Equal(owned, []string{"#go"}) {
		t.Fatalf("alice owns %q, want [#go]", owned)
	}
}

func testDestroy(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	_, err := r.DestroyChannel(ctx, "#none", alice, pubsub.Notice{})
	wantErr(t, "destroy missing", err, pubsub.ErrNotFound)
	must(t, r.CreateChannel(ctx, "#go", alice, pubsub.Notice{}))
	must(t, r.CreateChannel(ctx, "#other", alice, pubsub.Notice{}))
	for _, u := range []string{carol, bob, alice} {
		_, err := r.Join(ctx, "#go", peer(u))
		must(t, err)
	}
	_, err = r.Join(ctx, "#other", peer(bob))
	must(t, err)
	_, err = r.DestroyChannel(ctx, "#go", bob, pubsub.Notice{})
	wantErr(t, "destroy by a member", err, pubsub.ErrForbidden)
	must(t, checkMember(ctx, r, "#go", bob)) // unchanged

	members, err := r.DestroyChannel(ctx, "#go", alice, pubsub.Notice{})
	must(t, err)
	if want := []string{alice, bob, carol}; !slices.Equal(members, want) {
		t.Fatalf("members %q, want %q", members, want)
	}
	chans, err := r.Channels(ctx)
	must(t, err)
	if !slices.Equal(chans, []string{"#other"}) {
		t.Fatalf("channels %q, want [#other]", chans)
	}
	wantErr(t, "check after destroy", checkMember(ctx, r, "#go", bob), pubsub.ErrNotFound)
	wantErr(t, "leave after destroy", r.Leave(ctx, "#go", bob, pubsub.Notice{}), pubsub.ErrNotFound)
	joined, owned, err := r.Memberships(ctx, bob)
	must(t, err)
	if !slices.Equal(joined, []string{"#other"}) || len(owned) != 0 {
		t.Fatalf("bob: joined %q owned %q, want [#other] []", joined, owned)
	}
	_, owned, err = r.Memberships(ctx, alice)
	must(t, err)
	if !slices.Equal(owned, []string{"#other"}) {
		t.Fatalf("alice owns %q, want [#other]", owned)
	}
	// A destroyed name is free again, with no members left over.
	must(t, r.CreateChannel(ctx, "#go", bob, pubsub.Notice{}))
	wantErr(t, "old member of re-created channel", checkMember(ctx, r, "#go", carol), pubsub.ErrNotMember)
	members, err = r.DestroyChannel(ctx, "#go", bob, pubsub.Notice{})
	must(t, err)
	if len(members) != 0 {
		t.Fatalf("empty channel had members %q", members)
	}
}

func testJoinLeave(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	_, err := r.Join(ctx, "#none", peer(bob))
	wantErr(t, "join missing", err, pubsub.ErrNotFound)
	wantErr(t, "leave missing", r.Leave(ctx, "#none", bob, pubsub.Notice{}), pubsub.ErrNotFound)
	wantErr(t, "check missing", checkMember(ctx, r, "#none", bob), pubsub.ErrNotFound)
	must(t, r.CreateChannel(ctx, "#go", alice, pubsub.Notice{}))
	wantErr(t, "leave as non-member", r.Leave(ctx, "#go", bob, pubsub.Notice{}), pubsub.ErrNotMember)
	wantErr(t, "check non-member", checkMember(ctx, r, "#go", bob), pubsub.ErrNotMember)

	added, err := r.Join(ctx, "#go", peer(bob))
	must(t, err)
	if !added {
		t.Fatal("first join: added = false")
	}
	added, err = r.Join(ctx, "#go", peer(bob))
	must(t, err)
	if added {
		t.Fatal("second join: added = true")
	}
	must(t, checkMember(ctx, r, "#go", bob))
	must(t, r.Leave(ctx, "#go", bob, pubsub.Notice{}))
	wantErr(t, "check after leave", checkMember(ctx, r, "#go", bob), pubsub.ErrNotMember)
	wantErr(t, "leave twice", r.Leave(ctx, "#go", bob, pubsub.Notice{}), pubsub.ErrNotMember)
	// The owner may join and leave its own channel; it stays the owner.
	added, err = r.Join(ctx, "#go", peer(alice))
	must(t, err)
	if !added {
		t.Fatal("owner's join: added = false")
	}
	must(t, r.Leave(ctx, "#go", alice, pubsub.Notice{}))
	_, owned, err := r.Memberships(ctx, alice)
	must(t, err)
	if !slices.Equal(owned, []string{"#go"}) {
		t.Fatalf("alice owns %q after leaving, want [#go]", owned)
	}
}

func testMemberships(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	joined, owned, err := r.Memberships(ctx, carol)
	must(t, err)
	if len(joined) != 0 || len(owned) != 0 {
		t.Fatalf("unknown user: joined %q owned %q", joined, owned)
	}
	for _, c := range []string{"#c", "#a", "#b"} {
		must(t, r.CreateChannel(ctx, c, alice, pubsub.Notice{}))
		_, err := r.Join(ctx, c, peer(bob))
		must(t, err)
	}
	must(t, r.CreateChannel(ctx, "#z", bob, pubsub.Notice{}))
	must(t, r.CreateChannel(ctx, "#y", bob, pubsub.Notice{}))
	_, err = r.Join(ctx, "#z", peer(alice))
	must(t, err)
	must(t, r.Leave(ctx, "#b", bob, pubsub.Notice{}))

	joined, owned, err = r.Memberships(ctx, bob)
	must(t, err)
	if !slices.Equal(joined, []string{"#a", "#c"}) || !slices.Equal(owned, []string{"#y", "#z"}) {
		t.Fatalf("bob: joined %q owned %q", joined, owned)
	}
	joined, owned, err = r.Memberships(ctx, alice)
	must(t, err)
	if !slices.Equal(joined, []string{"#z"}) || !slices.Equal(owned, []string{"#a", "#b", "#c"}) {
		t.Fatalf("alice: joined %q owned %q", joined, owned)
	}
	// Joined reads many users at once, in the order asked.
	all, err := r.Joined(ctx, bob, carol, alice)
	must(t, err)
	if len(all) != 3 || !slices.Equal(all[0], []string{"#a", "#c"}) || len(all[1]) != 0 || !slices.Equal(all[2], []string{"#z"}) {
		t.Fatalf("Joined(bob, carol, alice) = %q, want [[#a #c] [] [#z]]", all)
	}
}

// Nodes racing to create one channel: exactly one wins, every round.
func testCreateRace(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	open := f.Cluster(t)
	regs := []pubsub.Registry{open(), open()}
	const rounds, racers = 100, 8
	for round := range rounds {
		ch := fmt.Sprintf("#race-%d", round)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				errs[i] = regs[i%2].CreateChannel(ctx, ch, fmt.Sprintf("00000000-0000-4000-8000-%012d", i), pubsub.Notice{})
			})
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, pubsub.ErrExists):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d creators won, want 1", round, wins)
		}
	}
}

func testDestroyRace(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	open := f.Cluster(t)
	regs := []pubsub.Registry{open(), open()}
	for round := range 50 {
		ch := fmt.Sprintf("#d-%d", round)
		must(t, regs[0].CreateChannel(ctx, ch, alice, pubsub.Notice{}))
		_, err := regs[0].Join(ctx, ch, peer(bob))
		must(t, err)
		results := make([][]string, 4)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() { results[i], errs[i] = regs[i%2].DestroyChannel(ctx, ch, alice, pubsub.Notice{}) })
		}
		wg.Wait()
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				if !slices.Equal(results[i], []string{bob}) {
					t.Fatalf("round %d: members %q, want [bob]", round, results[i])
				}
			case !errors.Is(err, pubsub.ErrNotFound):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d destroys won, want 1", round, wins)
		}
	}
}

// Joins racing with a destroy: a join that succeeded happened before the
// destroy, so its user is among the members the destroy returns; every
// other join failed with ErrNotFound; nobody is left a member.
func testDestroyWhileJoining(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	open := f.Cluster(t)
	regs := []pubsub.Registry{open(), open()}
	const users = 20
	for round := range 20 {
		ch := fmt.Sprintf("#j-%d", round)
		must(t, regs[0].CreateChannel(ctx, ch, alice, pubsub.Notice{}))
		joinErrs := make([]error, users)
		var members []string
		var destroyErr error
		var wg sync.WaitGroup
		for i := range users {
			wg.Go(func() {
				_, joinErrs[i] = regs[i%2].Join(ctx, ch, peer(fmt.Sprintf("00000000-0000-4000-9000-%012d", i)))
			})
		}
		wg.Go(func() { members, destroyErr = regs[1].DestroyChannel(ctx, ch, alice, pubsub.Notice{}) })
		wg.Wait()
		must(t, destroyErr)
		var joined []string
		for i, err := range joinErrs {
			u := fmt.Sprintf("00000000-0000-4000-9000-%012d", i)
			switch {
			case err == nil:
				joined = append(joined, u)
			case !errors.Is(err, pubsub.ErrNotFound):
				t.Fatalf("join: %v", err)
			}
			js, _, err := regs[0].Memberships(ctx, u)
			must(t, err)
			if slices.Contains(js, ch) {
				t.Fatalf("round %d: %s still a member of destroyed %s", round, u, ch)
			}
		}
		slices.Sort(joined)
		if !slices.Equal(joined, members) {
			t.Fatalf("round %d: successful joins %q, destroy returned %q", round, joined, members)
		}
	}
}

func testPlacesLimit(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	const limit = 3
	for i := range limit {
		must(t, placed(r.AcquirePlace(ctx, peer(alice), fmt.Sprint("conn-", i), limit, time.Hour)))
	}
	err := placed(r.AcquirePlace(ctx, peer(alice), "conn-x", limit, time.Hour))
	wantErr(t, "acquire beyond limit", err, pubsub.ErrTooManySessions)
	// A place already held is taken again even at the limit.
	must(t, placed(r.AcquirePlace(ctx, peer(alice), "conn-1", limit, time.Hour)))
	// Other users have places of their own.
	must(t, placed(r.AcquirePlace(ctx, peer(bob), "conn-x", limit, time.Hour)))
	must(t, r.ReleasePlace(ctx, alice, "conn-1", time.Second))
	must(t, r.ReleasePlace(ctx, alice, "conn-1", time.Second))   // not held: no error
	must(t, r.ReleasePlace(ctx, carol, "conn-nil", time.Second)) // unknown user: no error
	must(t, placed(r.AcquirePlace(ctx, peer(alice), "conn-x", limit, time.Hour)))
	err = placed(r.AcquirePlace(ctx, peer(alice), "conn-y", limit, time.Hour))
	wantErr(t, "acquire beyond limit after release", err, pubsub.ErrTooManySessions)
}

// Places not refreshed lapse, and free their user's slots.
func testPlacesLapse(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	must(t, placed(r.AcquirePlace(ctx, peer(alice), "old", 1, 50*time.Millisecond)))
	deadline := time.Now().Add(waitFor)
	for {
		err := placed(r.AcquirePlace(ctx, peer(alice), "new", 1, time.Hour))
		if err == nil {
			break
		}
		wantErr(t, "acquire", err, pubsub.ErrTooManySessions)
		if time.Now().After(deadline) {
			t.Fatal("a place with a ttl of 50ms did not lapse")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantErr(t, "acquire beyond limit", placed(r.AcquirePlace(ctx, peer(alice), "old", 1, time.Hour)), pubsub.ErrTooManySessions)
}

// A user's bucket holds burst tokens, shared by every node's registry, and
// refills at the rate.
func testAllow(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	open := f.Cluster(t)
	a, b := open(), open()
	allow := func(r pubsub.Registry, user string, rate float64, burst int, want bool) {
		t.Helper()
		ok, err := r.Allow(ctx, user, rate, burst)
		must(t, err)
		if ok != want {
			t.Fatalf("Allow(%s, %v/s, burst %d) = %v, want %v", user, rate, burst, ok, want)
		}
	}
	// One token a day: nothing refills while the test runs.
	const slow = 1.0 / 86400
	allow(a, alice, slow, 3, true)
	allow(b, alice, slow, 3, true)
	allow(a, alice, slow, 3, true)
	for range 3 {
		allow(b, alice, slow, 3, false)
	}
	allow(a, bob, slow, 3, true) // each user has a bucket of their own

	// Fast enough to refill at once: 20 tokens take 20 ms at 1000/s.
	for range 2 {
		allow(a, carol, 1000, 2, true)
	}
	deadline := time.Now().Add(waitFor)
	for {
		ok, err := a.Allow(ctx, carol, 1000, 2)
		must(t, err)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a bucket of 1000 tokens a second did not refill")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A refresh extends places, and takes lapsed ones again.
func testPlacesRefresh(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	must(t, r.RefreshPlaces(ctx, nil, time.Hour))
	must(t, placed(r.AcquirePlace(ctx, peer(alice), "a1", 2, 200*time.Millisecond)))
	must(t, placed(r.AcquirePlace(ctx, peer(alice), "a2", 2, 200*time.Millisecond)))
	must(t, placed(r.AcquirePlace(ctx, peer(bob), "b1", 1, 200*time.Millisecond)))
	// After the refresh they are held for an hour, long after they would
	// have lapsed.
	must(t, r.RefreshPlaces(ctx, map[string][]string{alice: {"a1", "a2"}, bob: {"b1"}}, time.Hour))
	time.Sleep(300 * time.Millisecond)
	wantErr(t, "alice beyond limit", placed(r.AcquirePlace(ctx, peer(alice), "a3", 2, time.Hour)), pubsub.ErrTooManySessions)
	wantErr(t, "bob beyond limit", placed(r.AcquirePlace(ctx, peer(bob), "b2", 1, time.Hour)), pubsub.ErrTooManySessions)
	// A place released before a refresh that still names it stays free.
	must(t, r.ReleasePlace(ctx, alice, "a2", time.Second))
	must(t, r.RefreshPlaces(ctx, map[string][]string{alice: {"a1", "a2"}, "nobody": {"x"}}, time.Hour))
	must(t, placed(r.AcquirePlace(ctx, peer(alice), "a3", 2, time.Hour)))
	wantErr(t, "alice beyond limit again", placed(r.AcquirePlace(ctx, peer(alice), "a4", 2, time.Hour)), pubsub.ErrTooManySessions)
}

func testRegistryClosed(t *testing.T, f RegistryFactory) {
	ctx := ctxT(t)
	r := f.Cluster(t)()
	must(t, r.CreateChannel(ctx, "#go", alice, pubsub.Notice{}))
	must(t, f.Close(r))
	_, err := r.Join(ctx, "#go", peer(bob))
	checks := map[string]error{
		"CreateChannel": r.CreateChannel(ctx, "#x", alice, pubsub.Notice{}),
		"Join":          err,
		"Leave":         r.Leave(ctx, "#go", bob, pubsub.Notice{}),
		"AcquirePlace":  placed(r.AcquirePlace(ctx, peer(bob), "c", 1, time.Hour)),
		"ReleasePlace":  r.ReleasePlace(ctx, bob, "c", time.Second),
		"RefreshPlaces": r.RefreshPlaces(ctx, map[string][]string{bob: {"c"}}, time.Hour),
		"Ping":          r.Ping(ctx),
	}
	_, checks["DestroyChannel"] = r.DestroyChannel(ctx, "#go", alice, pubsub.Notice{})
	_, checks["Channels"] = r.Channels(ctx)
	_, _, checks["Memberships"] = r.Memberships(ctx, bob)
	_, checks["Allow"] = r.Allow(ctx, bob, 1, 1)
	_, checks["Joined"] = r.Joined(ctx, bob)
	_, _, checks["Members"] = r.Members(ctx, "#go", "", 1)
	_, checks["SweepPresence"] = r.SweepPresence(ctx, 1)
	_, checks["MarkRead"] = r.MarkRead(ctx, bob, "#go", 1, pubsub.Notice{})
	_, checks["Throttle"] = r.Throttle(ctx, "k", time.Second)
	_, checks["Sizes"] = r.Sizes(ctx, "#go")
	checks["CheckMember"] = r.CheckMember(ctx, "#go", bob)
	for name, err := range checks {
		if !errors.Is(err, pubsub.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
