package pubsub

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Audit checks the invariants of the shared state (spec section 4) and
// returns what it found wrong, one line each: every channel listed exists
// and the other way round, each has an owner who owns it, every
// membership is the same seen from the channel and from the user, a
// channel's roster names its members, and no key of a channel outlives
// it. On a cluster it first has the repairs done that readers and the
// repair loop would do: what a failure between two steps left behind is
// not wrong, as long as it is repaired.
//
// It reads every key under the prefix: run it when no change is under way
// (the tests do, after each fault), not on a busy production Redis.
func (r *Redis) Audit(ctx context.Context) ([]string, error) {
	switch k := r.keyspace.(type) {
	case *sharded:
		return k.audit(ctx)
	case *single:
		return k.audit(ctx)
	}
	return nil, fmt.Errorf("pubsub: no audit of %T", r.keyspace)
}

// scan returns every key under the prefix that matches pattern (after the
// prefix), from every primary.
func (r *store) scan(ctx context.Context, pattern string) ([]string, error) {
	var mu sync.Mutex // ForEachMaster runs each on a goroutine of its own
	var out []string
	each := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, r.prefix+pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, strings.TrimPrefix(iter.Val(), r.prefix))
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := r.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Client:
		err = each(ctx, c)
	default:
		err = fmt.Errorf("pubsub: cannot scan a %T", c)
	}
	slices.Sort(out)
	return out, err
}

// audit is the layout-independent part: from each channel's owner,
// members and roster, and each user's joined and owned channels, it
// finds what disagrees.
type auditState struct {
	listed   map[string]bool
	owner    map[string]string            // channel -> owner, for channels that exist
	members  map[string]map[string]string // channel -> user -> what the channel says (a gen, or "")
	roster   map[string]map[string]string // channel -> user -> username, from the roster
	names    map[string]map[string]string // channel -> user -> username, from names
	joined   map[string]map[string]string // user -> channel -> what the user's index says
	owned    map[string]map[string]string // user -> channel -> what the owner's index says
	leftover []string                     // keys of channels that do not exist
}

func newAuditState() *auditState {
	return &auditState{
		listed: map[string]bool{}, owner: map[string]string{}, members: map[string]map[string]string{},
		roster: map[string]map[string]string{}, names: map[string]map[string]string{},
		joined: map[string]map[string]string{}, owned: map[string]map[string]string{},
	}
}

func (a *auditState) problems() []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for ch := range a.listed {
		if _, ok := a.owner[ch]; !ok {
			bad("%s is listed but does not exist", ch)
		}
	}
	for ch, owner := range a.owner {
		if !a.listed[ch] {
			bad("%s exists but is not listed", ch)
		}
		if owner == "" {
			bad("%s has no owner", ch)
		} else if _, ok := a.owned[owner][ch]; !ok {
			bad("%s's owner %s does not own it", ch, owner)
		}
		for u, v := range a.members[ch] {
			if w, ok := a.joined[u][ch]; !ok || w != v {
				bad("%s is a member of %s (%q), its index says %q", u, ch, v, w)
			}
			if a.roster[ch][u] == "" || a.roster[ch][u] != a.names[ch][u] {
				bad("%s of %s is in the roster as %q and in the names as %q", u, ch, a.roster[ch][u], a.names[ch][u])
			}
		}
		for u := range a.roster[ch] {
			if _, ok := a.members[ch][u]; !ok {
				bad("%s is in the roster of %s but no member", u, ch)
			}
		}
		for u := range a.names[ch] {
			if _, ok := a.members[ch][u]; !ok {
				bad("%s is in the names of %s but no member", u, ch)
			}
		}
	}
	for u, chs := range a.joined {
		for ch := range chs {
			if _, ok := a.members[ch][u]; !ok {
				bad("%s's index says it is a member of %s, which says not", u, ch)
			}
		}
	}
	for u, chs := range a.owned {
		for ch := range chs {
			if a.owner[ch] != u {
				bad("%s's index says it owns %s, whose owner is %q", u, ch, a.owner[ch])
			}
		}
	}
	for _, k := range a.leftover {
		bad("%s outlives its channel", k)
	}
	slices.Sort(out)
	return out
}

