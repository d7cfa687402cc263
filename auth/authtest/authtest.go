// Package authtest is the conformance suite of auth.Store: every
// implementation runs RunStore from its own tests.
package authtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wirechat/chat/auth"
	"github.com/wirechat/chat/protocol"
)

// Factory prepares a backend of t's own and returns a function that opens
// a store on it; stores of one call share the backend, as the nodes of a
// cluster do (an in-memory store may return itself every time).
type Factory func(t *testing.T) (open func() auth.Store)

// RunStore runs the Store conformance cases.
func RunStore(t *testing.T, f Factory) {
	t.Run("UserForName", func(t *testing.T) { testUserForName(t, f) })
	t.Run("UserForIdentity", func(t *testing.T) { testUserForIdentity(t, f) })
	t.Run("NewIDs", func(t *testing.T) { testNewIDs(t, f) })
	t.Run("NamesShared", func(t *testing.T) { testNamesShared(t, f) })
	t.Run("LongLogin", func(t *testing.T) { testLongLogin(t, f) })
	t.Run("ConcurrentIdentities", func(t *testing.T) { testConcurrentIdentities(t, f) })
	t.Run("ConcurrentSameIdentity", func(t *testing.T) { testConcurrentSameIdentity(t, f) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, f) })
	t.Run("SessionExpired", func(t *testing.T) { testSessionExpired(t, f) })
	t.Run("LiveSessions", func(t *testing.T) { testLiveSessions(t, f) })
	t.Run("DeleteSessionRace", func(t *testing.T) { testDeleteSessionRace(t, f) })
	t.Run("SessionLimit", func(t *testing.T) { testSessionLimit(t, f) })
	t.Run("SessionLimitRace", func(t *testing.T) { testSessionLimitRace(t, f) })
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

// create stores sess under hash with CreateSession and returns what it
// revoked.
func create(t *testing.T, s auth.Store, hash string, sess auth.Session, keep int) []auth.Session {
	t.Helper()
	revoked, err := s.CreateSession(t.Context(), hash, sess, keep)
	must(t, err)
	return revoked
}

func testUserForName(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	s1, s2 := open(), open()
	_, err := s1.UserByName(ctx, "alice")
	if !errors.Is(err, auth.ErrNoUser) {
		t.Fatalf("UserByName of nobody: %v, want ErrNoUser", err)
	}
	_, err = s1.UserByID(ctx, "00000000-0000-4000-8000-000000000000")
	if !errors.Is(err, auth.ErrNoUser) {
		t.Fatalf("UserByID of nobody: %v, want ErrNoUser", err)
	}
	u, err := s1.UserForName(ctx, "alice", uuid.NewString())
	must(t, err)
	if u.Username != "alice" || len(u.ID) != 36 {
		t.Fatalf("created %+v", u)
	}
	again, err := s2.UserForName(ctx, "alice", uuid.NewString())
	must(t, err)
	if again != u {
		t.Fatalf("second UserForName gave %+v, want %+v", again, u)
	}
	byName, err := s2.UserByName(ctx, "alice")
	must(t, err)
	byID, err := s2.UserByID(ctx, u.ID)
	must(t, err)
	if byName != u || byID != u {
		t.Fatalf("lookups gave %+v and %+v, want %+v", byName, byID, u)
	}
	bob, err := s1.UserForName(ctx, "bob", uuid.NewString())
	must(t, err)
	if bob.ID == u.ID {
		t.Fatal("two users share an id")
	}
}

func testUserForIdentity(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	s1, s2 := open(), open()
	a, err := s1.UserForIdentity(ctx, "github", "1", "Alice", uuid.NewString())
	must(t, err)
	if a.Username != "alice" {
		t.Fatalf("username %q, want alice", a.Username)
	}
	// The same account, another login name later: the same user.
	again, err := s2.UserForIdentity(ctx, "github", "1", "alice-renamed", uuid.NewString())
	must(t, err)
	if again != a {
		t.Fatalf("same identity gave %+v, want %+v", again, a)
	}
	// Another account with the same login, and the same subject at another
	// provider: new users with suffixes.
	for i, want := range []string{"alice-2", "alice-3"} {
		provider := []string{"github", "google"}[i]
		subject := []string{"2", "1"}[i]
		u, err := s2.UserForIdentity(ctx, provider, subject, "alice", uuid.NewString())
		must(t, err)
		if u.Username != want || u.ID == a.ID {
			t.Fatalf("got %+v, want a new user %s", u, want)
		}
		byName, err := s1.UserByName(ctx, want)
		must(t, err)
		if byName != u {
			t.Fatalf("UserByName(%s) = %+v, want %+v", want, byName, u)
		}
	}
	// Logins are sanitised.
	u, err := s1.UserForIdentity(ctx, "oidc", "x", "Zoë Smith", uuid.NewString())
	must(t, err)
	if want := protocol.SanitizeUsername("Zoë Smith"); u.Username != want {
		t.Fatalf("username %q, want %q", u.Username, want)
	}
	u, err = s1.UserForIdentity(ctx, "oidc", "y", "???", uuid.NewString())
	must(t, err)
	if u.Username != "user" {
		t.Fatalf("username %q, want user", u.Username)
	}
}

