package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
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
	var wg sync.WaitGroup
	for i := 0; i < c.procs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			share := func(n int) string { return strconv.Itoa((n + c.procs - 1 - i) / c.procs) }
			child := append([]string{mode}, args...)
			child = append(child, "-procs", "1", "-json", "-part", fmt.Sprintf("p%d", i),
				"-conns", share(c.conns), "-pairs", share(c.pairs), "-concurrency", share(c.concurrency))
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
	for i, err := range errs {
		if err != nil {
			return Result{}, fmt.Errorf("process %d: %w", i, err)
		}
	}
	return mergeResults(mode, results), nil
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
		m.RSSPerConn = max(m.RSSPerConn, r.RSSPerConn)
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
