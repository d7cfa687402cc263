package gateway

import (
	"slices"

	"github.com/wirechat/chat/pubsub"
)

// stream is what a node has delivered of one log on one topic, as a state
// machine: in order (the next live frame is due), a gap (a live frame came
// early: it is held, and a repair reads the missing ones from history),
// repairing (every live frame is held until the repair has filled the gap)
// and, for a channel, awaiting its baseline (what was stored before the
// node subscribed is not its to deliver; frames are held until it knows
// where to start). It never delivers a seq twice or out of order; it
// skips a seq only when history no longer has it.
//
// It is pure: the sequencer (sequencer.go) feeds it frames and history,
// and carries out what it returns.
type stream struct {
	// next is the seq due next; 0 while the baseline is not known.
	next uint64
	// held are live frames that came early, by seq, none at or below
	// next-1 and no seq twice.
	held      []pubsub.Entry
	repairing bool
	// rereads counts the reads of the current repair that ended short of
	// a held frame.
	rereads int
	// trusting is set for a stream that takes its first live frame as
	// its baseline (a conversation: see sequencer.go) instead of waiting.
	trusting bool
	// floating is set from a baseline until the first live frame: next
	// is then a floor, not a place. The baseline was read after the node
	// subscribed, but frames published before the read may still be on
	// their way on the pub/sub connection: the first that comes, even at
	// or below the baseline, is where the stream starts.
	floating bool
}

// maxHeld bounds the frames a stream holds: past it, the stream gives up
// on the gap (history cannot be read) and delivers what it holds.
const maxHeld = 4096

// step is what the sequencer must do after a change of a stream: deliver
// frames, in order, and start a repair (read history after next-1).
type step struct {
	deliver []pubsub.Entry
	repair  bool
	skipped uint64 // seqs given up as gone from history
}

// offer takes the live frame seq.
func (s *stream) offer(seq uint64, frame []byte) step {
	if s.next == 0 && s.trusting && len(s.held) == 0 {
		s.next = seq // the first sighting is the baseline
	}
	if s.floating {
		s.floating = false
		s.next = min(s.next, seq) // it came live: it is the node's to deliver
	}
	switch {
	case s.next != 0 && seq < s.next:
		return step{} // delivered already
	case s.next != 0 && seq == s.next && !s.repairing:
		s.next++
		return s.drain(step{deliver: []pubsub.Entry{{Seq: seq, Frame: frame}}})
	}
	s.hold(seq, frame)
	var st step
	if len(s.held) > maxHeld {
		st = s.giveUp()
	} else if s.next != 0 && !s.repairing {
		s.repairing, st.repair = true, true
	}
	return st
}

// inOrder reports whether the stream knows where it stands and delivers
// live frames as they come: no gap held, no repair under way.
func (s *stream) inOrder() bool {
	return s.next != 0 && !s.repairing && len(s.held) == 0
}

// baseline tells the stream that last was the last seq given at some
// moment after the node subscribed: it delivers from last+1 on, or from
// the first live frame if that is older (it came live, so it was
// published after the subscription). A stream that knows where it is
// already ignores it.
func (s *stream) baseline(last uint64) step {
	if s.next != 0 {
		return step{}
	}
	s.next = last + 1
	if len(s.held) == 0 {
		s.floating = true
		return step{}
	}
	s.next = min(s.next, s.held[0].Seq)
	st := s.drain(step{})
	if len(s.held) > 0 && !s.repairing {
		s.repairing, st.repair = true, true
	}
	return st
}

// lost tells the stream that live frames may have been lost (the node's
// pub/sub path was cut): it reads history from where it is.
func (s *stream) lost() step {
	if s.next == 0 || s.repairing {
		return step{}
	}
	s.floating = false
	s.repairing = true
	return step{repair: true}
}

// fill takes a repair's page: the messages after next-1 that history had
// (page.First is the oldest it still has), more if there are more after
// them. It returns the frames now due and whether to read on.
func (s *stream) fill(page pubsub.Page) step {
	var st step
	if s.next == 0 || !s.repairing {
		return st // reset meanwhile
	}
	if page.First > s.next {
		st.skipped += page.First - s.next
		s.next = page.First
	}
	for _, e := range page.Messages {
		if e.Seq < s.next {
			continue
		}
		if e.Seq > s.next { // history has a hole: it is gone
			st.skipped += e.Seq - s.next
			s.next = e.Seq
		}
		st.deliver = append(st.deliver, e)
		s.next++
	}
	s.repairing = false
	st = s.drain(st)
	switch {
	case page.More:
		s.repairing, st.repair = true, true
	case len(s.held) > 0 && s.rereads < maxRereads:
		// History had nothing more, yet a held frame is ahead: it came
		// while the page was being read, with what lies between stored
		// after the read (a seq is stored before any copy of it is
		// published, so a read that starts after the frame came has it,
		// unless it was trimmed, which page.First tells). Read again.
		s.rereads++
		s.repairing, st.repair = true, true
	case len(s.held) > 0:
		// Read again and still missing: trimmed meanwhile.
		st.skipped += s.held[0].Seq - s.next
		s.next = s.held[0].Seq
		st = s.drain(st)
	}
	if !s.repairing {
		s.rereads = 0
	}
	return st
}

// maxRereads bounds the reads of one repair that find nothing more while
// a held frame is still ahead (stream.fill).
const maxRereads = 3

// giveUp delivers the held frames in order, skipping the gaps between
// them: history could not be read for too long.
func (s *stream) giveUp() step {
	var st step
	s.repairing = false
	if len(s.held) == 0 {
		return st
	}
	if s.next == 0 || s.held[0].Seq > s.next {
		if s.next != 0 {
			st.skipped += s.held[0].Seq - s.next
		}
		s.next = s.held[0].Seq
	}
	for _, e := range s.held {
		if e.Seq < s.next {
			continue
		}
		st.skipped += e.Seq - s.next
		st.deliver = append(st.deliver, e)
		s.next = e.Seq + 1
	}
	s.held = s.held[:0]
	return st
}

// hold keeps a live frame that came early, in seq order, once.
func (s *stream) hold(seq uint64, frame []byte) {
	i, found := slices.BinarySearchFunc(s.held, seq, func(e pubsub.Entry, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	if !found {
		s.held = slices.Insert(s.held, i, pubsub.Entry{Seq: seq, Frame: frame})
	}
}

// drain appends to st the held frames now due (unless repairing), and
// drops those delivered already.
func (s *stream) drain(st step) step {
	n := 0
	for n < len(s.held) && s.held[n].Seq < s.next {
		n++
	}
	for !s.repairing && n < len(s.held) && s.held[n].Seq == s.next {
		st.deliver = append(st.deliver, s.held[n])
		s.next++
		n++
	}
	if n > 0 {
		clear(s.held[:n])
		s.held = s.held[n:]
	}
	return st
}
