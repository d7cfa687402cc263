package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// lossBackend is a store and ways to lose its data: all of it (a Redis
// that restarted without persistence), or single records (a partial loss,
// e.g. keys evicted).
type lossBackend struct {
	store          Store
	empty          func(t *testing.T)
	forgetIdentity func(t *testing.T, provider, subject string)
	forgetUsername func(t *testing.T, name string)
}

func lossBackends() map[string]func(t *testing.T) lossBackend {
	return map[string]func(t *testing.T) lossBackend{
		"memory": func(t *testing.T) lossBackend {
			m := NewMemory()
			return lossBackend{
				store: m,
				empty: func(t *testing.T) {
					fresh := NewMemory()
					m.mu.Lock()
					defer m.mu.Unlock()
					m.users, m.byName, m.identities, m.sessions, m.byUser = fresh.users, fresh.byName, fresh.identities, fresh.sessions, fresh.byUser
				},
				forgetIdentity: func(t *testing.T, provider, subject string) {
					m.mu.Lock()
					defer m.mu.Unlock()
					delete(m.identities, provider+"\x00"+subject)
				},
				forgetUsername: func(t *testing.T, name string) {
					m.mu.Lock()
					defer m.mu.Unlock()
					delete(m.byName, name)
				},
			}
		},
		"redis": func(t *testing.T) lossBackend {
			rdb, prefix := stateTestRedis(t)
			del := func(t *testing.T, key string) {
				if err := rdb.Del(t.Context(), key).Err(); err != nil {
					t.Fatal(err)
				}
			}
			return lossBackend{
				store: NewRedis(rdb, RedisOptions{Prefix: prefix}),
				empty: func(t *testing.T) {
					keys, err := rdb.Keys(t.Context(), prefix+"*").Result()
					if err != nil {
						t.Fatal(err)
					}
					if len(keys) == 0 {
						t.Fatal("the store holds no keys to lose")
					}
					if err := rdb.Del(t.Context(), keys...).Err(); err != nil {
						t.Fatal(err)
					}
				},
				forgetIdentity: func(t *testing.T, provider, subject string) {
					del(t, prefix+"identity:"+provider+":"+subject)
				},
				forgetUsername: func(t *testing.T, name string) { del(t, prefix+"username:"+name) },
			}
		},
	}
}

