package pebble

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/imgate/imgate/internal/logtest"
)

// TestPebbleLogger_OneMessagePerLine: a line Pebble logs through the
// adapter, written by slog's JSON handler under main's component
// attribute, is one JSON object with a single "msg" (Pebble's text) and
// the library named.
func TestPebbleLogger_OneMessagePerLine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		logf  func(pebbleLogger, string, ...any)
		level string
	}{
		{"infof", pebbleLogger.Infof, "DEBUG"},
		{"errorf", pebbleLogger.Errorf, "ERROR"},
		{"fatalf", pebbleLogger.Fatalf, "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			func() {
				defer func() {
					// Fatalf panics after its line, as Pebble expects.
					if r := recover(); (r != nil) != (tc.name == "fatalf") {
						t.Fatalf("panic %v", r)
					}
				}()
				tc.logf(pebbleLogger{log.With("component", "storage")}, "[JOB %d] compacted %s", 7, "L0 -> L6")
			}()
			m := logtest.OneMessage(t, buf.Bytes())
			if m["msg"] != "[JOB 7] compacted L0 -> L6" || m["library"] != "pebble" || m["component"] != "storage" || m["level"] != tc.level {
				t.Fatalf("line %s", buf.Bytes())
			}
			if _, fatal := m["fatal"]; fatal != (tc.name == "fatalf") {
				t.Fatalf("fatal attribute wrong: %s", buf.Bytes())
			}
		})
	}
}
