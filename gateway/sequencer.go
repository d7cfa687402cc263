package gateway

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wirechat/chat/pubsub"
)

// Gap repair (spec section 5: no gap while connected). Every stored
// message reaches a node as an !msg notice with its log and seq. The
// sequencer keeps, per topic and log, a stream (gap.go) of what the node
// has delivered to the topic's sessions, and repairs from history what
// the live path skipped or lost: a seq that came early, or anything after
// an outage of the pub/sub path. Pub/sub stays the fast path; history is
// read only on a gap.
//
// Where a stream starts: a channel's stream waits for its baseline, the
// newest seq stored when the node subscribed to the channel (read right
// after the subscription is confirmed, or given by a welcome or a join
// that read it after subscribing), so that everything after it arrives
// live or is repaired. A conversation's stream on a user topic starts at
// the newest seq the welcome read for it (the user's recent
// conversations). A conversation the welcome did not list is new if the
// list was whole (the user has fewer than pubsub.RecentConversations): it
// starts at seq 1, so that its first messages are delivered in order even
// if they come out of order (on Redis Cluster the two copies of a private
// message are published by two scripts, in two slots, so a user topic can
// carry seq 2 before seq 1). If the list was cut short, such a
// conversation may be an old one: its stream starts at the first message
// that arrives. Until the first welcome of the user on the node has given
// its list, a conversation's frames are held.
//
// A leave takes effect in its channel's stream, after the messages stored
// before it (departure.go).

// historyReader is what the sequencer reads of the backend.
type historyReader interface {
	Range(ctx context.Context, log string, q pubsub.Query) (pubsub.Page, error)
	Last(ctx context.Context, logs ...string) ([]uint64, error)
}

// Repair timing: how many messages a repair reads at a time, how many
// repairs read at once, and how long a repair tries before it gives up on
// a gap (delivering what it holds).
const (
	repairPage    = 200
	repairReaders = 16
	repairGiveUp  = 10 * time.Second
)

// sequencer owns the streams of every topic of the node.
type sequencer struct {
	router  *router
	history historyReader
	// outages is the broker's count of outages; verified is the count the
	// last check of the history's epoch saw (outage). Between the two, a
	// seq below where a stream stands may be a new epoch's, not a repeat:
	// it is kept, not dropped, until the check says which.
	outages  func() uint64
	verified atomic.Uint64
	log      *slog.Logger
	metrics  *metrics
	ctx      context.Context // immutable: ends the repairs
	wg       *sync.WaitGroup // counts the repairs
	readers  chan struct{}   // bounds the history reads under way

	mu    sync.Mutex
	feeds map[string]*feed // guarded by mu: by topic
}

// feed is the streams of one topic.
type feed struct {
	mu      sync.Mutex
	streams map[string]*stream        // guarded by mu: by log
	active  map[string]bool           // guarded by mu: logs with a repair goroutine
	doubt   map[string][]pubsub.Entry // guarded by mu: frames kept until the epoch is checked
	leaving map[string]*departure     // guarded by mu: a channel's leaves not yet in effect, by user (departure.go)
	gone    bool                      // guarded by mu: the topic was forgotten
	// listed says, for a user topic, what a welcome has told of the
	// user's conversations: nothing yet, all of them, or the most recent.
	listed listing // guarded by mu
}

// listing is what a user topic's feed knows of the user's conversations,
// and so where a conversation it has no stream for starts.
type listing int

const (
	listedNone listing = iota // no welcome yet: its frames are held
	listedAll                 // every conversation was listed: an unlisted one is new, from seq 1
	listedSome                // the most recent only: an unlisted one starts at its first frame
)

func newSequencer(ctx context.Context, wg *sync.WaitGroup, r *router, h historyReader, outages func() uint64, log *slog.Logger, m *metrics) *sequencer {
	s := &sequencer{
		router: r, history: h, outages: outages, log: log, metrics: m, ctx: ctx, wg: wg,
		readers: make(chan struct{}, repairReaders),
		feeds:   make(map[string]*feed),
	}
	s.verified.Store(outages())
	return s
}

// feedOf returns topic's feed, making one if the topic has local
// sessions; nil if it has none (nothing to deliver to, nothing to keep).
func (s *sequencer) feedOf(topic string) *feed {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.feeds[topic]
	if f == nil && s.router.has(topic) {
		f = &feed{streams: make(map[string]*stream), active: make(map[string]bool), doubt: make(map[string][]pubsub.Entry),
			leaving: make(map[string]*departure)}
		s.feeds[topic] = f
	}
	return f
}

// streamLocked returns log's stream in f, a new one if need be.
func streamLocked(f *feed, topic, log string) *stream {
	st := f.streams[log]
	if st == nil {
		st = newStreamLocked(f, topic)
		f.streams[log] = st
	}
	return st
}

