package main

import (
	"bytes"
	"flag"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imgate/imgate/internal/logtest"
)

// envInUsage is how a flag's usage names its environment variable.
var envInUsage = regexp.MustCompile(`\(env (IMGATE_[A-Z0-9_]+)\)$`)

// TestFlags_UsageNamesEachEnvVarThatWorks: -h lists every flag's IMGATE_*
// variable, and the variable each usage names sets that flag: it gives the
// config the same flag given on the command line gives.
func TestFlags_UsageNamesEachEnvVarThatWorks(t *testing.T) {
	noEnv := func(string) string { return "" }
	def, err := parseFlags(nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var c config
	fs, err := flagSet(&c, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.PrintDefaults()
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		m := envInUsage.FindStringSubmatch(f.Usage)
		if m == nil {
			t.Errorf("-%s: usage %q names no IMGATE_* variable", f.Name, f.Usage)
			return
		}
		env := m[1]
		if !strings.Contains(help.String(), "(env "+env+")") {
			t.Errorf("-%s: -h does not list %s", f.Name, env)
		}
		v := otherValue(t, f)
		fromEnv, err := parseFlags(nil, func(k string) string {
			if k == env {
				return v
			}
			return ""
		})
		if err != nil {
			t.Errorf("%s=%s: %v", env, v, err)
			return
		}
		fromFlag, err := parseFlags([]string{"-" + f.Name + "=" + v}, noEnv)
		if err != nil {
			t.Errorf("-%s=%s: %v", f.Name, v, err)
			return
		}
		if reflect.DeepEqual(fromEnv, def) || !reflect.DeepEqual(fromEnv, fromFlag) {
			t.Errorf("%s=%s did not set -%s:\nenv  %+v\nflag %+v", env, v, f.Name, fromEnv, fromFlag)
		}
	})
	if n < 25 {
		t.Fatalf("%d flags", n)
	}
	for name, env := range map[string]string{"ws-addr": "IMGATE_WS_ADDR", "max-conns-per-user": "IMGATE_MAX_CONNS_PER_USER", "log-format": "IMGATE_LOG_FORMAT"} {
		if f := fs.Lookup(name); f == nil || !strings.HasSuffix(f.Usage, " (env "+env+")") {
			t.Errorf("-%s does not name %s: %+v", name, env, f)
		}
	}
}

// otherValue returns a valid value of flag f other than its default.
func otherValue(t *testing.T, f *flag.Flag) string {
	t.Helper()
	switch d := f.Value.(flag.Getter).Get().(type) {
	case bool:
		if d {
			return "false"
		}
		return "true"
	case time.Duration:
		return (d + 17*time.Second).String()
	case int, int64:
		return "17"
	case string:
		return d + "x"
	default:
		t.Fatalf("-%s: no test value for a %T", f.Name, d)
		return ""
	}
}

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

// The command line wins over the environment (README "Flags"): a flag
// given on it is not read from its variable, so a bad value there does
// not stop the start.
func TestFlags_CommandLineWinsOverABadEnvVar(t *testing.T) {
	env := func(k string) string {
		if k == "IMGATE_RATE_LIMIT" {
			return "abc"
		}
		return ""
	}
	c, err := parseFlags([]string{"-rate-limit", "5"}, env)
	if err != nil || c.RateLimit != 5 {
		t.Fatalf("-rate-limit 5 with IMGATE_RATE_LIMIT=abc: %+v, %v", c.RateLimit, err)
	}
	if _, err := parseFlags(nil, env); err == nil || !strings.Contains(err.Error(), "IMGATE_RATE_LIMIT") {
		t.Fatalf("IMGATE_RATE_LIMIT=abc alone: %v, want an error naming it", err)
	}
}

// TestFlags_Procs: the gateway runs on the CPUs plus spareProcs Go
// processors unless -procs (IMGATE_PROCS), Go's own GOMAXPROCS or a
// container's CPU limit says otherwise; a negative -procs is refused.
func TestFlags_Procs(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name    string
		flag    int
		env     func(string) string
		current int // the runtime's GOMAXPROCS at start
		cpus    int // runtime.NumCPU
		want    int
	}{
		{"default", 0, env(), 2, 2, 2 + spareProcs},
		{"machine of one CPU", 0, env(), 1, 1, 1 + spareProcs},
		{"CPU limit below the CPUs", 0, env(), 2, 8, 2},
		{"GOMAXPROCS set", 0, env("GOMAXPROCS", "3"), 3, 2, 3},
		{"GOMAXPROCS=0, which Go ignores", 0, env("GOMAXPROCS", "0"), 2, 2, 2 + spareProcs},
		{"GOMAXPROCS=abc, which Go ignores", 0, env("GOMAXPROCS", "abc"), 2, 2, 2 + spareProcs},
		{"CPU limit rounded up to the CPUs", 0, env(), 2, 2, 2 + spareProcs},
		{"-procs wins", 5, env("GOMAXPROCS", "3"), 3, 2, 5},
		{"-procs wins over a CPU limit", 4, env(), 2, 8, 4},
	} {
		if got := procs(tc.flag, tc.env, tc.current, tc.cpus); got != tc.want {
			t.Errorf("%s: %d processors, want %d", tc.name, got, tc.want)
		}
	}
	c, err := parseFlags(nil, env("IMGATE_PROCS", "12"))
	if err != nil || c.Procs != 12 {
		t.Fatalf("IMGATE_PROCS=12: procs %d, %v", c.Procs, err)
	}
	for _, bad := range [][]string{{"-procs", "-1"}, {"-procs", "1025"}, {"-procs", "4294967295"}} {
		if _, err := parseFlags(bad, env()); err == nil || !strings.Contains(err.Error(), "-procs "+bad[1]) {
			t.Errorf("%v: %v, want a refusal naming -procs", bad, err)
		}
	}
	if _, err := parseFlags(nil, env("IMGATE_PROCS", "-2")); err == nil {
		t.Error("IMGATE_PROCS=-2 accepted")
	}
}
