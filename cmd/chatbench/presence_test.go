package main

import (
	"testing"
	"time"
)

// presenceTestConfig is testConfig with the defaults of the presence and
// members flags (testConfig's check refuses their zero values).
func presenceTestConfig(t *testing.T, scenario string, s *server) Config {
	cfg := Config{
		Scenario:    scenario,
		URLs:        []string{s.url},
		Clients:     20,
		Channels:    1,
		Rate:        1,
		Duration:    time.Second,
		Grace:       10 * time.Second,
		RateLimit:   10000,
		Concurrency: 8,
		Progress:    testWriter{t},
		PresenceConfig: PresenceConfig{Waves: 1, Wave: 0.2, OfflineAfter: 15 * time.Second, PresenceMax: 1000,
			Requesters: 2, Limit: 1000},
	}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The presence test waits out the server's offline grace (15 s, not a
// setting), once: one wave.
func TestPresenceAgainstChatd(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the server's 15 s presence grace")
	}
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := presenceTestConfig(t, "presence", s)
	cfg.Clients, cfg.Channels = 50, 5
	res := runTest(t, cfg)
	checkNoErrors(t, res)
	p := res.Presence
	if p == nil {
		t.Fatal("no presence result")
	}
	// Users 0..49 are in 1, 2, 3, 1, ... channels: 17+17+16 x 1, 2, 3.
	if p.Memberships != 17*1+17*2+16*3 {
		t.Errorf("memberships %d", p.Memberships)
	}
	if p.PerWave != 10 || p.Observers != 40 {
		t.Errorf("%d users per wave, %d observers; want 10, 40", p.PerWave, p.Observers)
	}
	if p.ExpectedOffline == 0 || p.ExpectedOnline != p.ExpectedOffline {
		t.Errorf("owed %d offline and %d online events; want the same, not 0", p.ExpectedOffline, p.ExpectedOnline)
	}
	if p.MissingOffline != 0 || p.MissingOnline != 0 || p.Unexpected != 0 {
		t.Errorf("missing %d offline, %d online; %d unexpected", p.MissingOffline, p.MissingOnline, p.Unexpected)
	}
	if p.Offline.Count != p.ExpectedOffline || p.OfflineBeyond.Count != p.ExpectedOffline || p.Online.Count != p.ExpectedOnline {
		t.Errorf("latencies of %d offline, %d online events recorded", p.Offline.Count, p.Online.Count)
	}
	// Offline comes after the grace; online without one.
	if p.Offline.P50 < 15000 || p.Online.Max >= 15000 {
		t.Errorf("offline p50 %.0f ms (want >= 15 s), online max %.0f ms", p.Offline.P50, p.Online.Max)
	}
	// Wave users that came back early also see the others come online.
	if p.Frames < p.ExpectedOffline+p.ExpectedOnline {
		t.Errorf("%d presence frames, fewer than the %d owed", p.Frames, p.ExpectedOffline+p.ExpectedOnline)
	}
}

func TestMembersAgainstChatd(t *testing.T) {
	s := startChatd(t, "CHAT_RATE_LIMIT=10000")
	cfg := presenceTestConfig(t, "members", s)
	cfg.Clients, cfg.Requesters, cfg.Limit = 200, 2, 30 // 7 pages, the last one short
	res := runTest(t, cfg)
	checkNoErrors(t, res)
	m := res.Members
	if m == nil {
		t.Fatal("no members result")
	}
	if m.Listings == 0 || m.Bad != 0 {
		t.Fatalf("%d right and %d wrong listings (%s)", m.Listings, m.Bad, m.BadReason)
	}
	if m.Listing.Count != m.Listings || m.Pages != 7*m.Listings {
		t.Errorf("%d latencies and %d pages for %d listings; want 7 pages each", m.Listing.Count, m.Pages, m.Listings)
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=3,usec=1\r\ncmdstat_client|setname:calls=2,usec=1\r\n"
	got := parseCommandStats(info)
	if len(got) != 2 || got["get"] != 12 || got["client|setname"] != 2 {
		t.Errorf("parsed %v", got)
	}
	d := commandDelta(map[string]uint64{"get": 10}, got)
	if len(d) != 2 || d["get"] != 2 || d["client|setname"] != 2 {
		t.Errorf("delta %v", d)
	}
}

func TestPresenceAndMembersFlagsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		edit     func(*Config)
	}{
		{"presence", func(c *Config) { c.Wave = 1 }},
		{"presence", func(c *Config) { c.Waves = 0 }},
		{"presence", func(c *Config) { c.Clients, c.Wave = 3, 0.2 }},
		{"members", func(c *Config) { c.Limit = 1001 }},
		{"members", func(c *Config) { c.Requesters = 0 }},
	} {
		cfg := Config{Scenario: tc.scenario, URLs: []string{"http://x"}, Clients: 100, Channels: 1, Rate: 1, RateLimit: 1,
			Duration: time.Second, Concurrency: 1,
			PresenceConfig: PresenceConfig{Waves: 1, Wave: 0.2, OfflineAfter: time.Second, PresenceMax: 1, Requesters: 1, Limit: 10}}
		if err := cfg.check(); err != nil {
			t.Fatalf("%s: the base config is refused: %v", tc.scenario, err)
		}
		tc.edit(&cfg)
		if err := cfg.check(); err == nil {
			t.Errorf("%s %+v accepted", tc.scenario, cfg.PresenceConfig)
		}
	}
}