// A new user gets the id it is given; an existing one keeps its own.
func testNewIDs(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	s1, s2 := open(), open()
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	erin, err := s1.UserForName(ctx, "erin", ids[0])
	must(t, err)
	again, err := s2.UserForName(ctx, "erin", ids[1])
	must(t, err)
	if erin.ID != ids[0] || again != erin {
		t.Fatalf("UserForName gave %+v then %+v, want id %s both times", erin, again, ids[0])
	}
	frank, err := s1.UserForIdentity(ctx, "github", "77", "frank", ids[2])
	must(t, err)
	again, err = s2.UserForIdentity(ctx, "github", "77", "frank", ids[3])
	must(t, err)
	if frank.ID != ids[2] || again != frank {
		t.Fatalf("UserForIdentity gave %+v then %+v, want id %s both times", frank, again, ids[2])
	}
	if u, err := s2.UserByID(ctx, ids[2]); err != nil || u != frank {
		t.Fatalf("UserByID = %+v, %v; want %+v", u, err, frank)
	}
	if _, err := s2.UserByID(ctx, ids[3]); !errors.Is(err, auth.ErrNoUser) {
		t.Fatalf("UserByID of an id offered too late: %v, want ErrNoUser", err)
	}
}

// Dev login names and provider logins share one namespace.
func testNamesShared(t *testing.T, f Factory) {
	ctx := ctxT(t)
	s := f(t)()
	bob, err := s.UserForName(ctx, "bob", uuid.NewString())
	must(t, err)
	u, err := s.UserForIdentity(ctx, "github", "7", "bob", uuid.NewString())
	must(t, err)
	if u.Username != "bob-2" || u.ID == bob.ID {
		t.Fatalf("got %+v, want a new user bob-2", u)
	}
	// A dev login of a taken suffixed name is that user.
	same, err := s.UserForName(ctx, "bob-2", uuid.NewString())
	must(t, err)
	if same != u {
		t.Fatalf("UserForName(bob-2) = %+v, want %+v", same, u)
	}
}

// A login of the maximum length is cut to make room for the suffix.
func testLongLogin(t *testing.T, f Factory) {
	ctx := ctxT(t)
	s := f(t)()
	login := strings.Repeat("x", protocol.MaxUsernameLen+5)
	base := protocol.SanitizeUsername(login)
	for n := 1; n <= 11; n++ {
		u, err := s.UserForIdentity(ctx, "github", fmt.Sprint(n), login, uuid.NewString())
		must(t, err)
		want := base
		if n > 1 {
			want = protocol.WithSuffix(base, n)
		}
		if u.Username != want {
			t.Fatalf("identity %d: username %q, want %q", n, u.Username, want)
		}
		if _, ok := protocol.NormalizeUsername(u.Username); !ok {
			t.Fatalf("identity %d: invalid username %q", n, u.Username)
		}
	}
}

// Nodes creating users for one login at once hand out distinct names:
// alice, alice-2, alice-3 …
func testConcurrentIdentities(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	stores := []auth.Store{open(), open()}
	const n = 24
	users := make([]auth.User, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			users[i], errs[i] = stores[i%2].UserForIdentity(ctx, "github", fmt.Sprint("sub-", i), "alice", uuid.NewString())
		})
	}
	wg.Wait()
	var names, ids []string
	for i := range n {
		must(t, errs[i])
		names = append(names, users[i].Username)
		ids = append(ids, users[i].ID)
	}
	want := []string{"alice"}
	for i := 2; i <= n; i++ {
		want = append(want, protocol.WithSuffix("alice", i))
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("names %q, want %q", names, want)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != n {
		t.Fatal("users share ids")
	}
}

// One identity logging in on several nodes at once gets one user.
func testConcurrentSameIdentity(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	stores := []auth.Store{open(), open()}
	const n = 16
	users := make([]auth.User, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			users[i], errs[i] = stores[i%2].UserForIdentity(ctx, "google", "42", "carol", uuid.NewString())
		})
	}
	wg.Wait()
	for i := range n {
		must(t, errs[i])
		if users[i] != users[0] {
			t.Fatalf("got %+v and %+v for one identity", users[i], users[0])
		}
	}
	if users[0].Username != "carol" {
		t.Fatalf("username %q, want carol", users[0].Username)
	}
}

