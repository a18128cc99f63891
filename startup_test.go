package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgate/imgate/internal/logtest"
	"github.com/imgate/imgate/storage/pebble"
)

// runImgate runs the built gateway with args and env added to this
// process's environment, waits for it to exit and returns its stderr and
// exit code.
func runImgate(t *testing.T, env []string, args ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitBound())
	defer cancel()
	cmd := exec.CommandContext(ctx, imgateBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stderr = &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("imgate %s: %v\n%s", strings.Join(args, " "), err, out.String())
	return "", 0
}

// TestStart_PebbleOpenFailureIsAnError: when the Pebble store does not
// open (here -data is a file) start returns the error; its cleanup does
// not take the failed Open's nil DB for a store to close.
func TestStart_PebbleOpenFailureIsAnError(t *testing.T) {
	pebbleOnly(t)
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := start(config{WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: file}, slog.New(slog.DiscardHandler))
	if err == nil {
		s.stop(context.Background())
		t.Fatal("started on a file as its data directory")
	}
	if !strings.Contains(err.Error(), "storage: open "+file) {
		t.Fatalf("start: %v", err)
	}
}

// TestProcess_LockedDataDirExitsNamingTheHolder: a gateway started on a
// data directory another process holds (this test's) exits 1, and its
// "start failed" line, in either log format, says the directory is held
// by that process and names the lock file.
func TestProcess_LockedDataDirExitsNamingTheHolder(t *testing.T) {
	pebbleOnly(t)
	dir := t.TempDir()
	db, err := pebble.Open(dir, pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := []string{
		"storage: open " + dir + ": ",
		fmt.Sprintf("held by another process (pid %d", os.Getpid()),
		"lock file " + filepath.Join(dir, "LOCK"),
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			out, code := runImgate(t, nil, "-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-data", dir, "-log-format", format)
			if code != 1 {
				t.Fatalf("exit code %d, want 1\n%s", code, out)
			}
			line := strings.TrimSpace(out)
			if i := strings.LastIndexByte(line, '\n'); i >= 0 {
				line = line[i+1:]
			}
			msg := line
			if format == "json" {
				m := logtest.OneMessage(t, []byte(line))
				if m["msg"] != "start failed" || m["level"] != "ERROR" {
					t.Fatalf("last line %s", line)
				}
				msg, _ = m["err"].(string)
			} else if !strings.Contains(line, `level=ERROR msg="start failed" err=`) {
				t.Fatalf("last line %s", line)
			}
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("start failed line does not say %q:\n%s", w, line)
				}
			}
			t.Logf("%s", line)
		})
	}
}

// TestProcess_UnknownLogFormatRefused: -log-format (or IMGATE_LOG_FORMAT)
// other than text or json stops the gateway before it starts, exit 2,
// saying what is accepted.
func TestProcess_UnknownLogFormatRefused(t *testing.T) {
	const want = `imgate: log format "xml": want text or json`
	for name, run := range map[string][]string{"flag": {"-log-format", "xml"}, "env": nil} {
		t.Run(name, func(t *testing.T) {
			var env []string
			if run == nil {
				env = []string{"IMGATE_LOG_FORMAT=xml"}
			}
			out, code := runImgate(t, env, append(run, "-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-data", t.TempDir())...)
			if code != 2 || strings.TrimSpace(out) != want {
				t.Fatalf("exit code %d, stderr %q; want 2, %q", code, out, want)
			}
		})
	}
}

// TestProcess_HelpListsEnvVars: imgate -h shows each flag's variable.
func TestProcess_HelpListsEnvVars(t *testing.T) {
	out, code := runImgate(t, nil, "-h")
	if code != 0 {
		t.Fatalf("-h: exit code %d\n%s", code, out)
	}
	for _, w := range []string{"-ws-addr string\n", "(env IMGATE_WS_ADDR)", "(env IMGATE_LOG_FORMAT)", "(env IMGATE_MAX_CONNS_PER_USER)", "(env IMGATE_INSECURE_HTTP)"} {
		if !strings.Contains(out, w) {
			t.Errorf("-h does not show %q:\n%s", w, out)
		}
	}
}
