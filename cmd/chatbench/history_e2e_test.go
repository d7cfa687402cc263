package main

import (
	"testing"
	"time"
)

func TestHistoryAgainstChatd(t *testing.T) {
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := testConfig(t, "history", s)
	cfg.RateLimit = 10000
	cfg.Clients, cfg.Messages, cfg.Limit, cfg.Duration = 5, 1000, 100, 2*time.Second
	res := runTest(t, cfg)
	checkNoErrors(t, res)
	h := res.History
	if h.Filled != 1000 || h.Newest != 1000 || h.First != 1 {
		t.Errorf("filled %d, newest %d, first %d; want 1000, 1000, 1", h.Filled, h.Newest, h.First)
	}
	if h.Requests == 0 || h.Latency.Count != h.Requests {
		t.Errorf("%d requests, %d latencies recorded", h.Requests, h.Latency.Count)
	}
	if h.Read < h.Requests || h.Read > h.Requests*100 {
		t.Errorf("%d messages read in %d requests of at most 100", h.Read, h.Requests)
	}
	if h.Passes == 0 {
		t.Errorf("no reader paged down to seq 1 in 2 s (10 pages)")
	}
	if h.Faults != 0 {
		t.Errorf("%d bad pages: %s", h.Faults, h.FirstFault)
	}
}

func TestHistoryUnderTheDefaultRateLimit(t *testing.T) {
	s := startChatd(t) // 20 requests/s per user
	cfg := testConfig(t, "history", s)
	cfg.Clients, cfg.Messages, cfg.Limit, cfg.Duration = 2, 300, 50, time.Second
	res := runTest(t, cfg)
	checkNoErrors(t, res)
	h := res.History
	// 300 messages at 18/s a user in about 10 s: 2 fillers.
	if h.Fillers != 2 || h.Filled != 300 {
		t.Errorf("%d fillers filled %d, want 2 and 300", h.Fillers, h.Filled)
	}
	if h.Requests == 0 || h.Requests > 2*20 {
		t.Errorf("%d requests by 2 readers in 1 s, want 1 to 40 (paced at 18/s)", h.Requests)
	}
}

func TestResumeAgainstChatd(t *testing.T) {
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := testConfig(t, "resume", s)
	cfg.RateLimit = 10000
	cfg.Clients, cfg.Channels, cfg.Rate = 10, 2, 200
	cfg.Duration, cfg.Outage, cfg.Drop = 2*time.Second, 500*time.Millisecond, 0.4
	res := runTest(t, cfg)
	checkNoErrors(t, res)
	r := res.Resume
	if r.Dropped != 4 || r.Resumed != 4 {
		t.Errorf("dropped %d, resumed %d; want 4 and 4", r.Dropped, r.Resumed)
	}
	if r.Gaps+r.Duplicates+r.Repeats+r.Conflicts+r.Unexpected != 0 {
		t.Errorf("gaps %d, duplicates %d, repeats %d, conflicts %d, unexpected %d; want 0",
			r.Gaps, r.Duplicates, r.Repeats, r.Conflicts, r.Unexpected)
	}
	// Each of the 4 was owed every message of its channel (half of them).
	if want := (res.Phase.Sent - res.Phase.Refused) / 2 * 4; r.Checked != want {
		t.Errorf("checked %d seqs, want %d", r.Checked, want)
	}
	if r.FromHistory == 0 || r.Requests == 0 {
		t.Errorf("%d messages from %d history requests: nothing was resumed", r.FromHistory, r.Requests)
	}
	if r.CatchUp.Count != 4 {
		t.Errorf("%d catch-up times", r.CatchUp.Count)
	}
	ph := res.Phase
	if ph.Lost != 0 || ph.Duplicated != 0 || ph.Unexpected != 0 || !ph.Complete {
		t.Errorf("phase: lost %d, duplicated %d, unexpected %d, complete %v", ph.Lost, ph.Duplicated, ph.Unexpected, ph.Complete)
	}
}
