package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgate/imgate/codec"
)

// stats gathers a run's counters and latency histograms. Safe for
// concurrent use: counters are atomics, histograms sit under mu.
type stats struct {
	dialed, logins, closed, heartbeats atomic.Int64
	acks, offlineAcks, deliveries      atomic.Int64
	joined, drained, pulledMsgs        atomic.Int64

	mu struct {
		sync.Mutex
		ack, delivery, pull hist
		codes               map[int]int64 // error replies by status code
		closes              map[int]int64 // CLOSE frames by status code
		errs                []string
	}
	lastLogin   atomic.Int64 // unix ns of the latest login
	exportHists bool         // a child of -procs: put histograms in the result
}

func newStats(exportHists bool) *stats {
	s := &stats{exportHists: exportHists}
	s.mu.codes = map[int]int64{}
	s.mu.closes = map[int]int64{}
	return s
}

func (s *stats) loggedIn() {
	s.logins.Add(1)
	s.lastLogin.Store(time.Now().UnixNano())
}

func (s *stats) acked(d time.Duration, code codec.Code) {
	s.acks.Add(1)
	if code == codec.CodeOffline {
		s.offlineAcks.Add(1)
	}
	s.mu.Lock()
	s.mu.ack.record(d)
	s.mu.Unlock()
}

func (s *stats) pulled(d time.Duration, msgs int) {
	s.pulledMsgs.Add(int64(msgs))
	s.mu.Lock()
	s.mu.pull.record(d)
	s.mu.Unlock()
}

func (s *stats) delivered(d time.Duration) {
	s.deliveries.Add(1)
	s.mu.Lock()
	s.mu.delivery.record(d)
	s.mu.Unlock()
}

func (s *stats) replyCode(code int) {
	s.mu.Lock()
	s.mu.codes[code]++
	s.mu.Unlock()
}

func (s *stats) closeCode(code int) {
	s.mu.Lock()
	s.mu.closes[code]++
	s.mu.Unlock()
}

func (s *stats) errorf(format string, args ...any) {
	s.mu.Lock()
	if len(s.mu.errs) < 20 {
		s.mu.errs = append(s.mu.errs, fmt.Sprintf(format, args...))
	}
	s.mu.Unlock()
}

// Result is a run's outcome, printed as a table or, with -json, as JSON.
type Result struct {
	Mode        string   `json:"mode"`
	Proto       string   `json:"proto,omitempty"`        // the server's protocol when not imgate's: centrifugo
	WSTargets   []string `json:"ws_targets,omitempty"`   // -ws, in order; none in http mode
	HTTPTargets []string `json:"http_targets,omitempty"` // -http, in order
	Duration    float64  `json:"duration_s"`
	Conns       int64    `json:"connections"`
	Logins      int64    `json:"logins"`
	LoginRate   float64  `json:"logins_per_s,omitempty"`
	Acks        int64    `json:"acks"`
	AckRate     float64  `json:"acks_per_s"`
	Deliveries  int64    `json:"deliveries"`
	DelivRate   float64  `json:"deliveries_per_s"`
	Ack         Latency  `json:"ack_latency"`
	// ServerAck is the gateways' own receive → ack-written latency over
	// the measured window (their imgate_ack_latency_seconds histogram).
	ServerAck   *Latency         `json:"server_ack_latency,omitempty"`
	Delivery    Latency          `json:"delivery_latency"`
	HTTPRate    float64          `json:"http_per_s,omitempty"`
	Pulled      int64            `json:"pulled_messages,omitempty"`
	PullRate    float64          `json:"pulled_per_s,omitempty"`
	Pull        *Latency         `json:"pull_latency,omitempty"`
	RSSPerConn  float64          `json:"server_rss_bytes_per_conn,omitempty"`
	ReplyCodes  map[string]int64 `json:"error_codes,omitempty"`
	CloseCodes  map[string]int64 `json:"close_codes,omitempty"`
	Errors      []string         `json:"errors,omitempty"`
	Closed      int64            `json:"closed_connections"`
	OfflineAcks int64            `json:"offline_acks"`

	// Set only by child processes of -procs, for their parent to merge.
	AckHist      *histJSON `json:"ack_hist,omitempty"`
	DeliveryHist *histJSON `json:"delivery_hist,omitempty"`
	PullHist     *histJSON `json:"pull_hist,omitempty"`
}

// Latency is a histogram's summary.
type Latency struct {
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	N    uint64        `json:"samples"`
}

func summarize(h *hist) Latency {
	return Latency{P50: h.quantile(0.5), P99: h.quantile(0.99), P999: h.quantile(0.999), Max: h.quantile(1), N: h.n}
}

