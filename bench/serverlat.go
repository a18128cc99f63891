package main

import (
	"bufio"
	"bytes"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// The gateway measures each chat message from its arrival to its ack
// handed to the socket (imgate_ack_latency_seconds on /metrics). bench
// reads that histogram from every -http target before and after the
// measured window; the difference, summed over the targets, is the
// server's share of the ack latency the clients saw (the rest is the
// network and the client itself, on the same cores here).

// serverAckMetric is the histogram's name on /metrics.
const serverAckMetric = "imgate_ack_latency_seconds"

// promHist is one scrape of a cumulative Prometheus histogram: counts by
// upper bound, in seconds (+Inf last).
type promHist struct {
	le    []float64
	count []float64
}

// scrapeAckHist reads the ack-latency histogram of every HTTP target and
// sums them; ok is false if a target does not serve it (an older gateway).
func (r *registrar) scrapeAckHist() (h promHist, ok bool) {
	byLE := map[float64]float64{}
	for range r.hcs {
		code, body, err := r.do(fasthttp.MethodGet, "/metrics", "")
		if err != nil || code != 200 {
			return promHist{}, false
		}
		found := false
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			line := sc.Text()
			rest, isBucket := strings.CutPrefix(line, serverAckMetric+`_bucket{le="`)
			if !isBucket {
				continue
			}
			leStr, valStr, okLine := strings.Cut(rest, `"} `)
			if !okLine {
				continue
			}
			le, err1 := strconv.ParseFloat(leStr, 64)
			v, err2 := strconv.ParseFloat(strings.TrimSpace(valStr), 64)
			if err1 != nil || err2 != nil {
				continue
			}
			byLE[le] += v
			found = true
		}
		if !found {
			return promHist{}, false
		}
	}
	for le := range byLE {
		h.le = append(h.le, le)
	}
	sort.Float64s(h.le)
	for _, le := range h.le {
		h.count = append(h.count, byLE[le])
	}
	return h, true
}

// serverLatency summarizes after less before: p50, p99 and p99.9 by
// linear interpolation within a bucket (as PromQL's histogram_quantile);
// a quantile in the +Inf bucket reports the largest finite bound. Max is
// not known from a histogram and stays zero.
func serverLatency(before, after promHist) *Latency {
	if len(after.le) == 0 || len(after.le) != len(before.le) {
		return nil
	}
	d := make([]float64, len(after.count))
	for i := range d {
		d[i] = after.count[i] - before.count[i]
	}
	total := d[len(d)-1]
	if total <= 0 {
		return nil
	}
	q := func(p float64) time.Duration {
		rank := p * total
		for i, c := range d {
			if c < rank {
				continue
			}
			if math.IsInf(after.le[i], 1) {
				return time.Duration(after.le[i-1] * 1e9)
			}
			lo, below := 0.0, 0.0
			if i > 0 {
				lo, below = after.le[i-1], d[i-1]
			}
			in := c - below
			frac := 1.0
			if in > 0 {
				frac = (rank - below) / in
			}
			return time.Duration((lo + (after.le[i]-lo)*frac) * 1e9)
		}
		return 0
	}
	return &Latency{P50: q(0.50), P99: q(0.99), P999: q(0.999), N: uint64(total)}
}
