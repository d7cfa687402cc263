package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/pubsub"
)

// The checker. Its rules, each a kind of violation below:
//
//   - History (read from Redis): every stored frame has the seq it is
//     stored under; no message (sender and request id) is stored twice;
//     every acknowledged message is stored at the seq of its ack (unless
//     trimmed); no refused message is stored; nothing unknown is stored.
//   - One seq, one message: every frame a client got for a seq, live or
//     from history, is the one Redis stores for it.
//   - Each connection: a log's messages arrive in increasing seq, none
//     twice. For the logs whose membership never changes (the stable
//     channels and the conversations), with no gap, starting no later
//     than the welcome's latest plus one, and, on a connection open at
//     the end, up to the last seq.
//   - Each device (the connections of one place, one after another):
//     what arrived live plus what it fetched when it resumed holds every
//     message of its stable logs from its first welcome on.
//   - Churn channels: a connection open at the end that was open while
//     its user joined gets every message sent after the join's ack and
//     acknowledged before the user's next leave was sent; unless the
//     join waited its full 2 s for the nodes of the user's sessions while
//     a fault cut this node's pub/sub path (spec section 10, reading 8:
//     such a node gets the channel when it catches up).
//   - A sender's messages: acknowledged in an order, stored in it.
//   - Memberships in Redis are what the acks said.
//   - Every welcome has the same epoch (Redis keeps its data).
//   - No connection closed with a code the faults do not explain, and no
//     node reported a data race or a panic.

// report gathers the violations and the counts of a run.
type report struct {
	bad    map[string][]string // kind -> what
	counts map[string]int
	faults []*fault
	nodes  map[string]float64
}

func (r *report) violate(kind, format string, args ...any) {
	r.bad[kind] = append(r.bad[kind], fmt.Sprintf(format, args...))
}

// redisKey is the key of log's suffix (log or seq) in Redis
// (pubsub/redis_history.go).
func (w *world) redisKey(log, suffix string) string {
	tag := "c:" + log
	if strings.HasPrefix(log, "@") {
		a, b, _ := strings.Cut(log[1:], ":")
		tag = pubsub.Conversation(w.users[a].id, w.users[b].id)
	}
	return prefix + "{" + tag + "}:" + suffix
}

// allLogs are the logs of the load.
func allLogs(w *world) []string {
	set := map[string]bool{}
	for _, u := range w.users {
		for _, l := range u.logs {
			set[l] = true
		}
	}
	for _, k := range churnChannels {
		set[k] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// lastSeqs reads the last seq given in every log.
func lastSeqs(t *testing.T, c *cluster, w *world) map[string]uint64 {
	t.Helper()
	out := make(map[string]uint64)
	for _, log := range allLogs(w) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := c.rdb.Get(ctx, w.redisKey(log, "seq")).Uint64()
		cancel()
		if err != nil {
			t.Fatalf("read the last seq of %s: %v", log, err)
		}
		out[log] = v
	}
	return out
}

// targetOf is how u names log in frames it sends and receives.
func (u *user) targetOf(log string) string {
	if !strings.HasPrefix(log, "@") {
		return log
	}
	a, b, _ := strings.Cut(log[1:], ":")
	if a == u.name {
		return "@" + b
	}
	return "@" + a
}

// welcomeLatest is where c's delivery of log must start after: the
// welcome's latest (0 for a log it lists without messages).
func (c *connRec) welcomeLatest(log string) uint64 {
	return c.welcome.Latest[c.dev.u.targetOf(log)]
}

func top(msgs []liveMsg) uint64 {
	if len(msgs) == 0 {
		return 0
	}
	return msgs[len(msgs)-1].seq
}

// caughtUp reports whether every device's open connection has had every
// message of its stable logs up to final, and every device holds them.
func caughtUp(w *world, final map[string]uint64) bool {
	for _, u := range w.users {
		for _, d := range u.devices {
			d.mu.Lock()
			ok := d.conn != nil && d.caughtUpLocked(final)
			d.mu.Unlock()
			if !ok {
				return false
			}
		}
	}
	return true
}

func (d *device) caughtUpLocked(final map[string]uint64) bool {
	c := d.conn
	for _, log := range d.u.logs {
		f := final[log]
		if f > c.welcomeLatest(log) && top(c.live[log]) < f {
			return false
		}
		for s := d.start[log] + 1; s <= f; s++ {
			if _, ok := d.held[log][s]; !ok {
				return false
			}
		}
	}
	return true
}

// keyOf names a message frame by sender and request id (the text's first
// word; the set-up's messages are "setup:<peer>").
func keyOf(b []byte) (key string, seq uint64, err error) {
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return "", 0, err
	}
	id, _, _ := strings.Cut(f.Message, " ")
	return f.Username + "|" + id, f.Seq, nil
}

