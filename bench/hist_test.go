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
