package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bench median reports the middle run of each figure and every run's value.
func TestMedianOfResults(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i, rate := range []float64{300, 100, 200} {
		r := Result{Mode: "chat", AckRate: rate, Ack: Latency{P99: time.Duration(i+1) * time.Millisecond},
			WSTargets: []string{"a:1", "b:2"}, HTTPTargets: []string{"c:3", "d:" + string(rune('4'+i))}}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, r.Mode+string(rune('a'+i))+".json")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var out strings.Builder
	if err := runMedian(files, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode chat, 3 runs", "ws targets             a:1, b:2\n", "http targets           differ between runs", "200   (runs: 300, 100, 200)", "2ms   (runs: 1ms, 2ms, 3ms)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := runMedian(nil, &out); err == nil {
		t.Error("no files accepted")
	}
}

// Results of another server's protocol are summed up apart, never mixed
// with imgate's of the same mode.
func TestMedianByProto(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i, r := range []Result{
		{Mode: "chat", AckRate: 100},
		{Mode: "chat", Proto: protoCentrifugo, AckRate: 900},
		{Mode: "chat", AckRate: 300},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, string(rune('a'+i))+".json")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var out strings.Builder
	if err := runMedian(files, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode chat, 2 runs\n", "(runs: 100, 300)", "mode chat, centrifugo, 1 runs\n", "(runs: 900)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
