package main

import (
	"math"
	"testing"
	"time"
)

// The server's ack latency is the difference of two scrapes of its
// histogram, its quantiles interpolated within a bucket.
func TestServerLatencyFromHistogramDelta(t *testing.T) {
	le := []float64{0.001, 0.002, 0.004, math.Inf(1)}
	before := promHist{le: le, count: []float64{10, 10, 10, 10}}
	// 100 more: 50 under 1 ms, 40 in (1, 2] ms, 9 in (2, 4] ms, 1 above.
	after := promHist{le: le, count: []float64{60, 100, 109, 110}}
	got := serverLatency(before, after)
	if got == nil || got.N != 100 {
		t.Fatalf("got %+v, want 100 samples", got)
	}
	if got.P50 != time.Millisecond {
		t.Errorf("p50 %v, want 1ms (the 50th of 50 under 1 ms)", got.P50)
	}
	// The 99th is the 9th of 9 in (2, 4] ms: its upper bound.
	if got.P99 != 4*time.Millisecond {
		t.Errorf("p99 %v, want 4ms", got.P99)
	}
	// The 99.9th falls in +Inf: the largest finite bound.
	if got.P999 != 4*time.Millisecond {
		t.Errorf("p99.9 %v, want 4ms", got.P999)
	}
	if serverLatency(after, after) != nil {
		t.Error("no new observations gave a latency")
	}
	if serverLatency(promHist{}, after) != nil {
		t.Error("scrapes of different bucket layouts gave a latency")
	}
}
