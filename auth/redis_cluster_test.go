package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wirechat/chat/internal/redistest"
)

// clusterClient returns a client of the Redis Cluster at url
// (redis+cluster://host:port,…/, as internal/redistest gives it), tuned as
// pubsub.NewClient tunes it, and closes it when t ends.
func clusterClient(t testing.TB, url string) *redis.ClusterClient {
	t.Helper()
	hosts := strings.TrimSuffix(strings.TrimPrefix(url, "redis+cluster://"), "/")
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 strings.Split(hosts, ","),
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		PoolTimeout:           time.Second,
		MaxRetries:            -1,
		MaxRedirects:          8,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// newClusterStore returns a store on the test binary's shared cluster,
// under a prefix of t's own, and a client of that cluster.
func newClusterStore(t *testing.T) (*Redis, *redis.ClusterClient) {
	t.Helper()
	url, prefix := redistest.ClusterURL(t)
	c := clusterClient(t, url)
	return NewRedis(c, RedisOptions{Prefix: prefix}), c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantUser(t *testing.T, what string, got User, err error, want User) {
	t.Helper()
	if err != nil || got != want {
		t.Fatalf("%s = %+v, %v; want %+v", what, got, err, want)
	}
}

func wantNoUser(t *testing.T, what string, got User, err error) {
	t.Helper()
	if !errors.Is(err, ErrNoUser) {
		t.Fatalf("%s = %+v, %v; want ErrNoUser", what, got, err)
	}
}

// TestRedisLayouts: a *redis.Client keeps the single-Redis keys of
// deployed data; a cluster client puts every key of one user in the slot
// of the tag {u:<id>}, which the pubsub package's user keys share.
func TestRedisLayouts(t *testing.T) {
	ctx := t.Context()
	expires := time.Now().Add(time.Hour)
	use := func(s *Redis) {
		t.Helper()
		_, err := s.UserForIdentity(ctx, "github", "1", "alice", "id-1")
		must(t, err)
		_, err = s.CreateSession(ctx, "h1", Session{ID: "s1", UserID: "id-1", Expires: expires}, 5)
		must(t, err)
	}
	exists := func(c redis.UniversalClient, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if n, err := c.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Errorf("key %s: exists %d, %v", k, n, err)
			}
		}
	}

	url, prefix := redistest.URL(t)
	opts, err := redis.ParseURL(url)
	must(t, err)
	single := redis.NewClient(opts)
	t.Cleanup(func() { single.Close() })
	use(NewRedis(single, RedisOptions{Prefix: prefix}))
	exists(single, prefix+"identity:github:1", prefix+"username:alice", prefix+"user:id-1",
		prefix+"session:h1", prefix+"sessions:id-1")

	s, c := newClusterStore(t)
	prefix = s.prefix
	use(s)
	exists(c, prefix+"{id:github:1}", prefix+"{name:alice}", prefix+"{u:id-1}:user",
		prefix+"{s:h1}", prefix+"{u:id-1}:sessions")
	if v, err := c.Get(ctx, prefix+"{name:alice}").Result(); err != nil || v != "id-1" {
		t.Errorf("claim of alice: %q, %v; want the confirmed id-1", v, err)
	}
	slot := func(k string) int64 {
		n, err := c.ClusterKeySlot(ctx, k).Result()
		must(t, err)
		return n
	}
	for _, k := range []string{"{u:id-1}:sessions", "{u:id-1}:revoking", "{u:id-1}:presence"} {
		if slot(prefix+k) != slot(prefix+"{u:id-1}:user") {
			t.Errorf("%s is not in the user's slot", k)
		}
	}
}

