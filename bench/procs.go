package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// nonce makes this run's user ids unique, per child process too.
func (c config) nonce() string {
	return fmt.Sprintf("%x%s", time.Now().UnixNano()&0xffffff, c.part)
}

// histJSON is a histogram as children report it to their parent: the
// non-empty buckets only.
type histJSON struct {
	Buckets map[int]uint64 `json:"buckets"`
	Max     int64          `json:"max"`
}

func (h *hist) export() *histJSON {
	out := &histJSON{Buckets: map[int]uint64{}, Max: h.max}
	for i, c := range h.counts {
		if c > 0 {
			out.Buckets[i] = c
		}
	}
	return out
}

func (h *hist) importJSON(j *histJSON) {
	if j == nil {
		return
	}
	for i, c := range j.Buckets {
		if i >= 0 && i < len(h.counts) {
			h.counts[i] += c
			h.n += c
		}
	}
	h.max = max(h.max, j.Max)
}

// runProcs spreads a mode over k child processes, each running 1/k of the
// connections, and merges their results: counts and rates add up,
// percentiles come from the merged histograms. Each process stays under
// its own open-file limit.
func runProcs(mode string, args []string, c config) (Result, error) {
	switch mode {
	case "connect", "chat", "offline", "http":
	default:
		return Result{}, fmt.Errorf("-procs does not apply to mode %s", mode)
	}
	results := make([]Result, c.procs)
	errs := make([]error, c.procs)
	// The server's RSS per connection is measured here, over all the
	// children's connections: a child sees the others' connections in the
	// server's RSS too, but only its own logins. The peak while the
	// children run is the figure with every connection up (the Go heap
	// rarely gives memory back within a run).
	var rssBefore, rssPeak atomic.Int64
	stopRSS := make(chan struct{})
	var rssWG sync.WaitGroup
	if mode == "connect" && c.serverPID > 0 {
		rssBefore.Store(rss(c.serverPID))
		rssWG.Add(1)
		go func() {
			defer rssWG.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				if v := rss(c.serverPID); v > rssPeak.Load() {
					rssPeak.Store(v)
				}
				select {
				case <-stopRSS:
					return
				case <-t.C:
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for i := 0; i < c.procs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			share := func(n int) string { return strconv.Itoa((n + c.procs - 1 - i) / c.procs) }
			child := append([]string{mode}, args...)
			child = append(child, "-procs", "1", "-json", "-part", fmt.Sprintf("p%d", i),
				"-conns", share(c.conns), "-pairs", share(c.pairs), "-concurrency", share(c.concurrency),
				"-server-pid", "0")
			if c.rate > 0 {
				child = append(child, "-rate", strconv.FormatFloat(c.rate/float64(c.procs), 'f', -1, 64))
			}
			cmd := exec.Command(os.Args[0], child...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, os.Stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
				err = nil // the child ran and reported errors in its result
			}
			if err == nil {
				err = json.Unmarshal(out.Bytes(), &results[i])
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	close(stopRSS)
	rssWG.Wait()
	for i, err := range errs {
		if err != nil {
			return Result{}, fmt.Errorf("process %d: %w", i, err)
		}
	}
	m := mergeResults(mode, results)
	if before, peak := rssBefore.Load(), rssPeak.Load(); before > 0 && peak > before && m.Logins > 0 {
		m.RSSPerConn = float64(peak-before) / float64(m.Logins)
	}
	return m, nil
}

func mergeResults(mode string, rs []Result) Result {
	m := Result{Mode: mode, ReplyCodes: map[string]int64{}, CloseCodes: map[string]int64{}}
	var ack, del, pull hist
	for _, r := range rs {
		m.Duration = max(m.Duration, r.Duration)
		m.Conns += r.Conns
		m.Logins += r.Logins
		m.LoginRate += r.LoginRate
		m.Acks += r.Acks
		m.AckRate += r.AckRate
		m.Deliveries += r.Deliveries
		m.DelivRate += r.DelivRate
		m.HTTPRate += r.HTTPRate
		m.Pulled += r.Pulled
		m.PullRate += r.PullRate
		m.Closed += r.Closed
		m.OfflineAcks += r.OfflineAcks
		m.Errors = append(m.Errors, r.Errors...)
		for k, v := range r.ReplyCodes {
			m.ReplyCodes[k] += v
		}
		for k, v := range r.CloseCodes {
			m.CloseCodes[k] += v
		}
		ack.importJSON(r.AckHist)
		del.importJSON(r.DeliveryHist)
		pull.importJSON(r.PullHist)
	}
	m.Ack, m.Delivery = summarize(&ack), summarize(&del)
	if pull.n > 0 {
		l := summarize(&pull)
		m.Pull = &l
	}
	if len(m.ReplyCodes) == 0 {
		m.ReplyCodes = nil
	}
	if len(m.CloseCodes) == 0 {
		m.CloseCodes = nil
	}
	return m
}
