package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

var (
	binOnce sync.Once
	binDir  string // removed by removeBinary when the run ends
	binPath string
	binErr  error
)

// imgateBinary builds the real imgate command once per test run (with -race
// when the tests run with it, so the build reuses the test's cache); every
// test of the run shares it, and TestMain removes it at the end.
func imgateBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imgate-bin")
		if err != nil {
			binErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "imgate")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// removeBinary deletes the directory imgateBinary built into, if it did.
// It runs once all tests are done (no process of the binary is left: each
// test kills its own in a cleanup).
func removeBinary() error {
	if binDir == "" {
		return nil
	}
	return os.RemoveAll(binDir)
}

// proc is the real gateway running as a child process.
type proc struct {
	t       testing.TB
	cmd     *exec.Cmd
	ws      string
	http    string
	logMu   sync.Mutex
	log     strings.Builder
	exited  chan struct{}
	exitErr error
}

var listenRE = regexp.MustCompile(`msg=listening proto=(\w+) addr=(\S+)`)

// startProc runs the binary on dataDir with loopback ports and waits for
// both listeners to be announced in the log.
func startProc(t testing.TB, dataDir string, extra ...string) *proc {
	t.Helper()
	// Debug logs name every connection closed and why: printed when the
	// test fails.
	args := append([]string{"-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-data", dataDir, "-log-level", "debug"}, storeArgs(t, dataDir)...)
	args = append(args, extra...)
	p := &proc{t: t, cmd: exec.Command(imgateBinary(t), args...), exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 2)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logMu.Lock()
			p.log.WriteString(line + "\n")
			p.logMu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("imgate %s log:\n%s", dataDir, p.logText())
		}
	})
	for i := 0; i < 2; i++ {
		select {
		case a := <-addrs:
			if a[0] == "websocket" {
				p.ws = a[1]
			} else {
				p.http = "http://" + a[1]
			}
		case <-p.exited:
			t.Fatalf("imgate exited: %v\n%s", p.exitErr, p.logText())
		case <-time.After(2 * waitBound()):
			t.Fatalf("imgate did not announce its listeners\n%s", p.logText())
		}
	}
	return p
}

func (p *proc) logText() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// testServer returns a view of the process usable by the test helpers.
func (p *proc) testServer() *testServer {
	return &testServer{t: p.t, ws: p.ws, http: p.http, clock: newClock()}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(2 * waitBound()):
		p.t.Fatalf("imgate did not exit\n%s", p.logText())
	}
	if p.exitErr == nil {
		return 0
	}
	if ee, ok := p.exitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.exitErr)
	return -1
}

// PROTOCOL §2 and the shutdown rule: SIGTERM sends CLOSE 1001 to
// every client, flushes and closes the store and exits 0; what was
// registered is there after a restart.
func TestProcess_SigtermClosesClientsAndExitsZero(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	ts := p.testServer()
	tok := ts.register("agent_1", 1)
	c1, c2 := ts.login(tok), ts.login(tok)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c1.expectClose(websocket.CloseGoingAway)
	c2.expectClose(websocket.CloseGoingAway)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.logText())
	}
	if log := p.logText(); !strings.Contains(log, "msg=stopped") {
		t.Fatalf("no clean stop in log:\n%s", log)
	}

	p2 := startProc(t, dir)
	p2.testServer().login(tok)
}

// PROTOCOL §1.1: a registration that was answered survives kill -9: the
// token is synced before the reply.
func TestProcess_RegistrationSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	ts := p.testServer()
	var toks []string
	for i := 0; i < 20; i++ {
		toks = append(toks, ts.register(fmt.Sprintf("visitor_%d", i), 0))
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()

	ts2 := startProc(t, dir).testServer()
	for i, tok := range toks {
		c := ts2.dial(tok)
		want := fmt.Sprintf(`{"code":10007,"command":6,"data":{"avatar":"","id":"visitor_%d","nick":"","sign":"","terminal":"","type":0},"msg":"ok 登录成功!"}`, i)
		c.expectLogin(want)
	}
}

