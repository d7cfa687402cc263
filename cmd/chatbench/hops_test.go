package main

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestHopStats: the report is the difference of two scrapes, with the
// quantiles interpolated inside their bucket.
func TestHopStats(t *testing.T) {
	les := []float64{0.001, 0.002, 0.004, math.Inf(1)}
	before := map[string]*hopHist{"store": {count: 10, sum: 0.01, les: les, cum: []uint64{10, 10, 10, 10}}}
	// 100 more: 50 under 1 ms, 48 in (1, 2] ms, 2 in (2, 4] ms.
	after := map[string]*hopHist{"store": {count: 110, sum: 0.01 + 0.15, les: les, cum: []uint64{60, 108, 110, 110}}}
	got := hopStats(before, after)
	if len(got) != 1 || got[0].Hop != "store" || got[0].Count != 100 {
		t.Fatalf("hopStats = %+v", got)
	}
	if got[0].Mean != 1.5 {
		t.Errorf("mean = %v ms, want 1.5", got[0].Mean)
	}
	if got[0].P50 != 1 { // the 50th of 100 is the last under 1 ms
		t.Errorf("p50 = %v ms, want 1", got[0].P50)
	}
	if got[0].P99 != 3 { // the 99th: half-way into (2, 4]
		t.Errorf("p99 = %v ms, want 3", got[0].P99)
	}
	if hopStats(nil, after) != nil {
		t.Error("a missing scrape gave a report")
	}
}

// TestGCStat: the collectors' counters are read from the Go runtime's
// metrics as a node exposes them, and the report is their difference.
func TestGCStat(t *testing.T) {
	scrape := func(cycles int, pauses, alloc string) *nodesScrape {
		text := "# TYPE go_gc_duration_seconds summary\n" +
			"go_gc_duration_seconds{quantile=\"0.5\"} 0.0001\n" +
			"go_gc_duration_seconds_sum " + pauses + "\n" +
			"go_gc_duration_seconds_count " + strconv.Itoa(cycles) + "\n" +
			"# TYPE go_memstats_alloc_bytes_total counter\n" +
			"go_memstats_alloc_bytes_total " + alloc + "\n"
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		n := &nodesScrape{gc: new(gcCounters)}
		n.addGC(nodeGC(families))
		return n
	}
	got := gcStat(scrape(10, "0.002", "1e6"), scrape(13, "0.0035", "3e6"), 1000)
	if got == nil || got.Cycles != 3 || got.Pauses != 1.5 || got.AllocPerMessage != 2000 {
		t.Fatalf("gcStat = %+v, want 3 collections, 1.5 ms, 2000 bytes a message", got)
	}
	n := &nodesScrape{gc: new(gcCounters)}
	n.addGC(nodeGC(nil))
	if n.gc != nil {
		t.Error("a node without runtime metrics left counters")
	}
}
