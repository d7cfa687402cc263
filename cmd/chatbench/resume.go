package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wirechat/chat/protocol"
)

// The resume scenario: the fanout set-up and phase, but while the
// publishers send, a share (Drop) of the subscribers cut their websocket
// without a close handshake, stay away for Outage, connect again and resume
// as the spec (section 5) tells a client to: from the last seq they hold of
// each channel, history with after until the welcome's latest, dropping by
// seq what they hold already. Each resumed client's channel is then checked
// by seq against what the server stored in the phase, and its messages are
// counted with everyone else's by the fanout's rules.

// ResumeResult is the resume scenario's own outcome; the phase's counts
// are in Result.Phase.
type ResumeResult struct {
	Drop        float64       `json:"drop"`             // share of subscribers that dropped
	Outage      time.Duration `json:"outage_ns"`        // how long each stayed away
	Dropped     int           `json:"dropped"`          // subscribers that dropped
	Resumed     int           `json:"resumed"`          // of those, connected again and caught up
	Requests    uint64        `json:"history_requests"` // history requests of the catch-ups
	FromHistory uint64        `json:"from_history"`     // messages the catch-ups added
	Overlap     uint64        `json:"overlap"`          // messages held already when they came again (dropped by seq, as resume must)
	Checked     uint64        `json:"checked"`          // seqs the resumed clients were owed: the phase's messages of their channels
	Gaps        uint64        `json:"gaps"`             // of those, never received, live or from history
	Duplicates  uint64        `json:"duplicates"`       // messages (by their text) held under more than one seq
	Repeats     uint64        `json:"session_repeats"`  // live deliveries not above the session's last seq (spec 5: none while connected)
	Conflicts   uint64        `json:"conflicts"`        // seqs that came with two different messages
	Unexpected  uint64        `json:"unexpected"`       // seqs outside the phase's range
	CatchUp     Latency       `json:"catch_up"`         // from starting the reconnect to holding everything up to the welcome's latest
	FirstFault  string        `json:"first_fault,omitempty"`
}

// seqTracker is what one client holds of each target, by seq, guarded by
// the client's mu.
type seqTracker struct {
	sets map[string]*seqSet
}

func newSeqTracker() *seqTracker { return &seqTracker{sets: make(map[string]*seqSet)} }

func (t *seqTracker) set(target string) *seqSet {
	s := t.sets[target]
	if s == nil {
		s = new(seqSet)
		t.sets[target] = s
	}
	return s
}

// seqSet is what a client holds of one target: each seq with the message
// it came with (its text's source and number; foreignID for a text that
// is not a benchmark text).
type seqSet struct {
	ids        []uint64 // by seq; 0: not held
	max        uint64   // highest seq held
	sessionMax uint64   // highest seq delivered live in the current session
	repeats    uint64   // live deliveries at or below sessionMax
	overlap    uint64   // seqs held already, same message
	conflicts  uint64   // seqs held already, another message
	added      uint64   // seqs added from history
}

const foreignID = 1 << 63

// textID names a message by its text, for telling two messages apart.
func textID(text []byte) uint64 {
	source, seq, _, ok := parseText(text)
	if !ok || seq >= 1<<31 {
		return foreignID
	}
	return uint64(source)<<31 | seq
}

// add records seq with message id, delivered live or read from history,
// and says whether it is new (to be counted) or held already.
func (s *seqSet) add(seq, id uint64, live bool) bool {
	if live {
		if seq <= s.sessionMax {
			s.repeats++
		} else {
			s.sessionMax = seq
		}
	}
	if seq >= uint64(len(s.ids)) {
		if seq > 1<<26 {
			s.conflicts++ // far beyond any benchmark: not held
			return false
		}
		s.ids = append(s.ids, make([]uint64, int(seq)+1-len(s.ids)+len(s.ids)/2)...)
	}
	if prev := s.ids[seq]; prev != 0 {
		if prev != id {
			s.conflicts++
		} else {
			s.overlap++
		}
		return false
	}
	s.ids[seq] = id
	s.max = max(s.max, seq)
	if !live {
		s.added++
	}
	return true
}

// newSession starts a new websocket's count of live order.
func (s *seqSet) newSession() { s.sessionMax = 0 }

// check counts the seqs in (base, final] that s does not hold, and those it
// holds outside that range.
func (s *seqSet) check(base, final uint64) (owed, gaps, unexpected uint64) {
	if final > base {
		owed = final - base
	}
	for seq, id := range s.ids {
		if id == 0 {
			continue
		}
		if uint64(seq) <= base || uint64(seq) > final {
			unexpected++
		}
	}
	for seq := base + 1; seq <= final; seq++ {
		if seq >= uint64(len(s.ids)) || s.ids[seq] == 0 {
			gaps++
		}
	}
	return owed, gaps, unexpected
}