func testSessions(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	s1, s2 := open(), open()
	_, err := s1.Session(ctx, "nohash")
	if !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("Session of unknown hash: %v, want ErrNoSession", err)
	}
	_, err = s1.DeleteSession(ctx, "nohash")
	if !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("DeleteSession of unknown hash: %v, want ErrNoSession", err)
	}
	want := auth.Session{
		ID:       "11111111-1111-4111-8111-111111111111",
		UserID:   "22222222-2222-4222-8222-222222222222",
		Username: "alice",
		Provider: "dev",
		Expires:  time.Now().Add(time.Hour).Truncate(time.Millisecond),
	}
	create(t, s1, "h1", want, 0)
	same := func(got auth.Session) bool {
		return got.ID == want.ID && got.UserID == want.UserID && got.Username == want.Username &&
			got.Provider == want.Provider && got.Expires.Equal(want.Expires)
	}
	got, err := s2.Session(ctx, "h1") // created on one node, seen on another
	must(t, err)
	if !same(got) {
		t.Fatalf("Session = %+v, want %+v", got, want)
	}
	got, err = s2.DeleteSession(ctx, "h1")
	must(t, err)
	if !same(got) {
		t.Fatalf("DeleteSession = %+v, want %+v", got, want)
	}
	_, err = s1.Session(ctx, "h1") // revoked on one node, gone on every node
	if !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("Session after delete: %v, want ErrNoSession", err)
	}
	_, err = s1.DeleteSession(ctx, "h1")
	if !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("DeleteSession twice: %v, want ErrNoSession", err)
	}
}

