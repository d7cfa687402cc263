package gateway

import "time"

// pacer decides, after each write to a socket, whether the writer should
// wait for Config.WriteDelay before its next write, so that what arrives
// meanwhile shares one system call. It is a pure function of the times and
// sizes of the writes it is told about; the writer owns it.
//
// It says wait when, recently, the connection is both
//
//   - busy: it gets more than two frames per delay on average, so a pause
//     gathers a few of them; and
//   - behind: its writes carry two and a half frames or more on average,
//     so frames already arrive faster than the node writes them one by
//     one, which is what a node short of CPU looks like from a socket.
//
// A connection that keeps up is never held back, however busy. Once
// pausing, a write carries about rate times delay frames, so the
// connection keeps pausing while that is two and a half or more, and stops
// when the stream thins out or goes quiet.
//
// Replies (acks and errors) are not counted: the client paces them with
// its own requests, and an ack comes with the copy of the client's
// message, so with them a steady publisher looked behind. A write of
// burstBatch frames or more is never followed by a pause: a burst (the
// join events of a channel filling up) batches well on its own. The
// measurements behind each rule are in docs/performance.md.
type pacer struct {
	lastWrite int64 // monotonic nanoseconds of the last write; 0: none yet
	frameGap  int64 // average time between frames, exponentially weighted
	batchAvg  int64 // average frames per write, times 256, likewise
}

const (
	// behindBatch is the average number of frames per write, times 256,
	// from which a busy connection counts as behind: two and a half.
	behindBatch = 640
	// burstBatch is the smallest write that is not followed by a pause.
	burstBatch = 32
)

// wrote records a write of n frames (replies not counted) at now, in
// monotonic nanoseconds, and reports whether the writer should wait d
// before its next write.
func (p *pacer) wrote(now int64, n int, d time.Duration) bool {
	if n == 0 {
		return false // replies only: nothing to tell
	}
	quiet := 4 * int64(d) // a first write, or one after a quiet spell, counts as this
	gap := quiet
	if p.lastWrite != 0 {
		gap = min((now-p.lastWrite)/int64(n), quiet)
	}
	p.lastWrite = now
	if p.frameGap == 0 {
		p.frameGap = gap
	} else {
		p.frameGap += (gap - p.frameGap) / 8
	}
	// Times 256, so that the integer steps stop within 7/256 of a frame of
	// a steady batch size, well clear of the threshold.
	if p.batchAvg == 0 {
		p.batchAvg = 256 * int64(n)
	} else {
		p.batchAvg += (256*int64(n) - p.batchAvg) / 8
	}
	return n < burstBatch && p.frameGap < int64(d)/2 && p.batchAvg >= behindBatch
}

// monoEpoch is the origin of the writers' monotonic clock.
var monoEpoch = time.Now()

// monoNow is the time since monoEpoch in nanoseconds: never zero in
// practice, and monotonic.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }
