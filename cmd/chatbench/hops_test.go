package main

import (
	"math"
	"testing"
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
