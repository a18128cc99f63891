package main

import (
	"math"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// BenchmarkInstrumentsPerChat is the histogram work -metrics adds to one
// chat message, as the event loops and the committer do it: its ack's
// latency, its push's latency, and its share of a commit of 16 (duration
// and batch size). "serial" on one goroutine; "parallel" from every P at
// once, as the two event loops observe. The router's request count is
// router.BenchmarkChatDelivered's.
func BenchmarkInstrumentsPerChat(b *testing.B) {
	for _, on := range []bool{false, true} {
		m := newInstruments(on)
		ack, push := observer(m.ackLatency), observer(m.pushLatency)
		commits := m.commitObserver()
		perChat := func(i int) {
			if ack != nil {
				ack.Observe(0.0012)
			}
			if push != nil {
				push.Observe(0.0013)
			}
			if commits != nil && i%16 == 0 {
				commits.ObserveCommit(16, 1400*time.Microsecond)
			}
		}
		name := "metrics=false"
		if on {
			name = "metrics=true"
		}
		b.Run(name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				perChat(i)
				i++
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					perChat(i)
					i++
				}
			})
		})
	}
}

// The histogram's buckets are Prometheus's: cumulative counts of the
// values at or under each bound, 100 µs doubling for latencies; the sum
// is kept to the nanosecond.
func TestHistogramBuckets(t *testing.T) {
	h := newHistogram("h_seconds", "test", 100e-6, 1e-9)
	for _, v := range []float64{0, 50e-6, 100e-6, 100.5e-6, 200e-6, 1.5e-3, 3.2768, 3.3, 1e9, -1} {
		h.Observe(v)
	}
	var m dto.Metric
	if err := h.metric().Write(&m); err != nil {
		t.Fatal(err)
	}
	got := map[float64]uint64{}
	for _, b := range m.Histogram.Bucket {
		got[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	want := map[float64]uint64{100e-6: 4, 200e-6: 6, 400e-6: 6, 800e-6: 6, 1.6e-3: 7, 3.2768: 8}
	for bound, n := range want {
		if got[bound] != n {
			t.Errorf("le=%g: %d, want %d (all: %v)", bound, got[bound], n, got)
		}
	}
	if len(got) != histogramBounds {
		t.Errorf("%d bounds, want %d", len(got), histogramBounds)
	}
	if n := m.Histogram.GetSampleCount(); n != 10 {
		t.Errorf("count %d, want 10", n)
	}
	if s, want := m.Histogram.GetSampleSum(), 1e9+3.2768+3.3+1.5e-3+200e-6+100.5e-6+100e-6+50e-6; math.Abs(s-want) > 1e-6 {
		t.Errorf("sum %v, want %v", s, want)
	}
}