// audit of a single Redis: the sets of the layout read as they are.
func (r *single) audit(ctx context.Context) ([]string, error) {
	a := newAuditState()
	c := r.client
	listed, err := c.SMembers(ctx, r.key("channels")).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	owners, err := c.HGetAll(ctx, r.key("owner")).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	for _, ch := range listed {
		a.listed[ch] = true
		a.owner[ch] = owners[ch]
	}
	for ch, o := range owners {
		if !a.listed[ch] {
			a.leftover = append(a.leftover, "owner of "+ch)
		}
		a.owner[ch] = o
	}
	keys, err := r.scan(ctx, "*")
	if err != nil {
		return nil, r.wrap(err)
	}
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, "members:"):
			ch := strings.TrimPrefix(k, "members:")
			ids, err := c.SMembers(ctx, r.prefix+k).Result()
			if err != nil {
				return nil, r.wrap(err)
			}
			if !a.listed[ch] {
				a.leftover = append(a.leftover, k)
				continue
			}
			a.members[ch] = map[string]string{}
			for _, u := range ids {
				a.members[ch][u] = ""
			}
		case strings.HasPrefix(k, "joined:"), strings.HasPrefix(k, "owned:"):
			kind, u, _ := strings.Cut(k, ":")
			chs, err := c.SMembers(ctx, r.prefix+k).Result()
			if err != nil {
				return nil, r.wrap(err)
			}
			m := map[string]string{}
			for _, ch := range chs {
				m[ch] = ""
			}
			if kind == "joined" {
				a.joined[u] = m
			} else {
				a.owned[u] = m
			}
		}
	}
	if err := r.auditRosters(ctx, a); err != nil {
		return nil, err
	}
	return a.problems(), nil
}

// auditRosters reads the roster and names of every channel with members
// or that exists, and finds the leftovers of channels that do not.
func (r *store) auditRosters(ctx context.Context, a *auditState) error {
	keys, err := r.scan(ctx, "{c:*}:*")
	if err != nil {
		return r.wrap(err)
	}
	for _, k := range keys {
		tag, suffix, ok := strings.Cut(strings.TrimPrefix(k, "{c:"), "}:")
		if !ok {
			continue
		}
		_, exists := a.owner[tag]
		switch suffix {
		case "roster":
			entries, err := r.client.ZRange(ctx, r.prefix+k, 0, -1).Result()
			if err != nil {
				return r.wrap(err)
			}
			m := map[string]string{}
			for _, e := range entries {
				name, id, _ := strings.Cut(e, "\x00")
				m[id] = name
			}
			a.roster[tag] = m
		case "names":
			m, err := r.client.HGetAll(ctx, r.prefix+k).Result()
			if err != nil {
				return r.wrap(err)
			}
			a.names[tag] = m
		case "log", "members", "meta":
		default:
			continue // seq and gen go on; ids lapse
		}
		if !exists {
			a.leftover = append(a.leftover, k)
		}
	}
	return nil
}

// audit of a cluster: the repairs first, then the keys as they are.
func (r *sharded) audit(ctx context.Context) ([]string, error) {
	if _, err := r.repairPending(ctx, 0); err != nil {
		return nil, err
	}
	users := map[string]bool{}
	for _, pattern := range []string{"{u:*}:joined", "{u:*}:owned"} {
		keys, err := r.scan(ctx, pattern)
		if err != nil {
			return nil, r.wrap(err)
		}
		for _, k := range keys {
			u, _, _ := strings.Cut(strings.TrimPrefix(k, "{u:"), "}:")
			users[u] = true
		}
	}
	for u := range users { // a reader's repairs
		if _, err := r.verify(ctx, u); err != nil {
			return nil, err
		}
	}
	a := newAuditState()
	listed, err := r.client.SMembers(ctx, r.globalKey("channels")).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	for _, ch := range listed {
		a.listed[ch] = true
	}
	if n, err := r.client.HLen(ctx, r.globalKey("pending")).Result(); err != nil {
		return nil, r.wrap(err)
	} else if n > 0 {
		a.leftover = append(a.leftover, fmt.Sprintf("{cluster}:pending (%d entries)", n))
	}
	metas, err := r.scan(ctx, "{c:*}:meta")
	if err != nil {
		return nil, r.wrap(err)
	}
	for _, k := range metas {
		ch := strings.TrimSuffix(strings.TrimPrefix(k, "{c:"), "}:meta")
		owner, err := r.client.HGet(ctx, r.metaKey(ch), "owner").Result()
		if err != nil && err != redis.Nil {
			return nil, r.wrap(err)
		}
		a.owner[ch] = owner
		members, err := r.client.HGetAll(ctx, r.membersKey(ch)).Result()
		if err != nil {
			return nil, r.wrap(err)
		}
		a.members[ch] = members
	}
	for u := range users {
		for kind, into := range map[string]map[string]map[string]string{"joined": a.joined, "owned": a.owned} {
			m, err := r.client.HGetAll(ctx, r.userKey(u, kind)).Result()
			if err != nil {
				return nil, r.wrap(err)
			}
			for ch, v := range m {
				if strings.HasPrefix(v, "p:") {
					delete(m, ch) // a change under way, young enough to be left alone
				}
			}
			if kind == "owned" { // the owner's index holds the create's gen
				for ch := range m {
					m[ch] = ""
				}
			}
			into[u] = m
		}
	}
	if err := r.auditRosters(ctx, a); err != nil {
		return nil, err
	}
	return a.problems(), nil
}