// onTrackedMessage is onMessage for a client whose seqs are tracked: a
// message it holds already (by seq) is dropped, as a resuming client does.
func (c *client) onTrackedMessage(t *seqTracker, frame, target, text []byte) {
	seq := seqOf(frame)
	if seq == 0 {
		c.onMessage(target, text, true)
		return
	}
	id := textID(text)
	c.mu.Lock()
	fresh := t.set(string(target)).add(seq, id, true)
	c.mu.Unlock()
	if fresh {
		c.onMessage(target, text, true)
	} else {
		c.delivered.Add(1)
	}
}

// dropped picks a share drop of cs, spread evenly (so over the channels).
func dropped(cs []*client, drop float64) []*client {
	var out []*client
	for i, c := range cs {
		if math.Floor(float64(i+1)*drop) > math.Floor(float64(i)*drop) {
			out = append(out, c)
		}
	}
	return out
}

// dropAt is when the j-th of n dropping clients cuts its connection,
// counted from the start of publishing: spread over the part of the
// publishing time that lets it come back while the publishers still send.
func dropAt(j, n int, dur, outage time.Duration) time.Duration {
	if dur <= outage {
		return dur / 10
	}
	span := dur - outage
	return span/10 + span/2*time.Duration(j)/time.Duration(max(n, 1))
}

func (b *bench) resume(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	p, err := publishersFor(cfg, cfg.Rate)
	if err != nil {
		return nil, err
	}
	g, err := b.setupChannels(ctx, p)
	if err != nil {
		return nil, err
	}
	rr := &ResumeResult{Drop: cfg.Drop, Outage: cfg.Outage}
	drops := dropped(g.subs, cfg.Drop)
	rr.Dropped = len(drops)
	for _, c := range drops {
		c.seqs.Store(newSeqTracker())
	}
	// Where each channel's numbering stands before the phase.
	askers := make(map[string]*client)
	for _, pub := range g.pubs {
		for _, ch := range g.of(pub) {
			if askers[ch] == nil {
				askers[ch] = pub
			}
		}
	}
	newest := func() (map[string]uint64, error) {
		out := make(map[string]uint64)
		for ch, c := range askers {
			pg, err := c.historyPage(ctx, ch, 0, 0, 1)
			if err != nil {
				return nil, err
			}
			out[ch] = pg.newest()
		}
		return out, nil
	}
	b.setStage("newest")
	base, err := newest()
	if err != nil {
		return nil, err
	}

	var (
		catchUp       = new(Histogram)
		requests      atomic.Uint64
		resumed       atomic.Int64
		faults        faultLog
		wg            sync.WaitGroup
		dropCtx, stop = context.WithCancel(ctx)
	)
	defer stop()
	start := time.Now()
	for j, c := range drops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sleep(dropCtx, dropAt(j, len(drops), cfg.Duration, cfg.Outage)-time.Since(start)); err != nil {
				return
			}
			d, n, err := b.dropAndResume(dropCtx, c, g.of(c))
			requests.Add(n)
			if err != nil {
				if dropCtx.Err() == nil {
					faults.add(fmt.Sprintf("%s: %v", c.name, err))
				}
				return
			}
			catchUp.Record(d)
			resumed.Add(1)
		}()
	}
	ph, err := b.measure(ctx, "publish", g.receivers(), g.pubs, g.of, g.of, cfg.Rate, cfg.Duration)
	res := &Result{Phase: &ph, Resume: rr}
	b.setStage("resume wait")
	wg.Wait() // a catch-up not done by now has run past the grace period
	stop()
	rr.Resumed, rr.Requests, rr.CatchUp = int(resumed.Load()), requests.Load(), catchUp.Summary()
	if err != nil {
		return res, err
	}

	b.setStage("newest")
	final, err := newest()
	if err != nil {
		return res, err
	}
	for _, c := range drops {
		c.mu.Lock()
		t := c.seqs.Load()
		for _, ch := range g.of(c) {
			s := t.set(ch)
			owed, gaps, unexpected := s.check(base[ch], final[ch])
			rr.Checked += owed
			rr.Gaps += gaps
			rr.Unexpected += unexpected
			rr.Repeats += s.repeats
			rr.Overlap += s.overlap
			rr.Conflicts += s.conflicts
			rr.FromHistory += s.added
			if gaps+unexpected+s.repeats+s.conflicts > 0 {
				faults.add(fmt.Sprintf("%s in %s: %d gaps, %d unexpected, %d session repeats, %d conflicts (seqs %d..%d, held up to %d)",
					c.name, ch, gaps, unexpected, s.repeats, s.conflicts, base[ch]+1, final[ch], s.max))
			}
		}
		for _, st := range c.streams {
			rr.Duplicates += st.dup
		}
		c.mu.Unlock()
	}
	_, rr.FirstFault = faults.get()
	switch {
	case rr.Resumed < rr.Dropped:
		err = fmt.Errorf("%d of %d dropped clients did not resume: %s", rr.Dropped-rr.Resumed, rr.Dropped, rr.FirstFault)
	case rr.Gaps+rr.Duplicates+rr.Repeats+rr.Conflicts+rr.Unexpected > 0:
		err = fmt.Errorf("resumed clients: %d gaps, %d duplicates, %d session repeats, %d conflicts, %d unexpected; the first: %s",
			rr.Gaps, rr.Duplicates, rr.Repeats, rr.Conflicts, rr.Unexpected, rr.FirstFault)
	case ph.Lost+ph.Duplicated+ph.Unexpected > 0:
		err = fmt.Errorf("%d lost, %d duplicated, %d unexpected deliveries", ph.Lost, ph.Duplicated, ph.Unexpected)
	}
	return res, err
}

