package main

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// BenchmarkInstrumentsPerChat is the histogram work -metrics adds to one
// chat message, as the event loops and the committer do it: its ack's
// latency, its push's latency, and its share of a commit of 16 (duration
// and batch size), through the gateway's histograms, through none
// (metrics=false), and through client_golang's. "serial" on one goroutine;
// "parallel" from every P at once, as the two event loops observe. The
// router's request count is router.BenchmarkChatDelivered's.
func BenchmarkInstrumentsPerChat(b *testing.B) {
	type sink interface{ Observe(float64) }
	on := newInstruments(true) // the gateway's, as main wires them
	// client_golang: the same four histograms as the library's own
	// Histogram, which the gateway's replaced (BENCHMARKS.md, issue 16).
	lib := func(name string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16)})
	}
	for _, v := range []struct {
		name                          string
		ack, push, commitS, commitOps sink
	}{
		{name: "metrics=false"},
		{"metrics=true", on.ackLatency, on.pushLatency, on.commitSeconds, on.commitOps},
		{"client_golang", lib("a"), lib("p"), lib("c"), lib("o")},
	} {
		perChat := func(i int) {
			if v.ack == nil {
				return
			}
			v.ack.Observe(0.0012)
			v.push.Observe(0.0013)
			if i%16 == 0 {
				v.commitS.Observe(0.0014)
				v.commitOps.Observe(16)
			}
		}
		b.Run(v.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				perChat(i)
				i++
			}
		})
		b.Run(v.name+"/parallel", func(b *testing.B) {
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

// The Grafana dashboard (deploy/grafana/imgate.json) queries only metrics
// the gateway exports (PROTOCOL §1.4): every name in its expressions is in
// a scrape after some traffic, or described by the gateway's collector
// (the cluster's, absent on one node).
func TestSection1_4_DashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("deploy/grafana/imgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	ts := newTestServer(t).node(0)
	a := ts.login(ts.register("visitor_a", 0))
	ts.login(ts.register("agent_b", 1))
	a.send(`{"cmd":11,"to":"agent_b","chatType":2,"content":"x"}`)
	a.readUntil(`"command":12`)
	resp, err := http.Get(ts.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)`).FindAllStringSubmatch(string(body), -1) {
		known[m[1]] = true
		if m[2] == "histogram" || m[2] == "summary" {
			known[m[1]+"_bucket"], known[m[1]+"_sum"], known[m[1]+"_count"] = true, true, true
		}
	}
	descs := make(chan *prometheus.Desc, 64)
	gatewayCollector{}.Describe(descs)
	close(descs)
	for d := range descs {
		if m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String()); m != nil {
			known[m[1]] = true
		}
	}
	name := regexp.MustCompile(`\b(?:imgate|go|process)_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				n++
				if !known[m] {
					t.Errorf("panel %q queries %s, which the gateway does not export", p.Title, m)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d metric names in the dashboard's queries", n)
	}
}
