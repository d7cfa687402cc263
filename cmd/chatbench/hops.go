package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The hop report splits a phase's delivery latency into the hops the nodes
// time themselves (chat_message_hop_seconds on each node's /metrics): the
// nodes' histograms are read before and after the phase, and their
// difference, summed over the nodes, is the phase's. What no node times
// (Redis handing a publish to the receiving node, the client's read) is the
// end-to-end mean less the hops' means on a message's way.

// hopMetric is the nodes' histogram of hop times, labelled by hop.
const hopMetric = "chat_message_hop_seconds"

// hopOrder is the order of the hops on a message's way.
var hopOrder = []string{"handle", "store", "deliver", "writer", "write"}

// HopStat is one hop's times over a phase, summed over the nodes.
type HopStat struct {
	Hop   string  `json:"hop"`
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
}

// hopHist is a hop's cumulative histogram as a node exposes it.
type hopHist struct {
	count uint64
	sum   float64
	les   []float64 // bucket upper bounds, ascending
	cum   []uint64  // cumulative counts, by bucket
}

// nodesScrape is what chatbench reads from the nodes' /metrics around a
// phase, summed over the nodes.
type nodesScrape struct {
	hops map[string]*hopHist // nil if a node has none (a build before the hops were timed)
	gc   *gcCounters         // nil if a node exposes no Go runtime metrics
}

// gcCounters are the Go runtime's own counters, as client_golang's Go
// collector exposes them.
type gcCounters struct {
	cycles uint64  // go_gc_duration_seconds count: collections
	pauses float64 // its sum: seconds of stop-the-world pauses
	alloc  float64 // go_memstats_alloc_bytes_total: bytes allocated
}

// scrapeNodes reads every node's hop histograms and runtime counters; nil
// if a node cannot be read.
func scrapeNodes(ctx context.Context, hc *http.Client, urls []string) *nodesScrape {
	total := &nodesScrape{hops: make(map[string]*hopHist), gc: new(gcCounters)}
	for _, u := range urls {
		families, err := nodeMetrics(ctx, hc, u)
		if err != nil {
			return nil
		}
		total.addHops(nodeHops(families))
		total.addGC(nodeGC(families))
	}
	return total
}

func (n *nodesScrape) addGC(g *gcCounters) {
	if g == nil || n.gc == nil {
		n.gc = nil
		return
	}
	n.gc.cycles += g.cycles
	n.gc.pauses += g.pauses
	n.gc.alloc += g.alloc
}

func (n *nodesScrape) addHops(hs map[string]*hopHist) {
	if len(hs) == 0 || n.hops == nil {
		n.hops = nil
		return
	}
	for name, h := range hs {
		t := n.hops[name]
		if t == nil {
			n.hops[name] = h
			continue
		}
		if !slices.Equal(t.les, h.les) {
			n.hops = nil
			return
		}
		t.count += h.count
		t.sum += h.sum
		for i := range t.cum {
			t.cum[i] += h.cum[i]
		}
	}
}

// nodeMetrics reads one node's /metrics.
func nodeMetrics(ctx context.Context, hc *http.Client, base string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", base, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// nodeGC reads one node's garbage collector counters; nil if it has none.
func nodeGC(families map[string]*dto.MetricFamily) *gcCounters {
	pauses, alloc := families["go_gc_duration_seconds"], families["go_memstats_alloc_bytes_total"]
	if pauses == nil || alloc == nil || len(pauses.GetMetric()) == 0 || len(alloc.GetMetric()) == 0 {
		return nil
	}
	summary := pauses.GetMetric()[0].GetSummary()
	return &gcCounters{cycles: summary.GetSampleCount(), pauses: summary.GetSampleSum(),
		alloc: alloc.GetMetric()[0].GetCounter().GetValue()}
}

// nodeHops reads one node's hop histograms.
func nodeHops(families map[string]*dto.MetricFamily) map[string]*hopHist {
	fam := families[hopMetric]
	if fam == nil {
		return nil
	}
	out := make(map[string]*hopHist)
	for _, m := range fam.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		hh := &hopHist{count: h.GetSampleCount(), sum: h.GetSampleSum()}
		for _, b := range h.GetBucket() {
			hh.les = append(hh.les, b.GetUpperBound())
			hh.cum = append(hh.cum, b.GetCumulativeCount())
		}
		out[hopLabel(m)] = hh
	}
	return out
}

func hopLabel(m *dto.Metric) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == "hop" {
			return l.GetValue()
		}
	}
	return ""
}

// hopStats returns what happened between two scrapes, in hopOrder; nil if
// either is missing.
func hopStats(before, after map[string]*hopHist) []HopStat {
	if before == nil || after == nil {
		return nil
	}
	var out []HopStat
	for _, name := range hopOrder {
		a, b := after[name], before[name]
		if a == nil || b == nil || !slices.Equal(a.les, b.les) || a.count < b.count {
			continue
		}
		d := &hopHist{count: a.count - b.count, sum: a.sum - b.sum, les: a.les, cum: make([]uint64, len(a.cum))}
		for i := range a.cum {
			d.cum[i] = a.cum[i] - b.cum[i]
		}
		st := HopStat{Hop: name, Count: d.count}
		if d.count > 0 {
			st.Mean = roundMS(d.sum / float64(d.count))
			st.P50 = roundMS(d.quantile(0.5))
			st.P99 = roundMS(d.quantile(0.99))
		}
		out = append(out, st)
	}
	return out
}

// GCStat is what the nodes' garbage collectors did over a phase, summed
// over the nodes.
type GCStat struct {
	Cycles uint64  `json:"cycles"`   // collections
	Pauses float64 `json:"pause_ms"` // stop-the-world pauses, in total
	// AllocPerMessage is the bytes the nodes allocated per message sent:
	// what sets how often they collect.
	AllocPerMessage float64 `json:"alloc_bytes_per_message"`
}

// gcStat returns what the collectors did between two scrapes for sent
// messages; nil if either scrape has no counters.
func gcStat(before, after *nodesScrape, sent uint64) *GCStat {
	if before == nil || after == nil || before.gc == nil || after.gc == nil || after.gc.cycles < before.gc.cycles {
		return nil
	}
	st := &GCStat{Cycles: after.gc.cycles - before.gc.cycles, Pauses: roundMS(after.gc.pauses - before.gc.pauses)}
	if sent > 0 {
		st.AllocPerMessage = math.Round((after.gc.alloc - before.gc.alloc) / float64(sent))
	}
	return st
}

// quantile estimates the q-quantile in seconds, interpolating linearly in
// the bucket that holds it (as Prometheus's histogram_quantile does); a
// value past the last bound reads as that bound.
func (h *hopHist) quantile(q float64) float64 {
	rank := q * float64(h.count)
	var prevLE float64
	var prevCum uint64
	for i, le := range h.les {
		if float64(h.cum[i]) >= rank {
			n := h.cum[i] - prevCum
			if n == 0 || math.IsInf(le, 1) {
				return prevLE
			}
			return prevLE + (le-prevLE)*(rank-float64(prevCum))/float64(n)
		}
		prevLE, prevCum = le, h.cum[i]
	}
	return prevLE
}

// roundMS turns seconds into milliseconds to the microsecond.
func roundMS(s float64) float64 { return math.Round(s*1e6) / 1e3 }
