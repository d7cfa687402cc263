package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wirechat/chat/protocol"
)

// MembersResult is the members scenario's outcome.
type MembersResult struct {
	Members    int           `json:"members"` // users that joined the channel
	Requesters int           `json:"requesters"`
	Limit      int           `json:"limit"`
	Setup      time.Duration `json:"setup_ns"` // logging in, joining and closing the members
	Duration   time.Duration `json:"duration_ns"`
	Listings   uint64        `json:"listings"`       // full listings that were right
	Bad        uint64        `json:"bad_listings"`   // listings incomplete, out of order, with duplicates or strangers
	BadReason  string        `json:"bad_reason"`     // the first bad listing's fault
	PerSec     float64       `json:"listings_per_s"` // right listings per second of Duration
	Pages      uint64        `json:"pages"`
	Online     uint64        `json:"online_in_last"` // members flagged online in the last listing
	Listing    Latency       `json:"listing"`        // first request to last page of a listing
	Page       Latency       `json:"page"`           // one request to its answer
}

// pageSlot hands a members frame from a requester's read loop to the
// request waiting for it.
type pageSlot struct {
	page atomic.Pointer[protocol.Members]
}

var (
	prefixMembers  = []byte(`{"type":"members",`)
	keyTypeMembers = []byte(`"type":"members"`)
)

