package main

import (
	"bytes"
	"math"
	"math/bits"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// instruments are the gateway's Prometheus metrics (PROTOCOL §1.4), in a
// registry of their own that /metrics serves after the HTTP API's request
// count. Two kinds:
//   - the hot path's histograms and request counters, on with -metrics
//     (the default): each is resolved at start, so what feeds them takes
//     no lock and allocates nothing (BenchmarkInstrumentsPerChat);
//   - gauges and counters the packages keep anyway, read at scrape time
//     (gatewayCollector), and the Go runtime's and the process's.
type instruments struct {
	reg *prometheus.Registry
	// on: -metrics; the fields below are nil without it.
	on bool
	// ackLatency is receive → ack handed to the sender's socket for chat
	// messages (PROTOCOL §4.1), the durable commit included: the server's
	// share of the latency a client sees.
	ackLatency *histogram
	// pushLatency is receive → push handed to a receiver's socket
	// (PROTOCOL §4.2), once per connection written.
	pushLatency *histogram
	// commitSeconds and commitOps describe each synced commit of the
	// store: its duration (Pebble: WAL write and fsync) and how many
	// operations it made durable.
	commitSeconds *histogram
	commitOps     *histogram
}

// histogram is a Prometheus histogram with 16 doubling bounds whose
// Observe costs two atomic adds and no search: bucket i counts the values
// in (first·2^(i-1), first·2^i], found from the bit length of ⌈v/first⌉.
// The client library's Histogram takes four atomic operations (one a CAS
// loop) and a search per observation: 49 ns a chat message against 23
// (BenchmarkInstrumentsPerChat), which put -metrics over its budget of 50
// ns (BENCHMARKS.md, issue 16). The registry exposes this one as a
// constant histogram at each scrape (histogramCollector).
type histogram struct {
	desc  *prometheus.Desc
	first float64 // the first bucket's upper bound, in the unit observed
	// unit is what sum counts, so that it adds integers: 1e-9 for
	// seconds (it sums nanoseconds), 1 for counts.
	unit    float64
	buckets [histogramBounds + 1]atomic.Uint64 // the last: above every bound (+Inf)
	sum     atomic.Uint64                      // in units
}

const histogramBounds = 16

func newHistogram(name, help string, first, unit float64) *histogram {
	return &histogram{desc: prometheus.NewDesc(name, help, nil, nil), first: first, unit: unit}
}

// Observe records v: seconds for latencies, a count for sizes. Safe for
// concurrent use; it never blocks or allocates.
func (h *histogram) Observe(v float64) {
	i := 0
	if q := v / h.first; q > 1<<histogramBounds {
		i = histogramBounds
	} else if q > 0 {
		i = min(bits.Len64(uint64(math.Ceil(q))-1), histogramBounds)
	}
	h.buckets[i].Add(1)
	if v > 0 {
		h.sum.Add(uint64(v / h.unit))
	}
}

// metric is h as a constant Prometheus histogram: cumulative counts by
// upper bound.
func (h *histogram) metric() prometheus.Metric {
	counts := make(map[float64]uint64, histogramBounds)
	var n uint64
	for i := range histogramBounds {
		n += h.buckets[i].Load()
		counts[h.first*math.Ldexp(1, i)] = n
	}
	n += h.buckets[histogramBounds].Load()
	return prometheus.MustNewConstHistogram(h.desc, n, float64(h.sum.Load())*h.unit, counts)
}

// histogramCollector exposes histograms at each scrape.
type histogramCollector []*histogram

// Describe implements prometheus.Collector.
func (c histogramCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, h := range c {
		ch <- h.desc
	}
}

// Collect implements prometheus.Collector.
func (c histogramCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range c {
		ch <- h.metric()
	}
}

// newInstruments makes the registry with the runtime's and the process's
// collectors, and the hot path's instruments when on.
func newInstruments(on bool) *instruments {
	m := &instruments{reg: prometheus.NewRegistry(), on: on}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if !on {
		return m
	}
	// Latencies: buckets from 100 µs doubling to ~3.3 s, fine enough
	// below 10 ms (the commit's fsync is ≈1.4 ms) to read a p99 there;
	// sums in nanoseconds.
	m.ackLatency = newHistogram("imgate_ack_latency_seconds",
		"Time from a chat message's arrival to its reply (the ack, or a refusal) handed to the sender's socket, the durable commit included (PROTOCOL §4.1).", 100e-6, 1e-9)
	m.pushLatency = newHistogram("imgate_push_latency_seconds",
		"Time from a chat message's arrival to its push handed to a receiver's socket, once per connection written (PROTOCOL §4.2).", 100e-6, 1e-9)
	m.commitSeconds = newHistogram("imgate_storage_commit_seconds",
		"Duration of each synced commit of the store: for Pebble the batch's WAL write and fsync, for PostgreSQL the transaction up to COMMIT's answer. Every ack waits for one.", 100e-6, 1e-9)
	// Batch sizes: bounds from 1 to 32768 operations, doubling.
	m.commitOps = newHistogram("imgate_storage_commit_batch_ops",
		"Operations (messages, reads, acks…) made durable by each synced commit: the group commit's batch size.", 1, 1)
	m.reg.MustRegister(histogramCollector{m.ackLatency, m.pushLatency, m.commitSeconds, m.commitOps})
	return m
}

// observer is h for engine.Options (ReplyLatency, PushLatency): nil when
// h is, since a nil *histogram in an interface would not be.
func observer(h *histogram) interface{ Observe(seconds float64) } {
	if h == nil {
		return nil
	}
	return h
}

// commitObserver is the store's storage.CommitObserver; nil when off.
func (m *instruments) commitObserver() storage.CommitObserver {
	if !m.on {
		return nil
	}
	return &commitObserver{m}
}

type commitObserver struct{ m *instruments }

// ObserveCommit implements storage.CommitObserver.
func (o *commitObserver) ObserveCommit(ops int, took time.Duration) {
	o.m.commitSeconds.Observe(took.Seconds())
	o.m.commitOps.Observe(float64(ops))
}

// appendText appends the registry's families in Prometheus text format.
func (m *instruments) appendText(b []byte) []byte {
	mfs, err := m.reg.Gather()
	if err != nil {
		return b
	}
	w := bytes.NewBuffer(b)
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			break
		}
	}
	return w.Bytes()
}

