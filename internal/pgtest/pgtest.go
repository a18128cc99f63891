// Package pgtest starts throwaway PostgreSQL servers for tests: initdb and
// pg_ctl in a temporary directory, listening on a free loopback port, run
// as the postgres OS user when the tests run as root, removed afterwards.
//
// Where PostgreSQL is not installed the tests that need it are skipped
// with one line saying how to run them; with IMGATE_REQUIRE_POSTGRES=1
// (set by .ci/run) they fail instead.
//
// A test binary shares one server (Shared) and gives each test a database
// of its own (Server.Database). Its TestMain calls Main so the server is
// stopped when the tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv names the variable that turns a missing PostgreSQL into a
// failure.
const RequireEnv = "IMGATE_REQUIRE_POSTGRES"

// Server is one running throwaway PostgreSQL.
type Server struct {
	dir  string // the data directory's parent: data/, socket, log
	port int
	cred *syscall.Credential // nil: run as ourselves
	bin  string              // directory of initdb, pg_ctl
	dbs  atomic.Int64
}

var (
	sharedMu  sync.Mutex
	shared    *Server
	sharedErr error
)

// Main runs the tests and stops the shared server, if one was started.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared server, if one was started: for a TestMain
// that does more than Main.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Stop()
		shared = nil
	}
}

// Shared returns the test binary's server, starting it on first use. It
// skips t (or fails it under RequireEnv) when PostgreSQL is not installed.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = Start()
	}
	if sharedErr != nil {
		unavailable(t, sharedErr)
	}
	return shared
}

// Database creates an empty database for t on the shared server and
// returns its URL; it is dropped when t ends.
func Database(t testing.TB) string {
	t.Helper()
	return Shared(t).Database(t)
}

// errMissing says PostgreSQL's programs were not found.
var errMissing = errors.New("pgtest: PostgreSQL not installed")

func unavailable(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errMissing) && os.Getenv(RequireEnv) == "" {
		t.Skipf("PostgreSQL tests skipped: %v (install the Debian package postgresql, or set %s=1 to make this a failure)", err, RequireEnv)
	}
	t.Fatalf("PostgreSQL test server: %v", err)
}

// binDir finds the directory of initdb: PATH, then Debian's versioned
// directories, newest first.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	if len(dirs) == 0 {
		return "", fmt.Errorf("%w: no initdb in PATH or /usr/lib/postgresql/*/bin", errMissing)
	}
	return filepath.Dir(dirs[0]), nil
}

func version(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// Start starts a server of its own; Stop removes it.
func Start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	reapOrphans(bin)
	s := &Server{bin: bin}
	s.dir, err = os.MkdirTemp("", "imgate-pg-")
	if err != nil {
		return nil, err
	}
	// The test process that owns the server: a later run stops the server
	// of one that was killed before it could (reapOrphans).
	if err := os.WriteFile(filepath.Join(s.dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		s.remove()
		return nil, err
	}
	if os.Geteuid() == 0 {
		// initdb refuses root: run the server as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			s.remove()
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			s.remove()
			return nil, err
		}
	}
	data := filepath.Join(s.dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		s.remove()
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	// A free port can be taken between our probe and the server's bind:
	// try a few.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			s.remove()
			return nil, err
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c max_connections=300 -c fsync=on -c synchronous_commit=on", s.port, s.dir)
		out, err := s.run("pg_ctl", "-D", data, "-l", filepath.Join(s.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			return s, nil
		}
		if attempt == 4 {
			logText, _ := os.ReadFile(filepath.Join(s.dir, "log"))
			s.remove()
			return nil, fmt.Errorf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, logText)
		}
	}
}

// reapOrphans stops and removes the servers of test processes that died
// without stopping them (killed, or stopped in a debugger and abandoned).
func reapOrphans(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "imgate-pg-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // not ours, or still being created
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its owner lives
		}
		o := &Server{dir: dir, bin: bin}
		if fi, err := os.Stat(filepath.Join(dir, "data")); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && st.Uid != 0 {
				o.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
			}
		}
		o.Stop()
	}
}

func (s *Server) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL is the URL of database name on s.
func (s *Server) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, name)
}

// Database creates an empty database for t and returns its URL; it is
// dropped when t ends.
func (s *Server) Database(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbs.Add(1))
	if err := s.exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if err := s.exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

// exec runs one statement on the postgres database.
func (s *Server) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	if out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: pg_ctl stop: %v\n%s\n", err, out)
	}
	s.remove()
}

func (s *Server) remove() { _ = os.RemoveAll(s.dir) }