func (r *request) key() string { return r.dev.u.name + "|" + r.id }

// stored is one log as Redis holds it.
type stored struct {
	first  uint64            // the oldest seq still stored
	frames map[uint64][]byte // by seq
	seqOf  map[string]uint64 // by message key
}

func check(t *testing.T, c *cluster, w *world, f *faults, final map[string]uint64, quiet time.Duration) *report {
	t.Helper()
	rep := &report{bad: make(map[string][]string), counts: make(map[string]int), faults: f.list, nodes: c.totals()}

	// Our requests, by key.
	var devices []*device
	for _, u := range sortedUsers(w) {
		devices = append(devices, u.devices...)
	}
	sent := make(map[string]*request)
	for _, d := range devices {
		for _, r := range d.all {
			if r.action == "message" {
				sent[r.key()] = r
			}
		}
	}

	// History, from Redis.
	hist := make(map[string]*stored)
	for _, log := range allLogs(w) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		entries, err := c.rdb.XRange(ctx, w.redisKey(log, "log"), "-", "+").Result()
		cancel()
		if err != nil {
			t.Fatalf("read the history of %s: %v", log, err)
		}
		s := &stored{first: final[log] + 1, frames: make(map[uint64][]byte), seqOf: make(map[string]uint64)}
		hist[log] = s
		for i, e := range entries {
			seq, _ := strconv.ParseUint(strings.TrimSuffix(e.ID, "-0"), 10, 64)
			if i == 0 {
				s.first = seq
			}
			fr, _ := e.Values["f"].(string)
			s.frames[seq] = []byte(fr)
			key, fseq, err := keyOf([]byte(fr))
			switch {
			case err != nil:
				rep.violate("history", "%s seq %d: not a message frame: %.200s", log, seq, fr)
				continue
			case fseq != seq:
				rep.violate("history", "%s: stored under seq %d with seq %d in its frame", log, seq, fseq)
			}
			if prev, ok := s.seqOf[key]; ok {
				rep.violate("stored twice", "%s: message %s at seq %d and %d (a retried id stored again)", log, key, prev, seq)
			}
			s.seqOf[key] = seq
			if _, ok := sent[key]; !ok && !strings.Contains(key, "|setup:") {
				rep.violate("history", "%s seq %d: a message nobody sent: %s", log, seq, key)
			}
		}
		rep.counts["stored messages"] += len(entries)
	}

	// Each message request against history.
	for _, d := range devices {
		for _, r := range d.all {
			if r.action != "message" {
				continue
			}
			rep.counts["messages sent"]++
			if r.attempts > 1 {
				rep.counts["messages sent again (same id)"]++
			}
			s := hist[r.log]
			seq, isStored := s.seqOf[r.key()]
			switch {
			case !r.done:
				rep.violate("never answered", "%s message %s to %s: %d attempts, errors %v", d, r.id, r.target, r.attempts, r.errs)
			case r.acked:
				rep.counts["messages acked"]++
				switch {
				case r.seq < s.first:
					rep.counts["acked messages trimmed from history"]++
				case !isStored:
					rep.violate("acked but not stored", "%s message %s to %s acked with seq %d (errors before: %v), not in history", d, r.id, r.target, r.seq, r.errs)
				case seq != r.seq:
					rep.violate("acked but not stored", "%s message %s to %s acked with seq %d, stored at %d", d, r.id, r.target, r.seq, seq)
				}
			default:
				rep.counts["messages refused: "+r.refused]++
				if isStored {
					rep.violate("refused but stored", "%s message %s to %s: answers %v (%d attempts), the last refusing it, yet stored at seq %d", d, r.id, r.target, r.errs, r.attempts, seq)
				}
			}
			for _, e := range r.errs {
				rep.counts["message errors: "+e]++
			}
		}
	}

	// One seq, one message: what clients got against what Redis stores.
	same := func(where, log string, seq uint64, b []byte) {
		s := hist[log]
		if stored, ok := s.frames[seq]; ok {
			if !bytes.Equal(stored, b) {
				rep.violate("one seq, two messages", "%s: %s seq %d is %.160s; Redis stores %.160s", where, log, seq, b, stored)
			}
		} else if seq >= s.first {
			rep.violate("one seq, two messages", "%s: %s seq %d arrived (%.160s) but Redis has no such seq", where, log, seq, b)
		}
	}
	for _, d := range devices {
		for _, log := range slices.Sorted(maps.Keys(d.held)) {
			for seq, b := range d.held[log] {
				same(d.String(), log, seq, b)
			}
		}
		for _, cn := range d.conns {
			for log, msgs := range cn.live {
				for _, m := range msgs {
					same(fmt.Sprintf("%s conn %d", d, cn.n), log, m.seq, m.frame)
				}
			}
		}
	}

	// Each connection.
	for _, d := range devices {
		for _, cn := range d.conns {
			checkConn(rep, cn, final, hist, quiet)
		}
	}

	// Each device: live plus resumed covers its stable logs.
	for _, d := range devices {
		for _, log := range d.u.logs {
			var missing []uint64
			for s := max(d.start[log], hist[log].first-1) + 1; s <= final[log]; s++ {
				if _, ok := d.held[log][s]; !ok {
					missing = append(missing, s)
				}
			}
			if len(missing) > 0 {
				rep.violate("device misses messages", "%s: %s seqs %s not received live nor on resume (must hold from %d to %d; %d connections)",
					d, log, seqList(missing), d.start[log]+1, final[log], len(d.conns))
			}
		}
	}

	checkChurn(rep, w, f, devices, quiet)
	checkSenderOrder(rep, devices)
	checkMemberships(t, rep, c, w)

	// Epochs, closes, connections.
	epochs := map[string]int{}
	for _, d := range devices {
		rep.counts["connections"] += len(d.conns)
		rep.counts["reconnects"] += len(d.conns) - 1
		for _, cn := range d.conns {
			epochs[cn.welcome.Epoch]++
			rep.counts["fetched on resume"] += cn.fetched
			for _, msgs := range cn.live {
				rep.counts["delivered live"] += len(msgs)
			}
			if cn.closed == 0 || cn.closed > quiet {
				continue
			}
			code := fmt.Sprint(int(cn.status))
			rep.counts["closed with "+code]++
			switch cn.status {
			case websocket.StatusGoingAway, -1, websocket.StatusAbnormalClosure, websocket.StatusTryAgainLater:
				// A drain, a killed node, a backend failing at the welcome.
			default:
				rep.violate("unexpected close", "%s conn %d on %s closed at %.2fs with %s %q", d, cn.n, cn.node, cn.closed.Seconds(), code, cn.reason)
			}
		}
	}
	if len(epochs) != 1 {
		rep.violate("epoch changed", "welcomes had epochs %v: Redis kept its data, the epoch must stay", epochs)
	}
	for _, d := range devices {
		for _, r := range d.all {
			if r.action == "history" && r.acked {
				rep.counts["history pages on resume"]++
			}
		}
	}

	// The nodes' exits and logs.
	for _, e := range f.exits {
		if e.atStart() {
			rep.counts["node starts that found no Redis (restarted)"]++
			continue
		}
		rep.violate("node exited", "%s at %.2fs: %v\n%s", e.node, e.at.Seconds(), e.err, e.log)
	}
	endedLogs.mu.Lock()
	logs := slices.Clone(endedLogs.text)
	endedLogs.mu.Unlock()
	for _, nd := range c.nodes {
		if p := nd.current(); p != nil {
			logs = append(logs, fmt.Sprintf("--- %s (running):\n%s", nd.name, p.logs.String()))
		}
	}
	for _, l := range logs {
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if i := strings.Index(l, bad); i >= 0 {
				head, _, _ := strings.Cut(l, "\n")
				rep.violate("node crashed or raced", "%s: %s", head, l[i:min(len(l), i+3000)])
			}
		}
	}
	return rep
}

