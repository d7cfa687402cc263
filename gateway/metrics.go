package gateway

import (
	"bytes"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus metrics (docs/operations.md lists
// them). All are safe for concurrent use.
type metrics struct {
	connections    prometheus.Gauge
	opens          prometheus.Counter
	closes         *prometheus.CounterVec // by close code
	framesIn       *prometheus.CounterVec // by request type or action
	framesOut      *prometheus.CounterVec // by frame type
	outByType      [len(frameTypes)]prometheus.Counter
	socketWrites   prometheus.Counter
	published      *prometheus.CounterVec // by kind: channel, private
	deliveries     *prometheus.CounterVec // by frame type
	fanout         prometheus.Histogram
	errors         *prometheus.CounterVec // by code
	rateLimited    prometheus.Counter
	slowConsumers  prometheus.Counter
	subscriptions  prometheus.Gauge
	resyncs        *prometheus.CounterVec // by result: ok, failed
	lateEvents     prometheus.Counter
	duplicates     prometheus.Counter
	historyReads   prometheus.Counter
	gapRepairs     prometheus.Counter
	gapRepaired    prometheus.Counter
	gapSkipped     prometheus.Counter
	presenceEvents prometheus.Counter
	hops           [len(hopNames)]prometheus.Observer
}

// The hops of a message through the nodes (issue 21), timed on the node
// where each happens; what no node can time (Redis delivering a publish to
// the receiving node, the client reading) is the end-to-end latency less
// their sum (chatbench's hop report).
const (
	hopHandle  = iota // the sender's node: the frame read, to the store call (decode, checks, rate limit)
	hopStore          // the sender's node: the store and publish script, a Redis round trip
	hopDeliver        // a receiving node: a message notice in, to every local session's queue
	hopWriter         // any node: a frame queued for an idle session, to its writer taking it
	hopWrite          // any node: one batch written to a socket
)

var hopNames = [...]string{"handle", "store", "deliver", "writer", "write"}

// hop observes how long a hop took, in nanoseconds of monoNow.
func (m *metrics) hop(h int, took int64) { m.hops[h].Observe(float64(took) / 1e9) }

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chat_connections", Help: "Open websockets on this node."}),
		opens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_connections_opened_total", Help: "Websockets opened."}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_connections_closed_total", Help: "Websockets closed, by close code (0: connection lost)."}, []string{"code"}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_frames_in_total", Help: "Request frames received, by type (message, create, destroy, join, leave, invalid)."}, []string{"type"}),
		framesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_frames_out_total", Help: "Frames written to websockets, by type (welcome, event, message, ack, error, history, members)."}, []string{"type"}),
		socketWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_socket_writes_total", Help: "Batches of data frames written to websockets, one write system call each (more for a batch over 64 KiB)."}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_messages_published_total", Help: "Chat messages accepted from this node's clients and stored, by kind (channel, private); repeats of a request id are not counted."}, []string{"kind"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_deliveries_total", Help: "Frames handed to local sessions by the fan-out, by frame type."}, []string{"type"}),
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chat_fanout_duration_seconds",
			Help:    "Time to hand one broker delivery to every local recipient's queue.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12)}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_errors_total", Help: "Protocol errors sent to clients, by code."}, []string{"code"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_rate_limited_total", Help: "Requests refused by the rate limit."}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_slow_consumer_closes_total", Help: "Websockets closed with 1008 because their send queue overflowed."}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chat_pubsub_subscriptions", Help: "Broker topics this node is subscribed to, besides the cluster topic."}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_resyncs_total", Help: "Resyncs of channels and memberships after an outage of the pub/sub path, by result (ok, failed)."}, []string{"result"}),
		lateEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_resync_events_total", Help: "Create and destroy events that a resync found missed and sent late (one per channel, not per session)."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_message_duplicates_total", Help: "Messages refused as repeats of an earlier request id (idempotent sends): acked with the first one's seq, not stored or delivered again."}),
		historyReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_history_reads_total", Help: "History commands answered."}),
		gapRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gap_repairs_total", Help: "Repairs of a log's delivery from history: a seq skipped on the live path, or an outage of the pub/sub path."}),
		gapRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gap_repaired_messages_total", Help: "Messages that gap repairs read from history and delivered, which the live path had not."}),
		presenceEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_presence_events_total", Help: "Online and offline events this node published (one per user and channel, published one notice per channel and window)."}),
		gapSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gap_skipped_messages_total", Help: "Messages a node could not deliver in order: gone from history before its repair read them, or given up after history could not be read."}),
	}
	for i, t := range frameTypes {
		m.outByType[i] = m.framesOut.WithLabelValues(t.name)
	}
	hops := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "chat_message_hop_seconds",
		Help: "Time of each hop of a chat message on this node: handle (read to store), store (the Redis script), deliver (notice in to every local queue), writer (queued for an idle session to its writer starting), write (one socket write).",
		// 1 µs to about 1 s.
		Buckets: prometheus.ExponentialBuckets(1e-6, 2, 21)}, []string{"hop"})
	for i, name := range hopNames {
		m.hops[i] = hops.WithLabelValues(name)
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.opens, m.closes, m.framesIn, m.framesOut, m.socketWrites, m.published,
			m.deliveries, m.fanout, m.errors, m.rateLimited, m.slowConsumers, m.subscriptions, m.resyncs, m.lateEvents,
			m.duplicates, m.historyReads, m.gapRepairs, m.gapRepaired, m.gapSkipped, m.presenceEvents, hops)
	}
	return m
}

func (m *metrics) opened() {
	m.opens.Inc()
	m.connections.Inc()
}

func (m *metrics) closed(code websocket.StatusCode) {
	m.connections.Dec()
	m.closes.WithLabelValues(strconv.Itoa(int(code))).Inc()
}

// frameTypes are the server's frame types, recognised by how our encoder
// starts each frame.
var frameTypes = [...]struct {
	name   string
	prefix []byte
}{
	{"message", []byte(`{"type":"message"`)},
	{"event", []byte(`{"type":"event"`)},
	{"ack", []byte(`{"type":"ack"`)},
	{"error", []byte(`{"type":"error"`)},
	{"welcome", []byte(`{"type":"welcome"`)},
	{"history", []byte(`{"type":"history"`)},
	{"members", []byte(`{"type":"members"`)},
}

// frameType returns the index of frame's type in frameTypes, or -1.
func frameType(frame []byte) int {
	for i, t := range frameTypes {
		if bytes.HasPrefix(frame, t.prefix) {
			return i
		}
	}
	return -1
}

// wrote counts a batch of frames written to one socket.
func (m *metrics) wrote(batch [][]byte) {
	m.socketWrites.Inc()
	var n [len(frameTypes)]int
	for _, f := range batch {
		if i := frameType(f); i >= 0 {
			n[i]++
		}
	}
	for i, c := range n {
		if c > 0 {
			m.outByType[i].Add(float64(c))
		}
	}
}

// delivered counts one fan-out of frame to n local sessions.
func (m *metrics) delivered(frame []byte, n int, took time.Duration) {
	kind := "other"
	if i := frameType(frame); i >= 0 {
		kind = frameTypes[i].name
	}
	m.deliveries.WithLabelValues(kind).Add(float64(n))
	m.fanout.Observe(took.Seconds())
}
