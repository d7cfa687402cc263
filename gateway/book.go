package gateway

import (
	"slices"
	"sync"
	"time"
)

// channelBook is which channels a node's sessions have been told exist:
// the channel list of each session's welcome and every create and destroy
// event sent since. The create and destroy notices keep it, and so do
// settle and the local fallback of a destroy. The notices published while
// the node's pub/sub path was down are lost; comparing the book with the
// registry afterwards (settle) finds the changes. Because welcomes are
// built from the book, too, every session has the same view, and one
// event per change brings all of them up to date.
type channelBook struct {
	mu    sync.Mutex
	names map[string]struct{} // guarded by mu
	// heard is non-nil while settle reads the registry: the channels whose
	// notices arrived meanwhile, and which the read may predate.
	heard map[string]struct{} // guarded by mu
	// changes counts the changes to names and the destroys heard; gone
	// holds, for a minute, when each channel left the book (or was heard
	// destroyed), so that learn can tell a channel that is new to the book
	// from one that was destroyed after a snapshot.
	changes uint64              // guarded by mu
	gone    map[string]goneMark // guarded by mu
	pruned  time.Time           // guarded by mu: when gone was last pruned
}

// goneMark is when a channel left the book: after change number seq, at at.
type goneMark struct {
	seq uint64
	at  time.Time
}

// goneKeep is how long the book remembers that a channel left it: longer
// than an attach may take (10 s).
const goneKeep = time.Minute

// tell records that channel now exists or is gone. If that is news to the
// book, it calls send, which passes the event on to the sessions, under
// the book's lock, so that settle cannot interleave an event of its own
// for the same channel. A notice that settle or a local fallback has
// already applied is not sent twice.
func (b *channelBook) tell(channel string, exists bool, send func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heard != nil {
		b.heard[channel] = struct{}{}
	}
	if _, known := b.names[channel]; known == exists {
		if !exists {
			// Gone, though the book never had it (its create was lost):
			// learn must not bring it back either.
			b.markGoneLocked(channel)
		}
		return
	}
	send()
	b.setLocked(channel, exists)
}

func (b *channelBook) setLocked(channel string, exists bool) {
	if b.names == nil {
		b.names = make(map[string]struct{})
	}
	b.changes++
	if exists {
		b.names[channel] = struct{}{}
		delete(b.gone, channel)
		return
	}
	delete(b.names, channel)
	b.markGoneLocked(channel)
}

// markGoneLocked records that channel left the book now. Marks older than
// goneKeep are dropped once per goneKeep, so the map holds at most about
// two minutes of destroys.
func (b *channelBook) markGoneLocked(channel string) {
	if b.gone == nil {
		b.gone = make(map[string]goneMark)
	}
	now := time.Now()
	if now.Sub(b.pruned) > goneKeep {
		for c, g := range b.gone {
			if now.Sub(g.at) > goneKeep {
				delete(b.gone, c)
			}
		}
		b.pruned = now
	}
	b.changes++
	b.gone[channel] = goneMark{seq: b.changes, at: now}
}

// settle reads the registry's channels with read and brings the book in
// line with them, calling change (under the book's lock) for each channel
// whose existence differs. A channel whose notice arrives while read runs
// is left as the notice put it: the read may predate the notice, and if it
// is the notice that is older, the later change's own notice is still on
// its way (the node is subscribed before settle starts) and will set the
// book right. If read fails, the book is unchanged. Calls of settle must
// not overlap.
func (b *channelBook) settle(read func() ([]string, error), change func(channel string, exists bool)) error {
	b.mu.Lock()
	b.heard = make(map[string]struct{})
	b.mu.Unlock()
	current, err := read()

	b.mu.Lock()
	defer b.mu.Unlock()
	heard := b.heard
	b.heard = nil
	if err != nil {
		return err
	}
	now := make(map[string]struct{}, len(current))
	for _, c := range current {
		now[c] = struct{}{}
		if _, ok := heard[c]; ok {
			continue
		}
		if _, ok := b.names[c]; !ok {
			b.setLocked(c, true)
			change(c, true)
		}
	}
	for c := range b.names {
		if _, ok := heard[c]; ok {
			continue
		}
		if _, ok := now[c]; !ok {
			b.setLocked(c, false)
			change(c, false)
		}
	}
	return nil
}

// seed fills the book from the registry, telling nobody: New calls it
// before any session exists.
func (b *channelBook) seed(read func() ([]string, error)) error {
	return b.settle(read, func(string, bool) {})
}

// snapshot calls add, which puts a session on the cluster topic, and
// returns the book's channels, sorted, for the session's welcome (every
// change after the snapshot reaches the session as an event), and the
// book's change count, for learn.
func (b *channelBook) snapshot(add func()) (channels []string, changes uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	add()
	channels = make([]string, 0, len(b.names))
	for c := range b.names {
		channels = append(channels, c)
	}
	slices.Sort(channels)
	return channels, b.changes
}

// learn records that channel exists, which the registry said after the
// snapshot with change count since was taken, and calls send if that is
// news to the book. If the channel left the book after the snapshot, it
// does nothing: the registry's word is older than that destroy, which the
// session has received as an event.
func (b *channelBook) learn(channel string, since uint64, send func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heard != nil {
		// A settle reading meanwhile may predate this channel, too.
		b.heard[channel] = struct{}{}
	}
	if _, known := b.names[channel]; known {
		return true
	}
	if g, ok := b.gone[channel]; ok && g.seq > since {
		return false
	}
	send()
	b.setLocked(channel, true)
	return true
}