// checkConn checks what arrived live on one connection.
func checkConn(rep *report, cn *connRec, final map[string]uint64, hist map[string]*stored, quiet time.Duration) {
	d := cn.dev
	where := fmt.Sprintf("%s conn %d on %s (open %.2fs to %s)", d, cn.n, cn.node, cn.opened.Seconds(), closedAt(cn, quiet))
	openAtEnd := cn.closed == 0 || cn.closed > quiet
	for _, log := range slices.Sorted(maps.Keys(cn.live)) {
		msgs := cn.live[log]
		stable := slices.Contains(d.u.logs, log)
		for i := 1; i < len(msgs); i++ {
			prev, seq := msgs[i-1].seq, msgs[i].seq
			switch {
			case seq == prev:
				rep.violate("delivered twice", "%s: %s seq %d twice (at %.2fs and %.2fs)", where, log, seq, msgs[i-1].at.Seconds(), msgs[i].at.Seconds())
			case seq < prev:
				rep.violate("out of order", "%s: %s seq %d after %d (at %.2fs)", where, log, seq, prev, msgs[i].at.Seconds())
			case stable && seq != prev+1 && seq > hist[log].first:
				rep.violate("gap while connected", "%s: %s jumped from seq %d to %d at %.2fs: %s never arrived live", where, log, prev, seq, msgs[i].at.Seconds(), seqRange(max(prev+1, hist[log].first), seq-1))
			}
		}
	}
	// The start and the tail, for the stable logs.
	for _, log := range d.u.logs {
		msgs := cn.live[log]
		latest := cn.welcomeLatest(log)
		if len(msgs) > 0 && msgs[0].seq > latest+1 && msgs[0].seq > hist[log].first {
			rep.violate("late start", "%s: %s starts at seq %d (at %.2fs); the welcome's latest was %d: %s never arrived live",
				where, log, msgs[0].seq, msgs[0].at.Seconds(), latest, seqRange(max(latest+1, hist[log].first), msgs[0].seq-1))
		}
		if openAtEnd && final[log] > max(latest, top(msgs)) {
			rep.violate("missing at the end", "%s stayed open: %s has seqs up to %d, got live up to %d (welcome's latest %d)",
				where, log, final[log], top(msgs), latest)
		}
	}
	rep.counts["connections checked"]++
}

