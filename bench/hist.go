package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in the manner of HdrHistogram:
// values in nanoseconds land in one of 64 sub-buckets per power of two,
// so every reported percentile is within 1.6% of the truth, in constant
// memory and without allocating per sample. Not safe for concurrent use.
type hist struct {
	counts [64 * 64]uint64
	n      uint64
	max    int64
}

// Values below 128 ns have a bucket each; above, a value v with bit length
// L falls in bucket 128 + (L-8)·64 + (v >> (L-7)) − 64: 64 buckets per
// power of two, each 1/64 of its range wide.
func bucketOf(v int64) int {
	if v < 128 {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 7
	return 128 + (e-1)*64 + int(v>>e) - 64
}

// lowOf is the smallest value of bucket i.
func lowOf(i int) int64 {
	if i < 128 {
		return int64(i)
	}
	e := (i-128)/64 + 1
	return int64((i-128)%64+64) << e
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	i := bucketOf(v)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, v)
}

// quantile returns the value at q (0..1), 0 with no samples.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank && c > 0 {
			return time.Duration(min(lowOf(i+1)-1, h.max))
		}
	}
	return time.Duration(h.max)
}
