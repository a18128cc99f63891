package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h hist
	var vals []time.Duration
	for i := 0; i < 100000; i++ {
		v := time.Duration(rand.ExpFloat64() * float64(2*time.Millisecond))
		vals = append(vals, v)
		h.record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.quantile(q)
		if diff := float64(got-exact) / float64(exact); diff < -0.02 || diff > 0.02 {
			t.Errorf("p%v = %v, exact %v", q*100, got, exact)
		}
	}
	if h.quantile(1) != vals[len(vals)-1] {
		t.Errorf("max %v want %v", h.quantile(1), vals[len(vals)-1])
	}
	if (&hist{}).quantile(0.5) != 0 {
		t.Error("empty histogram")
	}
}

// -procs: children export their histograms and the parent merges them
// into the same percentiles one process would have seen.
func TestMergeResults(t *testing.T) {
	var whole, a, b hist
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		whole.record(d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	m := mergeResults("chat", []Result{
		{Acks: 500, AckRate: 100, AckHist: a.export(), ReplyCodes: map[string]int64{"10028": 1}},
		{Acks: 500, AckRate: 150, AckHist: b.export()},
	})
	if m.Acks != 1000 || m.AckRate != 250 || m.ReplyCodes["10028"] != 1 {
		t.Fatalf("merged %+v", m)
	}
	if m.Ack != summarize(&whole) {
		t.Fatalf("merged latency %+v, one process %+v", m.Ack, summarize(&whole))
	}
}
