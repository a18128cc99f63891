package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// runMedian reads results written with -json (one file each) and prints,
// per mode (and server protocol), the median of every figure and the runs
// it came from: the form BENCHMARKS.md reports. Latencies are medians of
// the runs' percentiles, not percentiles of merged runs.
func runMedian(files []string, out io.Writer) error {
	if len(files) == 0 {
		return fmt.Errorf("median: no result files (bench median run1.json run2.json …)")
	}
	byMode := map[string][]Result{}
	var modes []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		key := r.Mode
		if r.Proto != "" {
			key += ", " + r.Proto
		}
		if _, ok := byMode[key]; !ok {
			modes = append(modes, key)
		}
		byMode[key] = append(byMode[key], r)
	}
	for _, m := range modes {
		rs := byMode[m]
		fmt.Fprintf(out, "mode %s, %d runs\n", m, len(rs))
		targets := func(name string, f func(Result) []string) {
			first := f(rs[0])
			for _, r := range rs[1:] {
				if !slices.Equal(f(r), first) {
					fmt.Fprintf(out, "  %-22s differ between runs: see the JSON files\n", name)
					return
				}
			}
			if len(first) > 0 {
				fmt.Fprintf(out, "  %-22s %s\n", name, strings.Join(first, ", "))
			}
		}
		targets("ws targets", func(r Result) []string { return r.WSTargets })
		targets("http targets", func(r Result) []string { return r.HTTPTargets })
		rate := func(name string, f func(Result) float64) {
			if f(rs[0]) == 0 {
				return
			}
			med, runs := medianOf(rs, f, func(v float64) string { return fmt.Sprintf("%.0f", v) })
			fmt.Fprintf(out, "  %-22s %12.0f   (runs: %s)\n", name, med, runs)
		}
		lat := func(name string, f func(Result) time.Duration) {
			if f(rs[0]) == 0 {
				return
			}
			med, runs := medianOf(rs, func(r Result) float64 { return float64(f(r)) }, func(v float64) string {
				return time.Duration(v).Round(10 * time.Microsecond).String()
			})
			fmt.Fprintf(out, "  %-22s %12v   (runs: %s)\n", name, time.Duration(med).Round(10*time.Microsecond), runs)
		}
		rate("logins/s", func(r Result) float64 { return r.LoginRate })
		rate("server RSS B/conn", func(r Result) float64 { return r.RSSPerConn })
		if rs[0].HTTPRate == 0 { // an http run's acks are its requests
			rate("acks/s", func(r Result) float64 { return r.AckRate })
		}
		rate("deliveries/s", func(r Result) float64 { return r.DelivRate })
		rate("requests/s", func(r Result) float64 { return r.HTTPRate })
		rate("pulled msgs/s", func(r Result) float64 { return r.PullRate })
		lat("ack p50", func(r Result) time.Duration { return r.Ack.P50 })
		lat("ack p99", func(r Result) time.Duration { return r.Ack.P99 })
		lat("server ack p50", func(r Result) time.Duration { return serverAck(r).P50 })
		lat("server ack p99", func(r Result) time.Duration { return serverAck(r).P99 })
		lat("delivery p50", func(r Result) time.Duration { return r.Delivery.P50 })
		lat("delivery p99", func(r Result) time.Duration { return r.Delivery.P99 })
		errs := 0
		for _, r := range rs {
			errs += len(r.ReplyCodes) + len(r.CloseCodes) + len(r.Errors)
		}
		if errs > 0 {
			fmt.Fprintf(out, "  ERRORS in %d results: see the JSON files\n", errs)
		}
	}
	return nil
}

// medianOf returns the median of f over rs (the lower middle of an even
// count) and the values in run order.
func medianOf(rs []Result, f func(Result) float64, format func(float64) string) (float64, string) {
	vals := make([]float64, len(rs))
	runs := make([]string, len(rs))
	for i, r := range rs {
		vals[i] = f(r)
		runs[i] = format(vals[i])
	}
	sorted := slices.Clone(vals)
	slices.Sort(sorted)
	return sorted[(len(sorted)-1)/2], strings.Join(runs, ", ")
}

// serverAck is r's server-side ack latency, zero when not measured.
func serverAck(r Result) Latency {
	if r.ServerAck == nil {
		return Latency{}
	}
	return *r.ServerAck
}
