package pebble

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
			logtest.LibraryLine(t, buf.Bytes(), "[JOB 7] compacted L0 -> L6", "pebble", "storage", tc.level, tc.name == "fatalf")
		})
	}
}

// TestOpen_LockedByAnotherProcessSaysSo: Open of a data directory another
// process holds (here a child running TestHelperHoldsDataDir) fails saying
// so, naming the directory, its lock file and the holder, with Pebble's
// error still wrapped; once the holder is gone the directory opens.
func TestOpen_LockedByAnotherProcessSaysSo(t *testing.T) {
	dir := t.TempDir()
	pid, release := holdDataDir(t, dir)
	_, err := Open(dir, Options{})
	if err == nil {
		t.Fatal("opened a data directory another process holds")
	}
	t.Logf("open: %v", err)
	for _, want := range []string{
		"storage: open " + dir + ": ",
		"held by another process",
		fmt.Sprintf("pid %d", pid),
		"lock file " + filepath.Join(dir, "LOCK"),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
		t.Errorf("error %q does not wrap the lock's EAGAIN (or EACCES)", err)
	}
	release()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open after the holder exited: %v", err)
	}
	db.Close()
}

// TestOpen_TwiceInOneProcessFails: a second Open of a directory this
// process holds fails (Pebble's own in-process check, before the file
// lock) and does not blame another process.
func TestOpen_TwiceInOneProcessFails(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Open(dir, Options{})
	if err == nil {
		t.Fatal("opened one directory twice")
	}
	t.Logf("second open: %v", err)
	if !strings.Contains(err.Error(), "storage: open "+dir+": ") || strings.Contains(err.Error(), "another process") {
		t.Fatalf("second open: %v", err)
	}
}

// holdDirEnv names the directory TestHelperHoldsDataDir holds.
const holdDirEnv = "IMGATE_TEST_HOLD_DATA_DIR"

// holdDataDir runs this test binary as another process that opens dir and
// holds it until release is called (or the test ends); it returns that
// process's pid once the directory is open.
func holdDataDir(t *testing.T, dir string) (pid int, release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldsDataDir$", "-test.count=1")
	cmd.Env = append(os.Environ(), holdDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Errorf("holder: %v", err)
			}
		})
	}
	t.Cleanup(release)
	held := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "held" {
				held <- true
				break
			}
		}
		close(held)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case ok := <-held:
		if !ok {
			t.Fatal("the holder exited before opening the directory")
		}
	case <-time.After(time.Minute):
		t.Fatal("the holder did not open the directory within a minute")
	}
	return cmd.Process.Pid, release
}

// TestHelperHoldsDataDir is the other process of holdDataDir: it opens the
// directory holdDirEnv names, says "held" and keeps it until stdin closes.
func TestHelperHoldsDataDir(t *testing.T) {
	dir := os.Getenv(holdDirEnv)
	if dir == "" {
		t.Skip("the data directory holder of TestOpen_LockedByAnotherProcessSaysSo")
	}
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fmt.Println("held")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// doc.go "The message log": Pebble's lines about the log say so
// (pebble_dir=messages), the store's do not: each DB has its own logger
// and listener.
func TestPebbleLogger_LogLinesNameTheirDirectory(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := Open(t.TempDir(), Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var store, messages int
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if rec["library"] != "pebble" {
			continue
		}
		switch rec["pebble_dir"] {
		case nil:
			store++
		case logDir:
			messages++
		default:
			t.Fatalf("line %q names another directory", line)
		}
	}
	if store == 0 || messages == 0 {
		t.Fatalf("Pebble lines: %d of the store, %d of the log; want both\n%s", store, messages, buf.Bytes())
	}
}