// TestClusterUserRepairs: a user's creation stopped between two of its
// steps (each state made by running the steps before it alone) is read as
// not there yet, or as the user it is, and the next login completes it.
func TestClusterUserRepairs(t *testing.T) {
	ctx := t.Context()

	t.Run("claim alone", func(t *testing.T) {
		s, c := newClusterStore(t)
		_, _, err := s.claim(ctx, "dora", "id-1") // dev login stopped here
		must(t, err)
		u, err := s.UserByName(ctx, "dora")
		wantNoUser(t, "UserByName", u, err)
		u, err = s.UserByID(ctx, "id-1")
		wantNoUser(t, "UserByID", u, err)
		u, err = s.UserForName(ctx, "dora", "id-2") // the next login
		wantUser(t, "UserForName", u, err, User{ID: "id-1", Username: "dora"})
		u, err = s.UserByName(ctx, "dora")
		wantUser(t, "UserByName", u, err, User{ID: "id-1", Username: "dora"})
		if v, _ := c.Get(ctx, s.nameKey("dora")).Result(); v != "id-1" {
			t.Errorf("claim %q, want it confirmed", v)
		}
	})

	t.Run("user not confirmed", func(t *testing.T) {
		s, c := newClusterStore(t)
		_, _, err := s.claim(ctx, "dora", "id-1")
		must(t, err)
		_, err = nameUserScript.Run(ctx, c, []string{s.userKey("id-1")}, "id-1", "", "dora").Result()
		must(t, err)
		// The user bears the name, whose claim is its own: it is there.
		u, err := s.UserByName(ctx, "dora")
		wantUser(t, "UserByName", u, err, User{ID: "id-1", Username: "dora"})
		u, err = s.UserByID(ctx, "id-1")
		wantUser(t, "UserByID", u, err, User{ID: "id-1", Username: "dora"})
		_, err = s.setNX(ctx, s.linkKey("github", "4"), "id-1")
		must(t, err)
		u, err = s.UserForIdentity(ctx, "github", "4", "someone-else", "id-3")
		wantUser(t, "UserForIdentity", u, err, User{ID: "id-1", Username: "dora"})
		if v, _ := c.Get(ctx, s.nameKey("dora")).Result(); v != "id-1" {
			t.Errorf("claim %q, want it confirmed", v)
		}
	})

	t.Run("link alone", func(t *testing.T) {
		s, _ := newClusterStore(t)
		_, err := s.setNX(ctx, s.linkKey("github", "5"), "id-1")
		must(t, err)
		u, err := s.UserByID(ctx, "id-1")
		wantNoUser(t, "UserByID", u, err)
		u, err = s.UserForIdentity(ctx, "github", "5", "Eve", "id-2")
		wantUser(t, "UserForIdentity", u, err, User{ID: "id-1", Username: "eve"})
	})

	// The login stopped after claiming a name, and the account came back
	// under another login: that name's claim stays the user's, unused. It
	// is nobody by name, and taken for everyone else.
	t.Run("login renamed before the retry", func(t *testing.T) {
		s, _ := newClusterStore(t)
		_, err := s.setNX(ctx, s.linkKey("github", "6"), "id-1")
		must(t, err)
		_, _, err = s.claim(ctx, "eve", "id-1")
		must(t, err)
		u, err := s.UserForIdentity(ctx, "github", "6", "evelyn", "id-2")
		wantUser(t, "UserForIdentity", u, err, User{ID: "id-1", Username: "evelyn"})
		u, err = s.UserByName(ctx, "eve")
		wantNoUser(t, "UserByName of the unused claim", u, err)
		u, err = s.UserForIdentity(ctx, "github", "7", "eve", "id-3")
		wantUser(t, "UserForIdentity of another eve", u, err, User{ID: "id-3", Username: "eve-2"})
	})

	// A partial loss (a failover that lost a write): the claim of a user's
	// name is gone. Unclaimed, the user claims it again; taken by another
	// user meanwhile, the user is renamed, and the name is the other's.
	t.Run("claim lost", func(t *testing.T) {
		s, c := newClusterStore(t)
		frank, err := s.UserForIdentity(ctx, "github", "8", "frank", "id-1")
		must(t, err)
		must(t, c.Del(ctx, s.nameKey("frank")).Err())
		u, err := s.UserForIdentity(ctx, "github", "8", "frank", "id-2")
		wantUser(t, "UserForIdentity", u, err, frank)
		u, err = s.UserByName(ctx, "frank")
		wantUser(t, "UserByName", u, err, frank)

		must(t, c.Del(ctx, s.nameKey("frank")).Err())
		other, err := s.UserForName(ctx, "frank", "id-3")
		wantUser(t, "UserForName", other, err, User{ID: "id-3", Username: "frank"})
		u, err = s.UserForIdentity(ctx, "github", "8", "frank", "id-2")
		wantUser(t, "UserForIdentity", u, err, User{ID: "id-1", Username: "frank-2"})
		u, err = s.UserByID(ctx, "id-1")
		wantUser(t, "UserByID", u, err, User{ID: "id-1", Username: "frank-2"})
		u, err = s.UserByName(ctx, "frank")
		wantUser(t, "UserByName", u, err, other)
	})
}