// Flags have IMGATE_* environment fallbacks; the command line wins.
func TestFlags_EnvironmentFallback(t *testing.T) {
	env := map[string]string{
		"IMGATE_WS_ADDR":          "127.0.0.1:9999",
		"IMGATE_IDLE_TIMEOUT":     "5s",
		"IMGATE_MAX_MESSAGE_SIZE": "2048",
		"IMGATE_API_KEY":          "k",
		"IMGATE_INSECURE_HTTP":    "true",
	}
	cfg, err := parseFlags([]string{"-idle-timeout", "7s"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WSAddr != "127.0.0.1:9999" || cfg.IdleTimeout != 7*time.Second || cfg.MaxMessageSize != 2048 || cfg.APIKey != "k" || !cfg.InsecureHTTP {
		t.Fatalf("cfg %+v", cfg)
	}
	def, err := parseFlags(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if def.WSAddr != ":8889" || def.HTTPAddr != "127.0.0.1:8082" || def.DataDir != "./data" ||
		def.IdleTimeout != 90*time.Second || def.PingInterval != 30*time.Second ||
		def.MaxMessageSize != 64<<10 || def.TokenTTL != 168*time.Hour || def.LogLevel != "info" ||
		def.AllowOrigin != "" || def.InsecureHTTP {
		t.Fatalf("defaults %+v", def)
	}
	if _, err := parseFlags(nil, func(k string) string {
		if k == "IMGATE_IDLE_TIMEOUT" {
			return "soon"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "IMGATE_IDLE_TIMEOUT") {
		t.Fatalf("bad env value: err %v", err)
	}
}

// PROTOCOL §1.1 end to end: a generated token logs in over WebSocket, and
// an in-process restart keeps users and tokens.
func TestSection1_1_GeneratedTokenLogsIn(t *testing.T) {
	ts := newTestServer(t)
	tok := ts.register("consultant_9", 2)
	ts.login(tok)
	ts.restart()
	c := ts.dial(tok)
	c.expectLogin(`{"code":10007,"command":6,"data":{"avatar":"","id":"consultant_9","nick":"","sign":"","terminal":"","type":2},"msg":"ok 登录成功!"}`)
}

// TestProcess_ProcessorsBeyondTheCPUs: the gateway runs with spareProcs Go
// processors beyond its CPUs by default (so that an event loop never waits
// for one behind a compaction), unless a CPU limit lowered Go's default,
// and with -procs when given.
func TestProcess_ProcessorsBeyondTheCPUs(t *testing.T) {
	// The child's own default decides, not this process's (go test -cpu
	// sets ours): no GOMAXPROCS or IMGATE_PROCS reaches it.
	t.Setenv("GOMAXPROCS", "")
	t.Setenv("IMGATE_PROCS", "")
	re := regexp.MustCompile(`msg=processors gomaxprocs=(\d+) cpus=(\d+) go_default=(\d+)`)
	for _, tc := range []struct {
		args []string
		want func(cpus, goDefault int) int
	}{
		{nil, func(cpus, goDefault int) int {
			if goDefault < cpus {
				return goDefault // a CPU limit set it
			}
			return cpus + spareProcs
		}},
		{[]string{"-procs", "3"}, func(int, int) int { return 3 }},
	} {
		p := startProc(t, t.TempDir(), tc.args...)
		m := re.FindStringSubmatch(p.logText())
		if m == nil {
			t.Fatalf("%v: no processors line in the log:\n%s", tc.args, p.logText())
		}
		got, _ := strconv.Atoi(m[1])
		cpus, _ := strconv.Atoi(m[2])
		goDefault, _ := strconv.Atoi(m[3])
		if cpus < 1 || goDefault < 1 || goDefault > cpus {
			t.Fatalf("%v: %s: cpus or Go's default out of range", tc.args, m[0])
		}
		if want := tc.want(cpus, goDefault); got != want {
			t.Errorf("%v: %s, want gomaxprocs=%d", tc.args, m[0], want)
		}
	}
}