// checkChurn checks delivery on the churn channels to connections open at
// the end, over each membership of their user that a clean join began.
func checkChurn(rep *report, w *world, f *faults, devices []*device, quiet time.Duration) {
	// Every acked message to a churn channel.
	byChannel := map[string][]*request{}
	for _, d := range devices {
		for _, r := range d.all {
			if r.action == "message" && r.acked && slices.Contains(churnChannels, r.target) {
				byChannel[r.target] = append(byChannel[r.target], r)
			}
		}
	}
	arrivals := arrivalsOf(devices)
	// A node cut off from Redis during a join is not waited for (spec
	// section 10, reading 8), or not even counted among the user's nodes:
	// its pub/sub path is back up to settle after the fault ends.
	const settle = 5 * time.Second
	for _, d := range devices {
		u := d.u
		for _, cn := range d.conns {
			if cn.closed != 0 && cn.closed <= quiet {
				continue
			}
			for _, k := range churnChannels {
				for _, m := range u.memberships(k, quiet) {
					if m.join != nil && m.start > cn.opened && f.cuts(cn.node, m.join.first, m.join.ackAt, settle) {
						rep.counts["churn memberships exempt (join during a fault)"]++
						continue
					}
					from := max(m.start, cn.opened)
					got := map[uint64]bool{}
					for _, l := range cn.live[k] {
						got[l.seq] = true
					}
					var missing []uint64
					var detail []string
					for _, r := range byChannel[k] {
						if r.first >= from && r.ackAt <= m.end && !got[r.seq] {
							missing = append(missing, r.seq)
							detail = append(detail, fmt.Sprintf("seq %d from %s sent %.2fs acked %.2fs, first live on %s", r.seq, r.dev, r.first.Seconds(), r.ackAt.Seconds(), arrivals.of(k, r.seq)))
						}
					}
					rep.counts["churn memberships checked"]++
					if len(missing) > 0 {
						slices.Sort(missing)
						rep.violate("churn: member missed messages", "%s conn %d on %s (open since %.2fs): member of %s from %.2fs (%s) to %s (%s), yet seqs %s never arrived\n      %s\n      events on the connection: %s",
							d, cn.n, cn.node, cn.opened.Seconds(), k, m.start.Seconds(), m.join, endOf(m.end, quiet), m.leave,
							seqList(missing), strings.Join(detail, "; "), cn.eventsOf(k))
					}
				}
			}
		}
	}
}

// arrivals is, by log, seq and node, when a message first arrived live
// on a connection to that node: when the node delivered it.
type arrivals map[string]map[uint64]map[string]time.Duration