// newStreamLocked returns a stream for a log that f has none for: a
// channel's awaits its baseline; a conversation's starts where f's
// listing says.
func newStreamLocked(f *feed, topic string) *stream {
	if !strings.HasPrefix(topic, userPrefix) {
		return &stream{}
	}
	switch f.listed {
	case listedAll:
		return &stream{next: 1}
	case listedSome:
		return &stream{trusting: true}
	}
	return &stream{}
}

// deliver takes the live message seq of log on topic.
func (s *sequencer) deliver(topic, log string, seq uint64, frame []byte) {
	f := s.feedOf(topic)
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := streamLocked(f, topic, log)
	if len(f.leaving) > 0 {
		liveAfterLocked(f, seq)
	}
	if st.next != 0 && seq < st.next && s.outages() != s.verified.Load() && len(f.doubt[log]) < maxHeld {
		f.doubt[log] = append(f.doubt[log], pubsub.Entry{Seq: seq, Frame: frame})
		s.reachedLocked(topic, log, f)
		return
	}
	s.carryLocked(topic, log, f, st.offer(seq, frame))
}

// baseline tells log's stream on topic that last was the last seq given
// at some moment after the node subscribed (stream.baseline).
func (s *sequencer) baseline(topic, log string, last uint64) {
	if f := s.feedOf(topic); f != nil {
		s.baselineOf(f, topic, log, last)
	}
}

// baselineOf is baseline for feed f, which must be the topic's feed of
// the subscription the baseline was read in: one forgotten meanwhile
// takes no baseline.
func (s *sequencer) baselineOf(f *feed, topic, log string, last uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.gone {
		s.carryLocked(topic, log, f, streamLocked(f, topic, log).baseline(last))
	}
}

// conversations tells the feed of a user's topic what a welcome read of
// the user's conversations: the newest seq of each it listed (by log),
// read after the node subscribed, and whether the list is whole. Each
// listed conversation gets its baseline; one that awaits its start and is
// not listed starts at seq 1 if the list is whole, else at its first
// frame.
func (s *sequencer) conversations(topic string, last map[string]uint64, whole bool) {
	f := s.feedOf(topic)
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return
	}
	for log, seq := range last {
		st := f.streams[log]
		if st == nil {
			st = &stream{}
			f.streams[log] = st
		}
		s.carryLocked(topic, log, f, st.baseline(seq))
	}
	switch {
	case whole:
		f.listed = listedAll
	case f.listed == listedNone:
		f.listed = listedSome
	}
	for log, st := range f.streams {
		if st.next != 0 || st.trusting {
			continue
		}
		if f.listed == listedAll {
			s.carryLocked(topic, log, f, st.baseline(0))
			continue
		}
		st.trusting = true
		if len(st.held) > 0 {
			s.carryLocked(topic, log, f, st.baseline(st.held[0].Seq-1))
		}
	}
}

// carryLocked does what a stream's step says: delivers its frames, in
// order, to the topic's sessions (under f.mu, so that no other step of
// the topic comes between), and starts a repair. A leave waiting for the
// stream takes effect between the last message stored before it and the
// next.
func (s *sequencer) carryLocked(topic, log string, f *feed, st step) {
	for _, e := range st.deliver {
		if len(f.leaving) > 0 {
			s.throughLocked(topic, f, e.Seq-1)
		}
		s.router.forward(topic, e.Frame, nil)
	}
	s.reachedLocked(topic, log, f)
	if st.skipped > 0 {
		s.metrics.gapSkipped.Add(float64(st.skipped))
		s.log.Warn("messages gone from history skipped", "topic", topic, "log", log, "count", st.skipped)
	}
	if st.repair && !f.active[log] {
		f.active[log] = true
		s.metrics.gapRepairs.Inc()
		s.wg.Add(1)
		go s.repair(topic, log, f)
	}
}

// repair reads history for log's stream on topic until the stream has
// nothing more to read, or gives up after repairGiveUp.
func (s *sequencer) repair(topic, log string, f *feed) {
	defer s.wg.Done()
	start := time.Now()
	backoff := 100 * time.Millisecond
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		st := f.streams[log]
		if f.gone || st == nil || !st.repairing {
			delete(f.active, log)
			return
		}
		after := st.next - 1
		f.mu.Unlock()
		page, err := s.read(log, after)
		f.mu.Lock()
		if f.gone || f.streams[log] != st {
			continue // forgotten meanwhile: the loop's check ends it
		}
		if err != nil {
			if s.ctx.Err() != nil || time.Since(start) > repairGiveUp {
				s.log.Warn("gap repair gave up", "topic", topic, "log", log, "err", err)
				s.carryLocked(topic, log, f, st.giveUp())
				continue
			}
			f.mu.Unlock()
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
			}
			backoff = min(2*backoff, time.Second)
			f.mu.Lock()
			continue
		}
		step := st.fill(page)
		s.metrics.gapRepaired.Add(float64(repaired(page, after)))
		step.repair = false // this goroutine reads on while the stream is repairing
		s.carryLocked(topic, log, f, step)
	}
}

