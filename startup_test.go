package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
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