// gatewayCollector reads, at each scrape, what the engine, router, store
// and cluster node count anyway.
type gatewayCollector struct{ s *server }

var (
	descConns        = prometheus.NewDesc("imgate_connections", "Open WebSocket connections.", nil, nil)
	descUsers        = prometheus.NewDesc("imgate_online_users", "Users with at least one live connection.", nil, nil)
	descCommits      = prometheus.NewDesc("imgate_storage_commits_total", "Durable operations committed.", nil, nil)
	descFsyncs       = prometheus.NewDesc("imgate_storage_fsyncs_total", "Synced commit batches (each syncs the store's WAL, and the message log's first when it holds messages).", nil, nil)
	descStalls       = prometheus.NewDesc("imgate_storage_write_stalls_total", "Times the store stopped taking writes (every ack waited) until its flushes and compactions caught up.", nil, nil)
	descStallSeconds = prometheus.NewDesc("imgate_storage_write_stall_seconds_total", "Time the store spent not taking writes.", nil, nil)
	descUndelivered  = prometheus.NewDesc("imgate_undelivered_pushes_total", "Pushes no connection of the receiver wrote; the message stayed in (or went back to) the offline queue (PROTOCOL §4.3).", nil, nil)
	descSlow         = prometheus.NewDesc("imgate_slow_consumers_total", "Connections closed because their unsent output, or their unacknowledged pushes, passed a cap (close 1008).", nil, nil)
	descUnsent       = prometheus.NewDesc("imgate_unsent_bytes", "Output accepted for clients and not yet written to their sockets.", nil, nil)
	descClientAcked  = prometheus.NewDesc("imgate_pushes_acknowledged_total", "Pushes settled by the receiver's receipt ack (cmd 21, PROTOCOL §7.2).", nil, nil)
	descLimited      = prometheus.NewDesc("imgate_rate_limited_total", "Requests the per-connection rate limit refused with 10028 (PROTOCOL §6).", nil, nil)
	descCloses       = prometheus.NewDesc("imgate_ws_closes_total", "WebSocket connections ended, by the status of the CLOSE the server sent or echoed; 1006 when it sent none (the client vanished).", []string{"code"}, nil)
	descRequests     = prometheus.NewDesc("imgate_requests_total", "WebSocket requests by command and the code of their answer; code \"none\" for a request answered without one (a receipt ack, a heartbeat). Counted with -metrics.", []string{"cmd", "code"}, nil)
	descBusUp        = prometheus.NewDesc("imgate_bus_connected", "1 while the NATS connection is up.", nil, nil)
	descNodes        = prometheus.NewDesc("imgate_cluster_nodes", "Other nodes heard from within the presence expiry.", nil, nil)
	descBusPushes    = prometheus.NewDesc("imgate_bus_pushes_total", "Pushes sent to other nodes: one per receiver of a private push, one per group message.", nil, nil)
	descBusLost      = prometheus.NewDesc("imgate_bus_pushes_not_written_total", "Pushes another node did not write or did not answer for in time; the message stayed queued.", nil, nil)
	descBusTimeouts  = prometheus.NewDesc("imgate_bus_push_timeouts_total", "Pushes another node did not answer for within the push timeout.", nil, nil)
)

// Describe implements prometheus.Collector.
func (g gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descUsers, descCommits, descFsyncs, descStalls, descStallSeconds, descUndelivered, descSlow, descUnsent, descClientAcked, descLimited, descCloses, descRequests, descBusUp, descNodes, descBusPushes, descBusLost, descBusTimeouts} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (g gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	s := g.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	st := s.engine.Stats()
	gauge(descConns, float64(st.Conns))
	gauge(descUsers, float64(st.Users))
	gauge(descUnsent, float64(st.Unsent))
	counter(descSlow, float64(st.SlowConsumers))
	counter(descClientAcked, float64(st.ClientAcked))
	s.engine.CloseCounts(func(code uint16, n uint64) {
		label := "other"
		if code != 0 {
			label = strconv.Itoa(int(code))
		}
		counter(descCloses, float64(n), label)
	})
	cs := s.db.CommitStats()
	counter(descCommits, float64(cs.Ops))
	counter(descFsyncs, float64(cs.Batches))
	counter(descStalls, float64(cs.Stalls))
	counter(descStallSeconds, cs.StallTime.Seconds())
	counter(descUndelivered, float64(s.router.Undelivered()))
	counter(descLimited, float64(s.router.RateLimited()))
	s.router.RequestCounts(func(cmd codec.Cmd, code codec.Code, n uint64) {
		label := strconv.Itoa(int(code))
		switch code {
		case 0:
			label = "none"
		case 0xffff:
			label = "other"
		}
		counter(descRequests, float64(n), strconv.Itoa(int(cmd)), label)
	})
	if s.node != nil {
		ns := s.node.Stats()
		up := 0.0
		if ns.Connected {
			up = 1
		}
		gauge(descBusUp, up)
		gauge(descNodes, float64(ns.Nodes))
		counter(descBusPushes, float64(ns.Pushes))
		counter(descBusLost, float64(ns.NotWritten))
		counter(descBusTimeouts, float64(ns.Timeouts))
	}
}
