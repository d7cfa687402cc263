package main

import (
	"testing"
	"time"
)

// TestResumeAcrossTwoNodes: the dropped subscribers come back on the other
// node, which must serve their catch-up from the shared history.
func TestResumeAcrossTwoNodes(t *testing.T) {
	a, b := startPair(t)

	cfg := testConfig(t, "resume", a, b)
	cfg.RateLimit = 10000
	cfg.Clients, cfg.Channels, cfg.Rate = 10, 2, 200
	cfg.Duration, cfg.Outage, cfg.Drop = 2*time.Second, 500*time.Millisecond, 0.4
	res := runTest(t, cfg)
	checkNoErrors(t, res)
	r := res.Resume
	if r.Dropped != 4 || r.Resumed != 4 || r.FromHistory == 0 {
		t.Errorf("dropped %d, resumed %d, %d from history", r.Dropped, r.Resumed, r.FromHistory)
	}
	if r.Gaps+r.Duplicates+r.Repeats+r.Conflicts+r.Unexpected != 0 {
		t.Errorf("gaps %d, duplicates %d, repeats %d, conflicts %d, unexpected %d; want 0",
			r.Gaps, r.Duplicates, r.Repeats, r.Conflicts, r.Unexpected)
	}
}
