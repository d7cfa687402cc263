package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is everything a run reports; the scenario fills its part.
type Result struct {
	Scenario      string            `json:"scenario"`
	Nodes         []string          `json:"nodes"`
	Params        map[string]any    `json:"params"`
	Phase         *PhaseResult      `json:"phase,omitempty"`     // fanout, dm
	Steps         []PhaseResult     `json:"steps,omitempty"`     // saturate
	LastGood      *PhaseResult      `json:"last_good,omitempty"` // saturate
	Idle          *IdleResult       `json:"idle,omitempty"`
	Connect       *ConnectResult    `json:"connect,omitempty"`
	Presence      *PresenceResult   `json:"presence,omitempty"`
	Members       *MembersResult    `json:"members,omitempty"`
	History       *HistoryResult    `json:"history,omitempty"`
	Resume        *ResumeResult     `json:"resume,omitempty"`
	Errors        map[string]uint64 `json:"errors"`               // error codes from the server, write failures
	Disconnects   map[string]uint64 `json:"disconnects"`          // connections the server ended, by close code
	DisconnectsAt map[string]uint64 `json:"disconnects_by_stage"` // the same, by the stage of the run (login, join, settle, publish, ...)
	Elapsed       time.Duration     `json:"elapsed_ns"`
	Note          string            `json:"note,omitempty"`
	Failure       string            `json:"failure,omitempty"` // why the run stopped before its end
}

// IdleResult is the idle scenario's outcome.
type IdleResult struct {
	Connections   int           `json:"connections"`
	Open          int           `json:"open_at_end"`
	Hold          time.Duration `json:"hold_ns"`
	RSSBeforeKiB  int64         `json:"rss_before_kib,omitempty"`
	RSSAfterKiB   int64         `json:"rss_after_kib,omitempty"`
	RSSPerConnKiB float64       `json:"rss_per_conn_kib,omitempty"`
}

// ConnectResult is the connect scenario's outcome.
type ConnectResult struct {
	Connections int           `json:"connections"`
	Wall        time.Duration `json:"wall_ns"`
	PerSecond   float64       `json:"conn_per_s"`
	Welcome     Latency       `json:"welcome"`
}

// writeJSON writes r as one line.
func writeJSON(w io.Writer, r *Result) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// writeTable writes r for people.
func writeTable(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("scenario", r.Scenario)
	row("nodes", strings.Join(r.Nodes, " "))
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		row("  "+k, r.Params[k])
	}
	if r.Phase != nil {
		phaseRows(row, r.Phase)
	}
	if len(r.Steps) > 0 {
		tw.Flush()
		fmt.Fprintln(w)
		st := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(st, "step\trate msg/s\tsent\tdeliveries/s\tlost\tdup\trefused\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tcomplete\t")
		for i, s := range r.Steps {
			fmt.Fprintf(st, "%d\t%.0f\t%d\t%.0f\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%v\t\n", i+1, s.Rate, s.Sent,
				s.DeliveryRate, s.Lost, s.Duplicated, s.Refused, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max, s.Complete)
		}
		st.Flush()
		fmt.Fprintln(w)
		if r.LastGood != nil {
			row("last good step", fmt.Sprintf("%.0f msg/s = %.0f deliveries/s, p99 %.3f ms",
				r.LastGood.Rate, r.LastGood.DeliveryRate, r.LastGood.Latency.P99))
		} else {
			row("last good step", "none")
		}
	}
	if r.Idle != nil {
		row("connections", r.Idle.Connections)
		row("open at end", r.Idle.Open)
		row("hold", r.Idle.Hold)
		if r.Idle.RSSAfterKiB > 0 {
			row("server RSS before", fmt.Sprintf("%d KiB", r.Idle.RSSBeforeKiB))
			row("server RSS after", fmt.Sprintf("%d KiB", r.Idle.RSSAfterKiB))
			row("RSS per connection", fmt.Sprintf("%.1f KiB", r.Idle.RSSPerConnKiB))
		}
	}
	if r.Connect != nil {
		row("connections", r.Connect.Connections)
		row("wall time", r.Connect.Wall.Round(time.Millisecond))
		row("connections/s", r.Connect.PerSecond)
		latencyRows(row, "welcome", r.Connect.Welcome)
	}
	if r.Presence != nil {
		presenceRows(row, r.Presence)
	}
	if r.Members != nil {
		membersRows(row, r.Members)
	}
	if r.History != nil {
		historyRows(row, r.History)
	}
	if r.Resume != nil {
		resumeRows(row, r.Resume)
	}
	row("errors", counts(r.Errors))
	row("disconnects", counts(r.Disconnects))
	if len(r.DisconnectsAt) > 0 {
		row("  by stage", counts(r.DisconnectsAt))
	}
	row("elapsed", r.Elapsed.Round(time.Millisecond))
	if r.Note != "" {
		row("note", r.Note)
	}
	if r.Failure != "" {
		row("FAILED", r.Failure)
	}
	tw.Flush()
}