func (s *stats) result(mode string, el time.Duration) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Result{
		Mode: mode, Duration: el.Seconds(), Conns: s.dialed.Load(), Logins: s.logins.Load(),
		Acks: s.acks.Load(), Deliveries: s.deliveries.Load(), Closed: s.closed.Load(),
		OfflineAcks: s.offlineAcks.Load(),
		Ack:         summarize(&s.mu.ack), Delivery: summarize(&s.mu.delivery),
		Errors: append([]string(nil), s.mu.errs...),
	}
	r.AckRate = float64(r.Acks) / el.Seconds()
	if s.exportHists {
		r.AckHist, r.DeliveryHist, r.PullHist = s.mu.ack.export(), s.mu.delivery.export(), s.mu.pull.export()
	}
	if s.mu.pull.n > 0 {
		l := summarize(&s.mu.pull)
		r.Pull, r.Pulled = &l, s.pulledMsgs.Load()
	}
	r.DelivRate = float64(r.Deliveries) / el.Seconds()
	if len(s.mu.codes) > 0 {
		r.ReplyCodes = map[string]int64{}
		for k, v := range s.mu.codes {
			r.ReplyCodes[fmt.Sprint(k)] = v
		}
	}
	if len(s.mu.closes) > 0 {
		r.CloseCodes = map[string]int64{}
		for k, v := range s.mu.closes {
			r.CloseCodes[fmt.Sprint(k)] = v
		}
	}
	return r
}

// progress prints one line a second until done is closed.
func (s *stats) progress(w io.Writer, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastAcks, lastDel int64
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		acks, del := s.acks.Load(), s.deliveries.Load()
		s.mu.Lock()
		line := fmt.Sprintf("conns %d  logins %d  acks/s %d  deliveries/s %d  ack p50 %v p99 %v  delivery p50 %v p99 %v  errors %s",
			s.dialed.Load(), s.logins.Load(), acks-lastAcks, del-lastDel,
			s.mu.ack.quantile(0.5), s.mu.ack.quantile(0.99), s.mu.delivery.quantile(0.5), s.mu.delivery.quantile(0.99),
			codesString(s.mu.codes, s.mu.closes))
		s.mu.Unlock()
		fmt.Fprintln(w, line)
		lastAcks, lastDel = acks, del
	}
}

func codesString(codes, closes map[int]int64) string {
	var parts []string
	for k, v := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", k, v))
	}
	for k, v := range closes {
		parts = append(parts, fmt.Sprintf("close%d×%d", k, v))
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// print writes the final table, or JSON.
func (r Result) print(w io.Writer, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return
	}
	fmt.Fprintf(w, "\nmode %s, %.1f s\n", r.Mode, r.Duration)
	if r.Proto != "" {
		fmt.Fprintf(w, "  protocol        %s\n", r.Proto)
	}
	if len(r.WSTargets) > 0 {
		fmt.Fprintf(w, "  ws targets      %s\n", strings.Join(r.WSTargets, ", "))
	}
	if len(r.HTTPTargets) > 0 {
		fmt.Fprintf(w, "  http targets    %s\n", strings.Join(r.HTTPTargets, ", "))
	}
	fmt.Fprintf(w, "  connections     %d (logged in %d, closed %d)\n", r.Conns, r.Logins, r.Closed)
	if r.LoginRate > 0 {
		fmt.Fprintf(w, "  logins/s        %.0f\n", r.LoginRate)
	}
	if r.Acks > 0 {
		fmt.Fprintf(w, "  acks            %d (%.0f/s, %d offline)\n", r.Acks, r.AckRate, r.OfflineAcks)
		fmt.Fprintf(w, "  ack latency     p50 %v  p99 %v  p99.9 %v  max %v\n", r.Ack.P50, r.Ack.P99, r.Ack.P999, r.Ack.Max)
		if s := r.ServerAck; s != nil {
			fmt.Fprintf(w, "  server ack lat. p50 %v  p99 %v  p99.9 %v  (gateway: receive → ack written)\n", s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.P999.Round(time.Microsecond))
		}
	}
	if r.Deliveries > 0 {
		fmt.Fprintf(w, "  deliveries      %d (%.0f/s)\n", r.Deliveries, r.DelivRate)
		fmt.Fprintf(w, "  delivery lat.   p50 %v  p99 %v  p99.9 %v  max %v\n", r.Delivery.P50, r.Delivery.P99, r.Delivery.P999, r.Delivery.Max)
	}
	if r.Pull != nil {
		fmt.Fprintf(w, "  pulled          %d messages (%.0f/s) in %d pulls\n", r.Pulled, r.PullRate, r.Pull.N)
		fmt.Fprintf(w, "  pull latency    p50 %v  p99 %v  p99.9 %v  max %v\n", r.Pull.P50, r.Pull.P99, r.Pull.P999, r.Pull.Max)
	}
	if r.HTTPRate > 0 {
		fmt.Fprintf(w, "  requests/s      %.0f\n", r.HTTPRate)
	}
	if r.RSSPerConn > 0 {
		fmt.Fprintf(w, "  server RSS/conn %.0f bytes\n", r.RSSPerConn)
	}
	if len(r.ReplyCodes)+len(r.CloseCodes)+len(r.Errors) > 0 {
		fmt.Fprintf(w, "  ERRORS: codes %v closes %v %v\n", r.ReplyCodes, r.CloseCodes, r.Errors)
	} else {
		fmt.Fprintf(w, "  errors          none\n")
	}
}

// nil2 is where progress lines of the http mode go (stderr).
func nil2() io.Writer { return os.Stderr }