// members: Clients users join one channel (each connects, joins and
// closes again: membership outlives the connection, spec 3.3), then
// Requesters other users, not members, list the channel from the first
// member to the last, page by page of Limit, over and over for Duration.
// Each listing must be the whole membership: Clients usernames, strictly
// ascending (so without duplicates), all of them the run's. A requester
// sends at most 90% of -rate-limit requests per second.
func (b *bench) members(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	res := &MembersResult{Members: cfg.Clients, Requesters: cfg.Requesters, Limit: cfg.Limit}
	out := &Result{Members: res}
	reqs := b.newClients("r", cfg.Requesters)
	mems := b.newClients("m", cfg.Clients)
	channel := "#" + cfg.Prefix + "-m"
	memberPrefix := strings.ToLower(cfg.Prefix + "-m")

	slots := make(map[*client]*pageSlot, len(reqs))
	for _, r := range reqs {
		slots[r] = new(pageSlot)
	}
	b.onFrame = func(c *client, frame []byte) bool {
		if !bytes.HasPrefix(frame, prefixMembers) && !bytes.Contains(frame, keyTypeMembers) {
			return false
		}
		var m protocol.Members
		if err := json.Unmarshal(frame, &m); err != nil || slots[c] == nil {
			c.b.noteError("bad_members_frame")
			return true
		}
		slots[c].page.Store(&m)
		if !c.answer(m.ID, nil) {
			c.b.noteError("unasked_members_frame")
		}
		return true
	}

	setupStart := time.Now()
	if err := b.loginAll(ctx, reqs); err != nil {
		return out, err
	}
	if err := b.connectAll(ctx, reqs, nil); err != nil {
		return out, err
	}
	if err := b.createChannels(ctx, []string{channel}, reqs); err != nil {
		return out, err
	}
	if err := b.loginAll(ctx, mems); err != nil {
		return out, err
	}
	b.setStage("join")
	err := parallel(ctx, len(mems), cfg.Concurrency, func(ctx context.Context, i int) error {
		c := mems[i]
		if _, err := c.dial(ctx); err != nil {
			return err
		}
		e, err := c.do(ctx, protocol.ActionJoin, channel)
		if err != nil {
			return err
		}
		if e != nil {
			return fmt.Errorf("join %s as %s: %s: %s", channel, c.name, e.Code, e.Message)
		}
		c.quitting.Store(true)
		c.conn.Close(closeNormal, "joined")
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	res.Setup = time.Since(setupStart)
	if err != nil {
		return out, err
	}

	b.setStage("list")
	listing, page := new(Histogram), new(Histogram)
	b.hist.Store(listing)
	interval := time.Duration(float64(time.Second) / (cfg.RateLimit * rateHeadroom))
	var mu sync.Mutex // guards res's counts below
	start := time.Now()
	end := start.Add(cfg.Duration)
	err = parallel(ctx, len(reqs), len(reqs), func(ctx context.Context, i int) error {
		c, slot := reqs[i], slots[reqs[i]]
		next := time.Now()
		for time.Now().Before(end) {
			t0 := time.Now()
			var (
				after  string // the last username, as the server wrote it
				last   string // the same, lower-cased, for the order
				n      int
				online uint64
				fault  string
				pages  uint64
			)
			for {
				if err := sleep(ctx, time.Until(next)); err != nil {
					return err
				}
				next = time.Now().Add(interval)
				p0 := time.Now()
				m, err := c.membersPage(ctx, channel, after, cfg.Limit, slot)
				if err != nil {
					return err
				}
				if m == nil { // refused for the rate: again, after a pause
					next = time.Now().Add(100 * time.Millisecond)
					continue
				}
				page.Record(time.Since(p0))
				pages++
				b.sent.Add(1)
				for _, mb := range m.Members {
					name := strings.ToLower(mb.Username)
					switch {
					case fault != "":
					case n > 0 && name <= last:
						fault = fmt.Sprintf("%q after %q: not ascending (or a duplicate)", mb.Username, after)
					case !strings.HasPrefix(name, memberPrefix):
						fault = fmt.Sprintf("%q is not a member of this run", mb.Username)
					}
					after, last = mb.Username, name
					n++
					if mb.Online {
						online++
					}
				}
				if m.Target != channel {
					fault = fmt.Sprintf("answer for %q", m.Target)
				}
				if !m.More || len(m.Members) == 0 {
					if m.More {
						fault = "an empty page that says more follow"
					}
					break
				}
			}
			if fault == "" && n != cfg.Clients {
				fault = fmt.Sprintf("%d members listed, want %d", n, cfg.Clients)
			}
			d := time.Since(t0)
			mu.Lock()
			res.Pages += pages
			res.Online = online
			if fault == "" {
				res.Listings++
				listing.Record(d)
				b.win.Load().Record(d)
			} else {
				res.Bad++
				if res.BadReason == "" {
					res.BadReason = fault
				}
			}
			mu.Unlock()
		}
		return nil
	})
	res.Duration = time.Since(start)
	res.PerSec = round1(float64(res.Listings) / res.Duration.Seconds())
	res.Listing, res.Page = listing.Summary(), page.Summary()
	if err == nil && res.Bad > 0 {
		err = fmt.Errorf("%d of %d listings were wrong; the first: %s", res.Bad, res.Bad+res.Listings, res.BadReason)
	}
	if err == nil && res.Listings == 0 {
		err = fmt.Errorf("no listing finished in %v", cfg.Duration)
	}
	return out, err
}

// membersPage asks for one page of channel's members after the username
// after ("" from the first). It returns nil without an error when the
// server refused the request for the rate limit (counted in errors).
func (c *client) membersPage(ctx context.Context, channel, after string, limit int, slot *pageSlot) (*protocol.Members, error) {
	id := "p" + strconv.FormatUint(c.reqSeq.Add(1), 10)
	ch := c.await(id)
	r := protocol.Request{Type: protocol.TypeCommand, ID: id, Action: protocol.ActionMembers, Target: channel, Limit: &limit}
	if after != "" {
		r.AfterName = &after
	}
	req, _ := json.Marshal(r)
	if err := c.conn.WriteText(ctx, req); err != nil {
		c.answer(id, nil)
		return nil, fmt.Errorf("members %s as %s: %w", channel, c.name, err)
	}
	var e reply
	select {
	case e = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	switch {
	case e == nil:
	case e.Code == "closed":
		return nil, fmt.Errorf("members %s as %s: %w", channel, c.name, errClosed)
	case e.Code == protocol.CodeRateLimited:
		c.b.noteError(string(e.Code))
		return nil, nil
	default:
		return nil, fmt.Errorf("members %s as %s: %s: %s", channel, c.name, e.Code, e.Message)
	}
	m := slot.page.Load()
	if m == nil || m.ID != id {
		return nil, fmt.Errorf("members %s as %s: the answer to %s is missing", channel, c.name, id)
	}
	return m, nil
}

// membersRows writes a members result for people.
func membersRows(row func(string, any), r *MembersResult) {
	row("members / requesters / page", fmt.Sprintf("%d / %d / %d", r.Members, r.Requesters, r.Limit))
	row("set-up (login, join, close)", r.Setup.Round(time.Millisecond))
	row("listings", fmt.Sprintf("%d right (%.1f/s over %v), %d pages", r.Listings, r.PerSec, r.Duration.Round(time.Millisecond), r.Pages))
	row("WRONG listings", r.Bad)
	if r.BadReason != "" {
		row("  first fault", r.BadReason)
	}
	row("online in the last listing", r.Online)
	latencyRows(row, "full listing", r.Listing)
	latencyRows(row, "page", r.Page)
}