func phaseRows(row func(string, any), p *PhaseResult) {
	row("publishers", p.Publishers)
	row("publishing time", p.Duration.Round(time.Millisecond))
	row("sent", fmt.Sprintf("%d (%.1f msg/s, asked %.1f)", p.Sent, p.MsgRate, p.Rate))
	row("acked / refused", fmt.Sprintf("%d / %d", p.Acked, p.Refused))
	row("expected deliveries", p.Expected)
	row("delivered", fmt.Sprintf("%d (%.1f/s over %v, from the first message written to the last delivered)",
		p.Delivered, p.DeliveryRate, p.Window.Round(time.Millisecond)))
	row("LOST", p.Lost)
	row("DUPLICATED", p.Duplicated)
	row("out of order", p.OutOfOrder)
	row("unexpected", p.Unexpected)
	row("complete in grace", p.Complete)
	latencyRows(row, "latency", p.Latency)
	hopRows(row, p)
	gcRows(row, p)
	if r := p.Redis; r != nil {
		row("redis", fmt.Sprintf("cpu %.3f s, %.1f µs per message; %d commands, %.1f per message", r.CPU, r.CPUPerMsg, r.Commands, r.CommandsPer))
		row("  redis commands", topCounts(r.ByCommand, 6))
		for _, s := range r.Servers {
			row("  redis "+s.Addr, fmt.Sprintf("%.1f%% of the commands, cpu %.3f s", 100*s.Share, s.CPU))
		}
	}
}

// hopRows splits the phase's latency by the hops the nodes timed. The
// writer hop counts only frames that found their session's writer idle,
// and the write hop one socket write each; the rest is what no node times:
// Redis's pub/sub transit, the receiving client's read, and the frames
// queued behind others.
func hopRows(row func(string, any), p *PhaseResult) {
	if len(p.Hops) == 0 {
		return
	}
	var path float64
	for _, h := range p.Hops {
		row("  hop "+h.Hop+" ms", fmt.Sprintf("mean %.3f  p50 %.3f  p99 %.3f  (n=%d)", h.Mean, h.P50, h.P99, h.Count))
		path += h.Mean
	}
	row("  hops' means, summed", fmt.Sprintf("%.3f ms of the %.3f ms mean latency; untimed: %.3f ms", path, p.Latency.Mean, p.Latency.Mean-path))
}

// gcRows says how often the nodes collected garbage during the phase, how
// long they stopped the world, and how much they allocated per message.
func gcRows(row func(string, any), p *PhaseResult) {
	if p.GC == nil {
		return
	}
	row("nodes' gc", fmt.Sprintf("%d collections, %.3f ms of pauses in all, %.0f bytes allocated per message", p.GC.Cycles, p.GC.Pauses, p.GC.AllocPerMessage))
}

func latencyRows(row func(string, any), name string, l Latency) {
	row(name+" ms", fmt.Sprintf("p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f  (n=%d)",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean, l.Count))
}

func counts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// topCounts lists the n largest counts of m, largest first.
func topCounts(m map[string]uint64, n int) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
