package gateway

import (
	"context"
	"time"
)

// Leaves in the stream (spec section 5: no gap while connected). A leave
// takes the leaver's sessions off a channel's topic, but only once the
// node has delivered to them every message of the channel stored before
// the leave: a message the node missed live (its pub/sub path was cut)
// and has yet to repair from history was stored while the user was still
// a member, and resume cannot bring it back, since the channel is no
// longer among the user's. So a leave waits in the channel's stream as a
// departure, which takes effect between the last message stored before
// the leave and the first one after it, as far as the node can tell.
//
// Where the leave happened is known exactly only to Redis (the !left
// notice is published by the leave's own atomic step, which cannot know
// the seq). A node learns bounds of it:
//
//   - A !left notice that comes while the channel's stream is in order
//     and no outage of the pub/sub path is unaccounted for: every message
//     published before the notice came before it, live, and has been
//     delivered. The leave takes effect at once (the usual case).
//   - Otherwise the node reads where the channel's numbering stands
//     (History.Last) after it learned of the leave: every message stored
//     before the leave is at or below it. The read may also count a few
//     messages stored just after the leave, which the leaver then gets
//     too (docs/protocol.md, section 10, reading 28).
//   - A live frame that comes after the !left notice was published after
//     it: the leave is below its seq, whatever the read said.
//
// A departure that has not taken effect after repairGiveUp takes effect
// anyway, as a repair gives up (reading 17): a leave never hangs. A join
// of the same user and channel calls it off (the sessions stay: the user
// is a member again), and a destroy, or the node leaving the topic, or a
// new epoch of the history store, makes it take effect at once: there is
// nothing left to deliver.

// departure is one user's leave of a channel, waiting in the channel's
// feed (feed.leaving). Its fields are guarded by the feed's mu.
type departure struct {
	user string
	// at bounds where the leave happened: the last seq stored before it
	// is at or below at. Set once known.
	at    uint64
	known bool
	// ordered is set once the leave's !left notice came on the topic: every
	// live frame that comes after it was published after the leave.
	ordered bool
	frames  [][]byte // left events, passed on to the topic's sessions when it takes effect
	done    []func() // told once it is over, taken effect or called off
	over    bool
	gone    chan struct{} // closed once over
}

// bound narrows where the leave happened to at or below seq.
func (d *departure) bound(seq uint64) {
	if !d.known || seq < d.at {
		d.at, d.known = seq, true
	}
}

// leavePoint is what the caller of depart knows of where a leave
// happened.
type leavePoint struct {
	// live: the leave's !left notice has just come on the channel's topic,
	// in publish order.
	live bool
	// last, if known, is where the channel's numbering stood at a moment
	// after the leave.
	last  uint64
	known bool
}