// dropAndResume cuts c's websocket without a close handshake, waits
// Outage, connects again and catches up each of its channels from history.
// It connects to the next node of -url, if there are several. It returns
// the time from the start of the reconnect to the end of the
// catch-up and the number of history requests.
func (b *bench) dropAndResume(ctx context.Context, c *client, channels []string) (time.Duration, uint64, error) {
	t := c.seqs.Load()
	c.quitting.Store(true)
	c.conn.CloseNow()
	<-c.done
	c.quitting.Store(false)
	held := make(map[string]uint64)
	c.mu.Lock()
	for _, ch := range channels {
		s := t.set(ch)
		held[ch] = s.max
		s.newSession()
	}
	c.mu.Unlock()
	if err := sleep(ctx, b.cfg.Outage); err != nil {
		return 0, 0, err
	}

	// With several nodes it comes back on the next one, as a client of a
	// node that died would.
	if urls := b.cfg.URLs; len(urls) > 1 {
		c.node = urls[(slices.Index(urls, c.node)+1)%len(urls)]
	}
	start := time.Now()
	if _, err := c.dial(ctx); err != nil {
		return 0, 0, err
	}
	c.mu.Lock()
	latest := c.latest
	c.mu.Unlock()
	var requests uint64
	for _, ch := range channels {
		cursor := held[ch]
		for cursor < latest[ch] {
			p, err := c.historyRequest(ctx, ch, 0, cursor, true, protocol.MaxHistoryLimit)
			requests++
			if refused := refusedCode(err); refused == protocol.CodeRateLimited {
				b.noteError(string(refused))
				if err := sleep(ctx, 100*time.Millisecond); err != nil {
					return 0, requests, err
				}
				continue
			}
			if err != nil {
				return 0, requests, err
			}
			for _, m := range p.Msgs {
				if m.Seq <= cursor || string(m.Target) != ch {
					return 0, requests, fmt.Errorf("history after %d of %s holds seq %d of %s", cursor, ch, m.Seq, m.Target)
				}
				c.mu.Lock()
				fresh := t.set(ch).add(m.Seq, textID(m.Text), false)
				c.mu.Unlock()
				if fresh {
					c.onMessage(m.Target, m.Text, false)
				}
				cursor = m.Seq
			}
			if !p.More || len(p.Msgs) == 0 {
				break
			}
		}
	}
	return time.Since(start), requests, nil
}

func resumeRows(row func(string, any), r *ResumeResult) {
	row("dropped / resumed", fmt.Sprintf("%d / %d (drop %g, outage %v)", r.Dropped, r.Resumed, r.Drop, r.Outage))
	row("catch-up", fmt.Sprintf("%d history requests, %d messages from history, %d held already (dropped by seq)",
		r.Requests, r.FromHistory, r.Overlap))
	row("seqs checked", r.Checked)
	row("GAPS", r.Gaps)
	row("DUPLICATES", r.Duplicates)
	row("session repeats", r.Repeats)
	row("seq conflicts", r.Conflicts)
	row("unexpected seqs", r.Unexpected)
	if r.FirstFault != "" {
		row("  first fault", r.FirstFault)
	}
	row("catch-up ms", fmt.Sprintf("p50 %.3f  p99 %.3f  max %.3f  (n=%d)", r.CatchUp.P50, r.CatchUp.P99, r.CatchUp.Max, r.CatchUp.Count))
}
