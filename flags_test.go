package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/imgate/imgate/internal/logtest"
)

// TestFlags_LogFormat: -log-format (IMGATE_LOG_FORMAT) is text by default
// or json, both honouring -log-level; anything else is refused with an
// error that says what is accepted.
func TestFlags_LogFormat(t *testing.T) {
	def, err := parseFlags(nil, func(string) string { return "" })
	if err != nil || def.LogFormat != "text" {
		t.Fatalf("default -log-format %q, %v", def.LogFormat, err)
	}

	var buf bytes.Buffer
	log, err := newLogger(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("below the level")
	log.With("component", "engine").Warn("slow consumer closed", "conn_id", 7)
	m := logtest.OneMessage(t, buf.Bytes())
	if m["msg"] != "slow consumer closed" || m["level"] != "WARN" || m["component"] != "engine" || m["conn_id"] != float64(7) {
		t.Fatalf("json line %s", buf.Bytes())
	}

	buf.Reset()
	if log, err = newLogger(&buf, "debug", "text"); err != nil {
		t.Fatal(err)
	}
	log.Debug("listening", "proto", "http")
	if line := buf.String(); !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=DEBUG msg=listening proto=http\n") {
		t.Fatalf("text line %q", line)
	}

	for _, bad := range []string{"xml", "JSONL", ""} {
		if _, err := newLogger(&buf, "info", bad); err == nil || !strings.Contains(err.Error(), `log format "`+bad+`"`) || !strings.Contains(err.Error(), "text or json") {
			t.Errorf("-log-format %q: %v", bad, err)
		}
	}
	if _, err := newLogger(&buf, "loud", "json"); err == nil || !strings.Contains(err.Error(), `log level "loud"`) {
		t.Errorf("-log-level loud with json: %v", err)
	}
}
