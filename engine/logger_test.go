package engine

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/imgate/imgate/internal/logtest"
)

// TestGnetLogger_OneMessagePerLine: a line gnet logs through the adapter,
// written by slog's JSON handler under main's component attribute, is one
// JSON object with a single "msg" (gnet's text) and the library named.
func TestGnetLogger_OneMessagePerLine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		logf  func(gnetLogger, string, ...any)
		level string
	}{
		{"debugf", gnetLogger.Debugf, "DEBUG"},
		{"infof", gnetLogger.Infof, "DEBUG"},
		{"warnf", gnetLogger.Warnf, "WARN"},
		{"errorf", gnetLogger.Errorf, "ERROR"},
		{"fatalf", gnetLogger.Fatalf, "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tc.logf(gnetLogger{log.With("component", "engine")}, "event-loop %d exits: %s", 3, "closed")
			logtest.LibraryLine(t, buf.Bytes(), "event-loop 3 exits: closed", "gnet", "engine", tc.level, tc.name == "fatalf")
		})
	}
}