// TestClusterSameAccountTwoLogins: the first logins of one account racing
// under two login names get one user and one name.
func TestClusterSameAccountTwoLogins(t *testing.T) {
	ctx := t.Context()
	s, _ := newClusterStore(t)
	for round := range 10 {
		subject := fmt.Sprint("acct-", round)
		users := make([]User, 8)
		errs := make([]error, len(users))
		done := make(chan struct{})
		for i := range users {
			go func() {
				defer func() { done <- struct{}{} }()
				login := []string{"gus", "gustavo"}[i%2]
				users[i], errs[i] = s.UserForIdentity(ctx, "github", subject, login, fmt.Sprint("id-", round, "-", i))
			}()
		}
		for range users {
			<-done
		}
		for i := range users {
			must(t, errs[i])
			if users[i] != users[0] {
				t.Fatalf("round %d: %+v and %+v for one account", round, users[i], users[0])
			}
		}
		u, err := s.UserByName(ctx, users[0].Username)
		wantUser(t, "UserByName", u, err, users[0])
		u, err = s.UserByID(ctx, users[0].ID)
		wantUser(t, "UserByID", u, err, users[0])
	}
}

// TestClusterSessionRepairs: a logout or a login stopped between two of
// its steps never lets a gone session count against the cap, and a
// session that a login chose to revoke is revoked by the next one.
func TestClusterSessionRepairs(t *testing.T) {
	ctx := t.Context()
	expires := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	sess := func(i int) Session {
		return Session{ID: fmt.Sprint("s", i), UserID: "id-1", Username: "ann", Provider: "dev", Expires: expires}
	}
	hash := func(i int) string { return fmt.Sprint("h", i) }
	login := func(t *testing.T, s *Redis, i, keep int) []string {
		t.Helper()
		revoked, err := s.CreateSession(ctx, hash(i), sess(i), keep)
		must(t, err)
		return sessionIDs(revoked)
	}
	valid := func(t *testing.T, s *Redis, upto int) []string {
		t.Helper()
		var out []string
		for i := range upto {
			got, err := s.Session(ctx, hash(i))
			if err == nil {
				out = append(out, got.ID)
			} else if !errors.Is(err, ErrNoSession) {
				t.Fatal(err)
			}
		}
		return out
	}

	t.Run("logout without its index step", func(t *testing.T) {
		s, c := newClusterStore(t)
		login(t, s, 0, 0)
		login(t, s, 1, 0)
		_, err := s.getDelSession(ctx, hash(1)) // DeleteSession stopped here
		must(t, err)
		if got := login(t, s, 2, 2); len(got) != 0 {
			t.Fatalf("revoked %q: the session logged out counted", got)
		}
		if v := valid(t, s, 3); !slices.Equal(v, []string{"s0", "s2"}) {
			t.Fatalf("valid %q, want [s0 s2]", v)
		}
		if listed, _ := c.ZRange(ctx, s.indexKey("id-1"), 0, -1).Result(); !slices.Equal(listed, []string{"h0", "h2"}) {
			t.Fatalf("index %q, want [h0 h2]", listed)
		}
	})

	t.Run("login stopped after choosing whom to revoke", func(t *testing.T) {
		s, c := newClusterStore(t)
		for i := range 3 {
			login(t, s, i, 0)
		}
		// Login 3 with keep 2: stored, indexed; then its node died.
		b, err := json.Marshal(storedSession{ID: "s3", UserID: "id-1", Expires: expires})
		must(t, err)
		must(t, c.Do(ctx, "SET", s.sessionKey(hash(3)), b, "PXAT", expires.UnixMilli()).Err())
		victims, err := indexSessionScript.Run(ctx, c, []string{s.indexKey("id-1"), s.revokingKey("id-1")},
			hash(3), 2, expires.UnixMilli()).StringSlice()
		must(t, err)
		if !slices.Equal(victims, []string{"h0", "h1"}) {
			t.Fatalf("victims %q, want [h0 h1]", victims)
		}
		// The next login revokes them first, then its own choice.
		if got := login(t, s, 4, 2); !slices.Equal(got, []string{"s0", "s1", "s2"}) {
			t.Fatalf("revoked %q, want [s0 s1 s2]", got)
		}
		if v := valid(t, s, 5); !slices.Equal(v, []string{"s3", "s4"}) {
			t.Fatalf("valid %q, want [s3 s4]", v)
		}
		if n, _ := c.Exists(ctx, s.revokingKey("id-1")).Result(); n != 0 {
			t.Error("the revoking set is left")
		}
	})

	t.Run("failed login deletes its session", func(t *testing.T) {
		s, c := newClusterStore(t)
		// A wrong type makes the index step fail after the session is
		// stored.
		must(t, c.Set(ctx, s.indexKey("id-1"), "x", 0).Err())
		if _, err := s.CreateSession(ctx, hash(0), sess(0), 2); err == nil {
			t.Fatal("CreateSession succeeded on a broken index")
		}
		if _, err := s.Session(ctx, hash(0)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("the failed login's session: %v, want ErrNoSession", err)
		}
	})

	t.Run("failed login returns what it revoked", func(t *testing.T) {
		s, c := newClusterStore(t)
		login(t, s, 0, 0)
		login(t, s, 1, 0)
		// Session 1's key of a wrong type: its GETDEL fails after session
		// 0's succeeded.
		must(t, c.Del(ctx, s.sessionKey(hash(1))).Err())
		must(t, c.HSet(ctx, s.sessionKey(hash(1)), "x", "y").Err())
		revoked, err := s.CreateSession(ctx, hash(2), sess(2), 1)
		if err == nil {
			t.Fatal("CreateSession succeeded")
		}
		if got := sessionIDs(revoked); !slices.Equal(got, []string{"s0"}) {
			t.Fatalf("revoked %q with the error, want [s0]", got)
		}
		for _, i := range []int{0, 2} {
			if _, err := s.Session(ctx, hash(i)); !errors.Is(err, ErrNoSession) {
				t.Errorf("session %d: %v, want ErrNoSession", i, err)
			}
		}
	})
}