// depart takes user's sessions off channel's topic once the channel's
// stream has delivered every message stored before the user's leave, then
// passes frame (the left event; nil for none) to the topic's sessions,
// and calls done (nil for none). It does not block: done may be called
// before it returns, or later, from another goroutine.
func (s *sequencer) depart(topic, channel, user string, frame []byte, done func(), at leavePoint) {
	f := s.feedOf(topic)
	if f == nil { // no session on the topic: nobody to take off
		if done != nil {
			done()
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.leaving[user]
	fresh := d == nil
	if fresh {
		d = &departure{user: user, gone: make(chan struct{})}
	}
	if frame != nil {
		d.frames = append(d.frames, frame)
	}
	if done != nil {
		d.done = append(d.done, done)
	}
	if at.known {
		d.bound(at.last)
	}
	if at.live {
		d.ordered = true
		// Nothing published before the notice was lost on the way, and
		// what came has been delivered: the leave is where the stream is.
		if st := f.streams[channel]; st != nil && st.inOrder() && s.outages() == s.verified.Load() {
			d.bound(st.next - 1)
		}
	}
	if f.gone { // forgotten meanwhile: its sessions are gone
		s.endLocked(topic, f, d, true)
		return
	}
	f.leaving[user] = d
	s.reachedLocked(topic, channel, f)
	if fresh && !d.over {
		s.wg.Add(1)
		go s.await(topic, channel, f, d)
	}
}

// await reads where the channel's numbering stands if d does not know,
// and makes d take effect if the stream has not reached it within
// repairGiveUp (or the node shuts down).
func (s *sequencer) await(topic, channel string, f *feed, d *departure) {
	defer s.wg.Done()
	expire := time.NewTimer(repairGiveUp)
	defer expire.Stop()
	if s.boundOf(topic, channel, f, d, expire.C) {
		select {
		case <-d.gone:
			return
		case <-expire.C:
		case <-s.ctx.Done():
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !d.over {
		s.log.Warn("leave took effect before the channel's messages stored before it were delivered",
			"topic", topic, "user", d.user, "known", d.known, "at", d.at)
		s.endLocked(topic, f, d, true)
	}
}

// boundOf reads the channel's last seq for d until it has it (or d knows
// another way, or is over), and reports false if it gave up first.
func (s *sequencer) boundOf(topic, channel string, f *feed, d *departure, expire <-chan time.Time) bool {
	backoff := 100 * time.Millisecond
	for {
		f.mu.Lock()
		known, over := d.known, d.over
		f.mu.Unlock()
		if known || over {
			return true
		}
		last, err := s.last(channel)
		if err == nil {
			f.mu.Lock()
			if !d.over {
				d.bound(last)
				s.reachedLocked(topic, channel, f)
			}
			f.mu.Unlock()
			return true
		}
		s.log.Debug("read where a channel's numbering stands, for a leave", "channel", channel, "err", err)
		select {
		case <-time.After(backoff):
		case <-d.gone:
			return true
		case <-expire:
			return false
		case <-s.ctx.Done():
			return false
		}
		backoff = min(2*backoff, time.Second)
	}
}

// last reads the last seq given in channel, waiting for a reader's slot.
func (s *sequencer) last(channel string) (uint64, error) {
	select {
	case s.readers <- struct{}{}:
	case <-s.ctx.Done():
		return 0, s.ctx.Err()
	}
	defer func() { <-s.readers }()
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	last, err := s.history.Last(ctx, channel)
	if err != nil {
		return 0, err
	}
	return last[0], nil
}

// liveAfterLocked tells the departures of f that seq came live: those
// whose notice came before it happened below it.
func liveAfterLocked(f *feed, seq uint64) {
	for _, d := range f.leaving {
		if d.ordered {
			d.bound(seq - 1)
		}
	}
}

// reachedLocked makes the departures of f take effect that log's stream
// has delivered through.
func (s *sequencer) reachedLocked(topic, log string, f *feed) {
	if len(f.leaving) == 0 {
		return
	}
	if st := f.streams[log]; st != nil && st.next != 0 {
		s.throughLocked(topic, f, st.next-1)
	}
}

// throughLocked makes the departures of f take effect whose leave
// happened at or below seq, which the stream has delivered through.
func (s *sequencer) throughLocked(topic string, f *feed, seq uint64) {
	for _, d := range f.leaving {
		if d.known && d.at <= seq {
			s.endLocked(topic, f, d, true)
		}
	}
}

// leaveNowLocked makes every departure of f take effect.
func (s *sequencer) leaveNowLocked(topic string, f *feed) {
	for _, d := range f.leaving {
		s.endLocked(topic, f, d, true)
	}
}

// endLocked ends d: its left events go to the topic's sessions, then, if
// remove is set, its user's sessions are taken off the topic; then d's
// waiters are told.
func (s *sequencer) endLocked(topic string, f *feed, d *departure, remove bool) {
	d.over = true
	close(d.gone)
	if f.leaving[d.user] == d {
		delete(f.leaving, d.user)
	}
	for _, frame := range d.frames {
		s.router.forward(topic, frame, nil)
	}
	if remove {
		s.router.remove(topic, s.router.sessionsOf(userTopic(d.user))...)
	}
	for _, done := range d.done {
		done()
	}
}

// stay calls off user's departure from topic, if one waits: the user
// joined the channel again, so its sessions stay on it.
func (s *sequencer) stay(topic, user string) {
	s.mu.Lock()
	f := s.feeds[topic]
	s.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.leaving[user]; d != nil {
		s.endLocked(topic, f, d, false)
	}
}

// abandon makes every departure from topic take effect at once: the
// channel was destroyed, and its messages with it, so nothing is left to
// deliver.
func (s *sequencer) abandon(topic string) {
	s.mu.Lock()
	f := s.feeds[topic]
	s.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.leaveNowLocked(topic, f)
}
