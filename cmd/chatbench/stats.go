package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// stream counts what one receiver got of one stream: the messages that one
// source (a publisher in one phase) sent to one target. Sequence numbers of a
// stream start at 1 and have no gaps on the sending side, so the highest
// number seen and the set of numbers skipped below it are enough to tell a
// new message from a duplicate or a late (out-of-order) one. Memory is
// bounded by the number of gaps, not by the number of messages.
//
// A stream is owned by its receiver's read loop; callers serialise access.
type stream struct {
	max     uint64              // highest sequence number seen
	unique  uint64              // distinct sequence numbers seen
	dup     uint64              // deliveries of a number already seen
	ooo     uint64              // deliveries of a number below max, seen for the first time
	missing map[uint64]struct{} // numbers below max not seen yet; nil while there is none
}

// delivery is what add found a delivered sequence number to be.
type delivery int

const (
	inOrder delivery = iota
	outOfOrder
	duplicate
)

// add records a delivery of seq (>= 1) and says what it was.
func (s *stream) add(seq uint64) delivery {
	switch {
	case seq > s.max:
		if seq > s.max+1 {
			if s.missing == nil {
				s.missing = make(map[uint64]struct{})
			}
			for n := s.max + 1; n < seq; n++ {
				s.missing[n] = struct{}{}
			}
		}
		s.max = seq
		s.unique++
		return inOrder
	case s.missing != nil:
		if _, ok := s.missing[seq]; ok {
			delete(s.missing, seq)
			s.unique++
			s.ooo++
			return outOfOrder
		}
	}
	s.dup++
	return duplicate
}

// Counts is the tally of a measured phase over all receivers. Every
// delivery a receiver must get by the protocol's rules is Expected; each is
// either Delivered or Lost. Duplicates and deliveries of streams a receiver
// must not get (Unexpected) come on top.
type Counts struct {
	Sent       uint64 `json:"sent"`         // messages the publishers wrote
	Refused    uint64 `json:"refused"`      // of those, answered with an error (no effect by the spec)
	Acked      uint64 `json:"acked"`        // of those, acknowledged
	Expected   uint64 `json:"expected"`     // deliveries the rules require
	Delivered  uint64 `json:"delivered"`    // distinct expected deliveries that arrived
	Lost       uint64 `json:"lost"`         // Expected - Delivered
	Duplicated uint64 `json:"duplicated"`   // deliveries of a message the receiver already had
	OutOfOrder uint64 `json:"out_of_order"` // deliveries that came after a later message of their stream
	Unexpected uint64 `json:"unexpected"`   // deliveries of a stream the receiver is not owed
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Sent += o.Sent
	c.Refused += o.Refused
	c.Acked += o.Acked
	c.Expected += o.Expected
	c.Delivered += o.Delivered
	c.Lost += o.Lost
	c.Duplicated += o.Duplicated
	c.OutOfOrder += o.OutOfOrder
	c.Unexpected += o.Unexpected
}

// tally counts one receiver's streams against what it is owed: owed maps each
// stream the receiver must get to the number of messages that stream
// carried (sent minus refused).
func tally[K comparable](got map[K]*stream, owed map[K]uint64) Counts {
	var c Counts
	for k, n := range owed {
		c.Expected += n
		s := got[k]
		if s == nil {
			c.Lost += n
			continue
		}
		d := min(s.unique, n)
		c.Delivered += d
		c.Lost += n - d
		c.Unexpected += s.unique - d // more distinct messages than were sent
		c.Duplicated += s.dup
		c.OutOfOrder += s.ooo
	}
	for k, s := range got {
		if _, ok := owed[k]; !ok {
			c.Unexpected += s.unique + s.dup
		}
	}
	return c
}

// Histogram is a fixed-size log-linear histogram of durations, safe for
// concurrent use, in the manner of HDR histograms: values below 128 ns are
// kept exactly, larger ones are grouped by their power of two and each power
// of two is split into 64 linear buckets, so every recorded value is known to
// within 1/64 (1.6%) of itself. It covers up to 2^40 ns (about 18 minutes;
// larger values land in the last bucket) in 2,300 counters, whatever the
// number of values recorded.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64 // of the values, in nanoseconds
	max    atomic.Int64
}

const (
	subBits     = 6
	subBuckets  = 1 << subBits // linear buckets per power of two
	maxExp      = 40           // values up to 2^(maxExp+1)-1 ns are told apart
	histBuckets = (maxExp - subBits + 2) * subBuckets
)

// bucketOf maps a value in nanoseconds to its counter.
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 2*subBuckets {
		return int(u)
	}
	e := bits.Len64(u) - subBits - 1 // the shift that leaves subBits+1 significant bits
	b := e*subBuckets + int(u>>uint(e))
	return min(b, histBuckets-1)
}

// bucketHigh is the largest value that falls in bucket b.
func bucketHigh(b int) int64 {
	if b < 2*subBuckets {
		return int64(b)
	}
	e := b/subBuckets - 1
	m := int64(b%subBuckets + subBuckets)
	return (m+1)<<uint(e) - 1
}

// Record adds one value.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the value at quantile q (0 < q <= 1): the upper bound of
// the bucket that holds the ceil(q*n)-th smallest value, capped by the
// maximum. Zero when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			return min(time.Duration(bucketHigh(b)), h.Max())
		}
	}
	return h.Max()
}

// Mean is the mean of the values recorded; zero when there is none.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / int64(n))
}

// Latency is a histogram's summary as reported.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary reads the reported quantiles off h.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count: h.Count(),
		Mean:  ms(h.Mean()),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
