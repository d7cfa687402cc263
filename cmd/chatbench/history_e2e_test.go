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