func testSessionExpired(t *testing.T, f Factory) {
	ctx := ctxT(t)
	s := f(t)()
	past := auth.Session{ID: "1", UserID: "2", Username: "a", Provider: "dev", Expires: time.Now().Add(-time.Second)}
	create(t, s, "old", past, 0)
	if _, err := s.Session(ctx, "old"); !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("expired session: %v, want ErrNoSession", err)
	}
	soon := past
	soon.Expires = time.Now().Add(50 * time.Millisecond)
	create(t, s, "soon", soon, 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Session(ctx, "soon")
		if errors.Is(err, auth.ErrNoSession) {
			break
		}
		must(t, err)
		if time.Now().After(deadline) {
			t.Fatal("session did not lapse at its expiry")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLiveSessions asks about more sessions than one request carries
// (auth.Redis asks 1,000 at a time), live ones among unknown, deleted and
// expired ones, on another node than the one that created them.
func testLiveSessions(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	s1, s2 := open(), open()
	sess := func(id string, expires time.Time) auth.Session {
		return auth.Session{ID: id, UserID: "22222222-2222-4222-8222-222222222222", Username: "alice", Provider: "dev", Expires: expires}
	}
	hour := time.Now().Add(time.Hour)
	create(t, s1, "live1", sess("1", hour), 0)
	create(t, s1, "live2", sess("2", hour), 0)
	create(t, s1, "deleted", sess("3", hour), 0)
	create(t, s1, "expired", sess("4", time.Now().Add(-time.Second)), 0)
	if _, err := s1.DeleteSession(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	hashes := make([]string, 2500)
	for i := range hashes {
		hashes[i] = fmt.Sprintf("unknown%d", i)
	}
	hashes[0], hashes[999], hashes[1000], hashes[1001], hashes[2499] = "live1", "deleted", "live2", "expired", "live1"
	live, err := s2.LiveSessions(ctx, hashes)
	must(t, err)
	if len(live) != len(hashes) {
		t.Fatalf("%d answers for %d hashes", len(live), len(hashes))
	}
	for i, h := range hashes {
		if want := strings.HasPrefix(h, "live"); live[i] != want {
			t.Errorf("hash %d (%s): live %v, want %v", i, h, live[i], want)
		}
	}
	if live, err := s2.LiveSessions(ctx, nil); err != nil || len(live) != 0 {
		t.Fatalf("no hashes: %v, %v", live, err)
	}
}

// Two nodes revoking one session at once: one gets it.
func testDeleteSessionRace(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	stores := []auth.Store{open(), open()}
	for round := range 20 {
		h := fmt.Sprint("race-", round)
		create(t, stores[0], h, auth.Session{ID: h, Expires: time.Now().Add(time.Hour)}, 0)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { _, errs[i] = stores[i%2].DeleteSession(ctx, h) })
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
			} else if !errors.Is(err, auth.ErrNoSession) {
				t.Fatal(err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d deletes got the session, want 1", round, wins)
		}
	}
}

// A user holds at most keep sessions: a login past that revokes the
// oldest, never the new one; sessions that are gone do not count.
func testSessionLimit(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	s1, s2 := open(), open()
	expires := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	sess := func(user string, i int) auth.Session {
		return auth.Session{ID: fmt.Sprint(user, "-", i), UserID: user, Username: user, Provider: "dev", Expires: expires}
	}
	hash := func(user string, i int) string { return fmt.Sprint("h-", user, "-", i) }
	ids := func(ss []auth.Session) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}
	valid := func(user string, upto int) []int {
		var out []int
		for i := range upto {
			_, err := s2.Session(ctx, hash(user, i))
			if err == nil {
				out = append(out, i)
			} else if !errors.Is(err, auth.ErrNoSession) {
				t.Fatal(err)
			}
		}
		return out
	}

	// No limit: nothing is revoked.
	for i := range 5 {
		if got := create(t, s1, hash("u", i), sess("u", i), 0); len(got) != 0 {
			t.Fatalf("keep 0: revoked %q", ids(got))
		}
	}
	// Another user's sessions are not the user's.
	create(t, s2, hash("v", 0), sess("v", 0), 0)
	// Over the limit: the oldest go, oldest first, as whole sessions.
	got := create(t, s2, hash("u", 5), sess("u", 5), 2)
	if want := []string{"u-0", "u-1", "u-2", "u-3"}; !slices.Equal(ids(got), want) {
		t.Fatalf("revoked %q, want %q", ids(got), want)
	}
	if g, w := got[0], sess("u", 0); g.ID != w.ID || g.UserID != w.UserID || g.Username != w.Username || g.Provider != w.Provider || !g.Expires.Equal(w.Expires) {
		t.Fatalf("revoked session %+v, want %+v", g, w)
	}
	if v := valid("u", 6); !slices.Equal(v, []int{4, 5}) {
		t.Fatalf("valid sessions %v, want [4 5]", v)
	}
	if _, err := s1.Session(ctx, hash("v", 0)); err != nil {
		t.Fatalf("another user's session: %v", err)
	}
	// One more: the oldest goes.
	if got := create(t, s1, hash("u", 6), sess("u", 6), 2); !slices.Equal(ids(got), []string{"u-4"}) {
		t.Fatalf("revoked %q, want [u-4]", ids(got))
	}
	// A session logged out no longer counts.
	if _, err := s2.DeleteSession(ctx, hash("u", 5)); err != nil {
		t.Fatal(err)
	}
	if got := create(t, s2, hash("u", 7), sess("u", 7), 2); len(got) != 0 {
		t.Fatalf("revoked %q after a logout made room", ids(got))
	}
	// The new session is kept even when it is the only one allowed.
	if got := create(t, s1, hash("u", 8), sess("u", 8), 1); !slices.Equal(ids(got), []string{"u-6", "u-7"}) {
		t.Fatalf("revoked %q, want [u-6 u-7]", ids(got))
	}
	if v := valid("u", 9); !slices.Equal(v, []int{8}) {
		t.Fatalf("valid sessions %v, want [8]", v)
	}
}

// Nodes logging one user in at once keep exactly keep sessions between
// them, and each revoked session is revoked once.
func testSessionLimitRace(t *testing.T, f Factory) {
	ctx := ctxT(t)
	open := f(t)
	stores := []auth.Store{open(), open()}
	const n, keep = 24, 5
	revoked := make([][]auth.Session, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := auth.Session{ID: fmt.Sprint(i), UserID: "racer", Username: "racer", Provider: "dev", Expires: time.Now().Add(time.Hour)}
			revoked[i], errs[i] = stores[i%2].CreateSession(ctx, fmt.Sprint("race-", i), s, keep)
		})
	}
	wg.Wait()
	gone := map[string]bool{}
	for i := range n {
		must(t, errs[i])
		for _, s := range revoked[i] {
			if s.ID == fmt.Sprint(i) {
				t.Fatalf("login %d revoked its own session", i)
			}
			if gone[s.ID] {
				t.Fatalf("session %s revoked twice", s.ID)
			}
			gone[s.ID] = true
		}
	}
	live := 0
	for i := range n {
		_, err := stores[0].Session(ctx, fmt.Sprint("race-", i))
		switch {
		case err == nil:
			live++
			if gone[fmt.Sprint(i)] {
				t.Fatalf("session %d was reported revoked but is valid", i)
			}
		case errors.Is(err, auth.ErrNoSession):
			if !gone[fmt.Sprint(i)] {
				t.Fatalf("session %d is gone but no login reported it", i)
			}
		default:
			t.Fatal(err)
		}
	}
	if live != keep {
		t.Fatalf("%d sessions left, want %d", live, keep)
	}
}
