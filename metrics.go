package main

import (
	"bytes"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// instruments are the gateway's Prometheus instruments, registered in a
// registry of their own; /metrics appends them after the hand-written
// gauges (server.metrics). Each is resolved at start, so the hot paths
// that feed them take no lock and allocate nothing.
type instruments struct {
	reg *prometheus.Registry
	// ackLatency is receive → ack handed to the sender's socket for chat
	// messages (PROTOCOL §4.1), the durable commit included: the server's
	// share of the latency a client sees.
	ackLatency prometheus.Histogram
}

// ackLatencyBuckets: 100 µs doubling to ~3.3 s, fine enough below 10 ms
// (the commit's fsync is ≈1.4 ms) to read a p99 there.
var ackLatencyBuckets = prometheus.ExponentialBuckets(100e-6, 2, 16)

func newInstruments() *instruments {
	m := &instruments{
		reg: prometheus.NewRegistry(),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "imgate_ack_latency_seconds",
			Help:    "Time from a chat message's arrival to its reply (the ack, or a refusal) handed to the sender's socket, the durable commit included (PROTOCOL §4.1).",
			Buckets: ackLatencyBuckets,
		}),
	}
	m.reg.MustRegister(m.ackLatency)
	return m
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