// repaired counts the messages of a repair's page that the live path had
// not delivered: those after the stream's position when it was read.
func repaired(page pubsub.Page, after uint64) int {
	n := 0
	for _, e := range page.Messages {
		if e.Seq > after {
			n++
		}
	}
	return n
}

// read reads the messages of log after seq after, waiting for a reader's
// slot.
func (s *sequencer) read(log string, after uint64) (pubsub.Page, error) {
	select {
	case s.readers <- struct{}{}:
	case <-s.ctx.Done():
		return pubsub.Page{}, s.ctx.Err()
	}
	defer func() { <-s.readers }()
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	return s.history.Range(ctx, log, pubsub.Query{After: after, FromAfter: true, Limit: repairPage})
}

// subscribed is told that the node subscribed to topic: a channel's
// stream gets its baseline, read now.
func (s *sequencer) subscribed(topic string) {
	channel, ok := strings.CutPrefix(topic, channelPrefix)
	if !ok {
		return
	}
	f := s.feedOf(topic)
	if f == nil {
		return // no session left: nothing to deliver
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.readBaselines([]awaiting{{f, topic, channel}})
	}()
}

// settle gives a channel's stream on topic its baseline now, unless it has
// one: a join calls it once subscribed, so that what is published after
// its ack is not held while the baseline is read in the background.
func (s *sequencer) settle(ctx context.Context, topic, channel string) {
	f := s.feedOf(topic)
	if f == nil {
		return
	}
	f.mu.Lock()
	st := f.streams[channel]
	known := st != nil && (st.next != 0 || st.trusting)
	f.mu.Unlock()
	if known {
		return
	}
	last, err := s.history.Last(ctx, channel)
	if err != nil {
		s.log.Debug("read a channel's baseline; left to the background", "channel", channel, "err", err)
		return
	}
	s.baselineOf(f, topic, channel, last[0])
}

// awaiting is a channel's stream that waits for its baseline.
type awaiting struct {
	f          *feed
	topic, log string
}

// readBaselines reads the last seq given in each channel and gives each
// stream its baseline.
func (s *sequencer) readBaselines(streams []awaiting) {
	logs := make([]string, len(streams))
	for i, a := range streams {
		logs[i] = a.log
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
		last, err := s.history.Last(ctx, logs...)
		cancel()
		if err == nil {
			for i, a := range streams {
				s.baselineOf(a.f, a.topic, a.log, last[i])
			}
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("read the baselines of channels", "channels", len(logs), "err", err)
		select {
		case <-time.After(time.Second):
		case <-s.ctx.Done():
			return
		}
	}
}

// forget drops topic's streams once the node has unsubscribed from it:
// if it subscribes again, they start anew. (While it stays subscribed,
// even with no local session, its streams go on.)
func (s *sequencer) forget(topic string) {
	s.mu.Lock()
	f := s.feeds[topic]
	delete(s.feeds, topic)
	s.mu.Unlock()
	if f != nil {
		f.mu.Lock()
		f.gone = true
		s.leaveNowLocked(topic, f) // its sessions are gone
		f.mu.Unlock()
	}
}

// outage tells every stream that live frames may have been lost: each
// reads history from where it is, and channels still awaiting their
// baseline read it again. If fresh is set (the history store lost its
// data: its epoch changed), every stream starts anew instead, and the
// frames kept in doubt meanwhile are its first. seen is the count of
// outages the epoch was checked after.
func (s *sequencer) outage(fresh bool, seen uint64) {
	s.mu.Lock()
	feeds := make(map[string]*feed, len(s.feeds))
	for t, f := range s.feeds {
		feeds[t] = f
	}
	s.mu.Unlock()
	var waiting []awaiting
	for topic, f := range feeds {
		f.mu.Lock()
		if fresh { // the seqs the leaves wait for mean nothing now
			s.leaveNowLocked(topic, f)
		}
		for log, st := range f.streams {
			if fresh {
				*st = *newStreamLocked(f, topic)
			}
			for _, e := range f.doubt[log] { // repeats, or a new epoch's first
				s.carryLocked(topic, log, f, st.offer(e.Seq, e.Frame))
			}
			delete(f.doubt, log)
			if st.next == 0 && !st.trusting {
				waiting = append(waiting, awaiting{f, topic, log})
				continue
			}
			s.carryLocked(topic, log, f, st.lost())
		}
		f.mu.Unlock()
	}
	s.verified.Store(seen)
	if len(waiting) > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.readBaselines(waiting)
		}()
	}
}