// devLoginAt dev-logs username in on the node at base and returns its
// identifier.
func devLoginAt(t *testing.T, base, username string) string {
	t.Helper()
	resp, err := http.Post(base+"/auth/dev/login", "application/json", strings.NewReader(`{"username":"`+username+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Identifier, Username string }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || got.Username != username {
		t.Fatalf("dev login %s: %s, %+v, %v", username, resp.Status, got, err)
	}
	return got.Identifier
}

// The same account has the same identifier after the store lost all its
// data (spec section 9), for a provider's account and for dev login; users
// stored before identifiers were derived keep theirs while the store keeps
// them; and another deployment's key gives other identifiers.
func TestIdentifierSurvivesDataLoss(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	for name, backend := range lossBackends() {
		t.Run(name, func(t *testing.T) {
			b := backend(t)
			e := newLoginEnvWith(t, loginOptions{store: b.store, tune: func(c *Config) {
				c.IdentityKey = key
				c.DevLogin = true
			}})
			// A user of an older version: a random identifier.
			old, err := b.store.UserForIdentity(t.Context(), "github", "1", "oldtimer", uuid.NewString())
			if err != nil {
				t.Fatal(err)
			}
			m, _ := e.login("github", e.gh, fakeUser{ID: 1, Login: "oldtimer"}, "oldtimer")
			if m.Identifier != old.ID {
				t.Fatalf("a stored user came back as %s, want its own %s", m.Identifier, old.ID)
			}

			octo, _ := e.login("github", e.gh, fakeUser{ID: 7, Login: "octo"}, "octo")
			corp, _ := e.login("corp", e.corp, fakeUser{Sub: "s-9", PreferredUsername: "nina"}, "nina")
			alice := devLoginAt(t, e.base, "alice")
			ns := identityNamespace(key)
			for _, c := range []struct{ got, want string }{
				{octo.Identifier, deriveUserID(ns, "github", "7")},
				{corp.Identifier, deriveUserID(ns, "corp", e.corp.srv.URL+"#s-9")},
				{alice, deriveUserID(ns, DevProvider, "alice")},
			} {
				if c.got != c.want {
					t.Errorf("identifier %s, want %s", c.got, c.want)
				}
			}

			b.empty(t)

			// Logged in again, in another order: the same identifiers.
			if got := devLoginAt(t, e.base, "alice"); got != alice {
				t.Errorf("dev login alice after the loss: %s, want %s", got, alice)
			}
			if m, _ := e.login("corp", e.corp, fakeUser{Sub: "s-9", PreferredUsername: "nina"}, "nina"); m.Identifier != corp.Identifier {
				t.Errorf("corp account after the loss: %s, want %s", m.Identifier, corp.Identifier)
			}
			if m, _ := e.login("github", e.gh, fakeUser{ID: 7, Login: "octo"}, "octo"); m.Identifier != octo.Identifier {
				t.Errorf("github account after the loss: %s, want %s", m.Identifier, octo.Identifier)
			}
			// The older user's link was lost with the rest: it gets the
			// derived identifier from now on.
			if m, _ := e.login("github", e.gh, fakeUser{ID: 1, Login: "oldtimer"}, "oldtimer"); m.Identifier != deriveUserID(ns, "github", "1") {
				t.Errorf("older user after the loss: %s, want the derived one", m.Identifier)
			}

			// Another deployment (another key): other identifiers.
			other := newLoginEnvWith(t, loginOptions{tune: func(c *Config) { c.IdentityKey = key + "x" }})
			if m, _ := other.login("github", other.gh, fakeUser{ID: 7, Login: "octo"}, "octo"); m.Identifier == octo.Identifier {
				t.Error("two deployments with different keys give one account the same identifier")
			}
		})
	}
}

// After a partial loss, what is left is reused: a user whose link to its
// account was lost is linked again, with its name, or a new name when
// another user took its name meanwhile.
func TestIdentityPartialLoss(t *testing.T) {
	ns := identityNamespace("k")
	for name, backend := range lossBackends() {
		t.Run(name, func(t *testing.T) {
			b := backend(t)
			ctx := context.Background()
			login := func(subject, login string) User {
				t.Helper()
				u, err := b.store.UserForIdentity(ctx, "github", subject, login, deriveUserID(ns, "github", subject))
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			octo := login("7", "octo")

			b.forgetIdentity(t, "github", "7")
			if u := login("7", "octo-renamed"); u != octo {
				t.Fatalf("link lost: %+v, want %+v", u, octo)
			}

			b.forgetIdentity(t, "github", "7")
			b.forgetUsername(t, "octo")
			if u := login("7", "octo-renamed"); u != octo {
				t.Fatalf("link and name lost: %+v, want %+v", u, octo)
			}
			if u, err := b.store.UserByName(ctx, "octo"); err != nil || u != octo {
				t.Fatalf("UserByName(octo) = %+v, %v; want %+v", u, err, octo)
			}

			// The name went to someone else while octo's link was lost.
			b.forgetIdentity(t, "github", "7")
			b.forgetUsername(t, "octo")
			thief, err := b.store.UserForName(ctx, "octo", deriveUserID(ns, DevProvider, "octo"))
			if err != nil {
				t.Fatal(err)
			}
			u := login("7", "octo")
			if u.ID != octo.ID || u.Username != "octo-2" {
				t.Fatalf("name taken meanwhile: %+v, want id %s named octo-2", u, octo.ID)
			}
			for name, want := range map[string]User{"octo": thief, "octo-2": u} {
				if got, err := b.store.UserByName(ctx, name); err != nil || got != want {
					t.Fatalf("UserByName(%s) = %+v, %v; want %+v", name, got, err, want)
				}
			}
			if got, err := b.store.UserByID(ctx, octo.ID); err != nil || got != u {
				t.Fatalf("UserByID = %+v, %v; want %+v", got, err, u)
			}
		})
	}
}