func arrivalsOf(devices []*device) arrivals {
	a := arrivals{}
	for _, d := range devices {
		for _, cn := range d.conns {
			for log, msgs := range cn.live {
				if a[log] == nil {
					a[log] = map[uint64]map[string]time.Duration{}
				}
				for _, m := range msgs {
					byNode := a[log][m.seq]
					if byNode == nil {
						byNode = map[string]time.Duration{}
						a[log][m.seq] = byNode
					}
					if at, ok := byNode[cn.node]; !ok || m.at < at {
						byNode[cn.node] = m.at
					}
				}
			}
		}
	}
	return a
}

// of says where and when seq of log first arrived, node by node.
func (a arrivals) of(log string, seq uint64) string {
	byNode := a[log][seq]
	var out []string
	for _, n := range slices.Sorted(maps.Keys(byNode)) {
		out = append(out, fmt.Sprintf("%s %.2fs", n, byNode[n].Seconds()))
	}
	if len(out) == 0 {
		return "no node"
	}
	return strings.Join(out, " ")
}

// membership is a stretch of time its user was surely a member of a
// channel: from a join's ack (or the set-up) to the first send of the
// next leave (or the end).
type membership struct {
	join, leave *request // nil: from the set-up, to the end
	start, end  time.Duration
}

func (u *user) memberships(k string, end time.Duration) []membership {
	var out []membership
	var cur *membership
	member := u.initial(k)
	if member {
		cur = &membership{end: end}
	}
	for _, r := range u.changes {
		if r.target != k || !r.acked {
			continue
		}
		switch {
		case r.action == "join" && cur == nil:
			cur = &membership{join: r, start: r.ackAt, end: end}
		case r.action == "leave" && cur != nil:
			cur.end, cur.leave = r.first, r
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// initial is whether u was a member of k after the set-up: the state its
// changes started from.
func (u *user) initial(k string) bool {
	member := u.member[k]
	for i := len(u.changes) - 1; i >= 0; i-- {
		if r := u.changes[i]; r.target == k && r.acked {
			member = r.action == "leave"
		}
	}
	return member
}

// String says when a request was sent and answered, for reports.
func (r *request) String() string {
	if r == nil {
		return "set-up or end"
	}
	via := []string{}
	for _, c := range r.conns {
		via = append(via, fmt.Sprintf("conn %d on %s", c.n, c.node))
	}
	return fmt.Sprintf("%s %s %s: sent %.2fs..%.2fs via %s, errors %v, answered %.2fs", r.dev, r.action, r.id, r.first.Seconds(), r.lastSent.Seconds(), strings.Join(via, ", "), r.errs, r.ackAt.Seconds())
}

// events lists the events of channel k that arrived on c.
func (c *connRec) eventsOf(k string) string {
	var out []string
	for _, e := range c.eventLog {
		var ev struct{ Event, Target, Username string }
		json.Unmarshal(e.frame, &ev)
		if ev.Target == k {
			out = append(out, fmt.Sprintf("%.2fs %s %s", e.at.Seconds(), ev.Username, ev.Event))
		}
	}
	return strings.Join(out, ", ")
}

// checkSenderOrder: a message acknowledged before another was first sent
// has the lower seq; and of two sent on one connection, each answered by
// its first attempt, the first sent has the lower seq.
func checkSenderOrder(rep *report, devices []*device) {
	for _, d := range devices {
		byLog := map[string][]*request{}
		for _, r := range d.all {
			if r.action == "message" && r.acked {
				byLog[r.log] = append(byLog[r.log], r)
			}
		}
		for _, log := range slices.Sorted(maps.Keys(byLog)) {
			rs := byLog[log]
			for _, a := range rs {
				for _, b := range rs {
					if a == b || a.seq < b.seq {
						continue
					}
					if a.ackAt < b.first {
						rep.violate("sender order", "%s: %s message %s acked at %.2fs with seq %d, then %s sent at %.2fs got the lower seq %d",
							d, log, a.id, a.ackAt.Seconds(), a.seq, b.id, b.first.Seconds(), b.seq)
					}
					if a.attempts == 1 && b.attempts == 1 && len(a.errs)+len(b.errs) == 0 && a.ackConn == b.ackConn && a.sentAt[0] < b.sentAt[0] {
						rep.violate("sender order", "%s: %s messages %s then %s sent on one connection got seqs %d and %d",
							d, log, a.id, b.id, a.seq, b.seq)
					}
				}
			}
		}
	}
}

// checkMemberships compares the memberships in Redis with the acks.
func checkMemberships(t *testing.T, rep *report, c *cluster, w *world) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := map[string][]string{} // channel -> member ids
	for _, u := range sortedUsers(w) {
		var joined []string
		for _, ch := range append(append([]string{}, stableChannels...), churnChannels...) {
			if slices.Contains(u.stable, ch) || u.member[ch] {
				want[ch] = append(want[ch], u.id)
				joined = append(joined, ch)
			}
		}
		u.mu.Lock()
		if u.busy {
			rep.violate("memberships", "%s: a join or leave never answered", u.name)
		}
		u.mu.Unlock()
		got, err := c.rdb.SMembers(ctx, prefix+"joined:"+u.id).Result()
		if err != nil {
			t.Fatalf("read joined of %s: %v", u.name, err)
		}
		slices.Sort(got)
		slices.Sort(joined)
		if !slices.Equal(got, joined) {
			var changes []string
			for _, r := range u.changes {
				changes = append(changes, fmt.Sprintf("%s %s: %s", r.action, r.target, r))
			}
			rep.violate("memberships", "%s: Redis says it is in %v; the acks said %v\n      its joins and leaves: %s", u.name, got, joined, strings.Join(changes, "\n        "))
		}
	}
	for ch, ids := range want {
		got, err := c.rdb.SMembers(ctx, prefix+"members:"+ch).Result()
		if err != nil {
			t.Fatalf("read members of %s: %v", ch, err)
		}
		slices.Sort(got)
		slices.Sort(ids)
		if !slices.Equal(got, ids) {
			rep.violate("memberships", "%s: Redis has members %v; the acks said %v", ch, got, ids)
		}
	}
	for _, u := range w.users {
		for _, r := range u.changes {
			rep.counts[r.action+"s"]++
			if r.attempts > 1 {
				rep.counts[r.action+"s sent again"]++
			}
		}
	}
}

func closedAt(cn *connRec, quiet time.Duration) string {
	if cn.closed == 0 || cn.closed > quiet {
		return "the end"
	}
	return fmt.Sprintf("%.2fs", cn.closed.Seconds())
}

func endOf(end, quiet time.Duration) string {
	if end >= quiet {
		return "the end"
	}
	return fmt.Sprintf("%.2fs", end.Seconds())
}

// seqRange writes the seqs from a to b.
func seqRange(a, b uint64) string {
	if a == b {
		return strconv.FormatUint(a, 10)
	}
	return fmt.Sprintf("%d..%d", a, b)
}

// seqList writes sorted seqs as ranges.
func seqList(seqs []uint64) string {
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		parts = append(parts, seqRange(seqs[i], seqs[j]))
		i = j + 1
	}
	if len(parts) > 12 {
		parts = append(parts[:12], fmt.Sprintf("… (%d seqs)", len(seqs)))
	}
	return strings.Join(parts, ",")
}

// print writes the report and fails the test for each kind of violation.
func (r *report) print(t *testing.T, seed uint64, faultsFor, took, settled time.Duration) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "chaos report: seed %d, faults for %v, whole run %v (settled %v after the last request was answered)\n",
		seed, faultsFor, took.Round(time.Millisecond), settled.Round(time.Millisecond))
	kinds := map[string]int{}
	for _, f := range r.faults {
		kinds[f.kind]++
	}
	fmt.Fprintf(&b, "faults injected: %d %v\n", len(r.faults), kinds)
	for _, f := range r.faults {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	b.WriteString("counts:\n")
	for _, k := range slices.Sorted(maps.Keys(r.counts)) {
		fmt.Fprintf(&b, "  %-48s %d\n", k, r.counts[k])
	}
	b.WriteString("nodes' metrics, added up over every process:\n")
	names := slices.Collect(maps.Keys(r.nodes))
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-72s %g\n", n, r.nodes[n])
	}
	t.Log(b.String())
	for _, kind := range slices.Sorted(maps.Keys(r.bad)) {
		list := r.bad[kind]
		shown := list
		if len(shown) > 10 {
			shown = shown[:10]
		}
		t.Errorf("%s: %d violations (replay: CHAT_TEST_CHAOS_SEED=%d)\n  %s", kind, len(list), seed, strings.Join(shown, "\n  "))
	}
}