func sessionIDs(ss []Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

// TestClusterStoreFaults: logins go on while the slot of a user's keys
// moves to another primary, primaries hold writes past the client's
// timeout, and the primary of a name's claim fails over.
// Calls may fail (unavailable) meanwhile; afterwards one more login of
// each kind settles what they left, and the guarantees hold: one user per
// account, one name per user, the cap kept, each revoked session reported
// once.
func TestClusterStoreFaults(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	client := clusterClient(t, cluster.URL)
	s := NewRedis(client, RedisOptions{Prefix: "chat:"})
	ctx := t.Context()
	const keep, accounts = 5, 12
	expires := time.Now().Add(time.Hour)

	t.Run("login on a slot half migrated", func(t *testing.T) {
		sess := func(i int) Session {
			return Session{ID: fmt.Sprint("m", i), UserID: "mig", Expires: expires}
		}
		for i := range 3 {
			_, err := s.CreateSession(ctx, fmt.Sprint("m", i), sess(i), 0)
			must(t, err)
		}
		// A revocation left undone, of a session gone since: the login
		// empties the revoking set, then fills it again.
		must(t, client.ZAdd(ctx, s.revokingKey("mig"), redis.Z{Score: 1, Member: "gone"}).Err())
		stop := halfMigrate(t, cluster, s.indexKey("mig"))
		revoked, err := s.CreateSession(ctx, "m3", sess(3), 2)
		stop()
		must(t, err)
		if got := sessionIDs(revoked); !slices.Equal(got, []string{"m0", "m1"}) {
			t.Fatalf("revoked %q, want [m0 m1]", got)
		}
		for i, want := range []bool{false, false, true, true} {
			if _, err := s.Session(ctx, fmt.Sprint("m", i)); (err == nil) != want {
				t.Errorf("session m%d: %v, want valid %v", i, err, want)
			}
		}
	})

	var mu sync.Mutex
	logins := map[string]bool{} // token hash → whether its CreateSession succeeded
	reported := map[string]int{}
	users := map[string][]User{} // account → users returned
	calls, failures := 0, 0
	record := func(err error) bool {
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("unexpected error: %v", err)
		}
		calls++
		if err != nil {
			failures++
		}
		return err == nil
	}
	// Some calls before and after each fault.
	settled := func() {
		t.Helper()
		mu.Lock()
		from := calls
		mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := calls
			mu.Unlock()
			if n >= from+200 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d calls in 10 s", n-from)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Keys that make the slots' migration take a while, so that calls
	// meet it halfway (ASK, TRYAGAIN).
	for _, key := range []string{s.userKey("racer"), s.nameKey("ivy-2")} {
		_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range 3000 {
				p.Set(ctx, fmt.Sprint(key, ":pad:", i), "x", 0)
			}
			return nil
		})
		must(t, err)
	}
	login := func(h string) error {
		revoked, err := s.CreateSession(ctx, h, Session{ID: h, UserID: "racer", Username: "racer", Expires: expires}, keep)
		mu.Lock()
		defer mu.Unlock()
		logins[h] = record(err)
		for _, r := range revoked {
			reported[r.ID]++
		}
		return err
	}
	first := func(account int) error {
		u, err := s.UserForIdentity(ctx, "github", fmt.Sprint(account), "ivy", fmt.Sprint("id-", account, "-", time.Now().UnixNano()))
		mu.Lock()
		defer mu.Unlock()
		if record(err) {
			users[fmt.Sprint(account)] = append(users[fmt.Sprint(account)], u)
		}
		return err
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if w < 2 {
					login(fmt.Sprint("h-", w, "-", i))
				} else {
					first((i*2 + w) % accounts)
				}
			}
		})
	}
	move := func(key string) { // to another primary
		t.Helper()
		from := cluster.PrimaryOf(t, key)
		for _, p := range cluster.Primaries(t) {
			if p != from {
				cluster.MoveSlot(t, cluster.Slot(t, key), p)
				return
			}
		}
	}
	settled()
	move(s.userKey("racer"))
	settled()
	move(s.nameKey("ivy-2"))
	settled()
	// Writes held past the client's timeout: the calls fail, and the
	// steps they sent run when the pause ends, after their callers have
	// given up on them (a reply lost).
	for _, key := range []string{s.userKey("racer"), s.nameKey("ivy")} {
		a := redis.NewClient(&redis.Options{Addr: cluster.PrimaryOf(t, key)})
		must(t, a.Do(ctx, "CLIENT", "PAUSE", 1500, "WRITE").Err())
		a.Close()
	}
	settled()
	// Last: a MoveSlot right after a failover may read a node's view from
	// before it (redistest).
	cluster.Failover(t, cluster.PrimaryOf(t, s.nameKey("ivy")))
	settled()
	close(stop)
	wg.Wait()

	settle := func(what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for f() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s fails after the faults", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	settle("a login", func() error { return login("h-last") })
	for a := range accounts {
		settle("a first login", func() error { return first(a) })
	}
	t.Logf("%d calls, %d failed during the faults", calls, failures)

	// Sessions: exactly keep valid, all listed; none valid that was
	// reported; every handed-out token that is gone reported once.
	live := 0
	for h, ok := range logins {
		_, err := s.Session(ctx, h)
		switch {
		case err == nil:
			if reported[h] > 0 {
				t.Errorf("session %s reported revoked but valid", h)
			}
			if _, err := client.ZScore(ctx, s.indexKey("racer"), h).Result(); err != nil {
				t.Errorf("valid session %s of a login that %s is not on the index: %v", h, map[bool]string{true: "succeeded", false: "failed"}[ok], err)
			}
			live++
		case errors.Is(err, ErrNoSession):
			if ok && reported[h] != 1 {
				t.Errorf("session %s is gone and was reported %d times", h, reported[h])
			}
		default:
			t.Fatal(err)
		}
	}
	if live != keep {
		t.Errorf("%d valid sessions, want %d", live, keep)
	}
	for h, n := range reported {
		if n > 1 {
			t.Errorf("session %s reported revoked %d times", h, n)
		}
	}

	// Users: one per account, whatever the calls, with a name of its own
	// that leads back to it.
	names := map[string]string{}
	for a, us := range users {
		for _, u := range us {
			if u != us[0] {
				t.Fatalf("account %s gave %+v and %+v", a, us[0], u)
			}
		}
		u := us[0]
		if other, taken := names[u.Username]; taken {
			t.Fatalf("accounts %s and %s share the name %s", a, other, u.Username)
		}
		names[u.Username] = a
		got, err := s.UserByName(ctx, u.Username)
		wantUser(t, "UserByName", got, err, u)
	}
}

// halfMigrate marks the slot of key as migrating from its primary to
// another, with none of its keys moved yet, and returns a function that
// ends the migration where it started.
func halfMigrate(t *testing.T, cluster *redistest.Cluster, key string) (stop func()) {
	t.Helper()
	ctx := t.Context()
	src := cluster.PrimaryOf(t, key)
	var dst string
	for _, p := range cluster.Primaries(t) {
		if p != src {
			dst = p
		}
	}
	sa, da := redis.NewClient(&redis.Options{Addr: src}), redis.NewClient(&redis.Options{Addr: dst})
	t.Cleanup(func() { sa.Close(); da.Close() })
	id := func(a *redis.Client) string {
		s, err := a.Do(ctx, "CLUSTER", "MYID").Text()
		must(t, err)
		return s
	}
	slot := cluster.Slot(t, key)
	must(t, da.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", id(sa)).Err())
	must(t, sa.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", id(da)).Err())
	return func() {
		must(t, sa.Do(ctx, "CLUSTER", "SETSLOT", slot, "STABLE").Err())
		must(t, da.Do(ctx, "CLUSTER", "SETSLOT", slot, "STABLE").Err())
	}
}
