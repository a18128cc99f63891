package httpapi

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/imgate/imgate/internal/logtest"
)

// TestFasthttpLogger_OneMessagePerLine: a line fasthttp logs through the
// adapter, written by slog's JSON handler under main's component
// attribute, is one JSON object with a single "msg" (fasthttp's text) and
// the library named.
func TestFasthttpLogger_OneMessagePerLine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fasthttpLogger{log.With("component", "httpapi")}.Printf("error when serving connection %q<->%q: %v", "127.0.0.1:8082", "127.0.0.1:5555", "EOF")
	logtest.LibraryLine(t, buf.Bytes(), `error when serving connection "127.0.0.1:8082"<->"127.0.0.1:5555": EOF`, "fasthttp", "httpapi", "DEBUG", false)
}
