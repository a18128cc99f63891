// Package logtest checks lines written by log/slog's JSON handler in tests:
// that a line is one JSON object with one "msg" and no key twice, which
// decoding it into a map would not show (the last duplicate wins there).
package logtest

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

// OneMessage fails tb unless line (one line of slog's JSON handler, the
// trailing newline allowed) is a JSON object whose raw bytes hold exactly
// one `"msg":` and whose top-level keys are all distinct. It returns the
// decoded object for further checks.
func OneMessage(tb testing.TB, line []byte) map[string]any {
	tb.Helper()
	if n := bytes.Count(line, []byte(`"msg":`)); n != 1 {
		tb.Fatalf("%d \"msg\" keys, want 1: %s", n, line)
	}
	if dup := duplicateKey(line); dup != "" {
		tb.Fatalf("key %q twice: %s", dup, line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		tb.Fatalf("not JSON: %v: %s", err, line)
	}
	return m
}

// duplicateKey returns the first top-level key of the JSON object b that
// occurs twice, or "" if none does (or b is not an object: Unmarshal then
// says why).
func duplicateKey(b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		k, _ := t.(string)
		if seen[k] {
			return k
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil && err != io.EOF {
			return ""
		}
	}
	return ""
}

// LibraryLine fails tb unless line is OneMessage's with msg as its
// message, written at level under main's component by a library's log
// adapter: library names it, and fatal says whether it carries fatal=true
// (a library's Fatalf).
func LibraryLine(tb testing.TB, line []byte, msg, library, component, level string, fatal bool) {
	tb.Helper()
	m := OneMessage(tb, line)
	if m["msg"] != msg || m["library"] != library || m["component"] != component || m["level"] != level {
		tb.Fatalf("line %s, want msg %q library %s component %s level %s", line, msg, library, component, level)
	}
	if _, ok := m["fatal"]; ok != fatal {
		tb.Fatalf("fatal attribute %v, want %v: %s", ok, fatal, line)
	}
}
