package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// TestDatabase: a database of one's own, reachable at its URL, with
// synchronous commits (the stores' durability rests on it).
func TestDatabase(t *testing.T) {
	url := Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var sc, fs string
	if err := c.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('fsync')").Scan(&sc, &fs); err != nil {
		t.Fatal(err)
	}
	if sc != "on" || fs != "on" {
		t.Fatalf("synchronous_commit=%s fsync=%s, want on, on", sc, fs)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE x (a int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if Database(t) == url {
		t.Fatal("two databases with one URL")
	}
}

// TestOrphanReaped: the server of a test process that died without
// stopping it is stopped and removed by the next Start.
func TestOrphanReaped(t *testing.T) {
	s, err := Start()
	if err != nil {
		unavailable(t, err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	// s's owner "died": its pid is now one that exited.
	if err := os.WriteFile(filepath.Join(s.dir, "owner"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	reapOrphans(s.bin)
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		s.Stop()
		t.Fatalf("the orphan's directory is still there: %v", err)
	}
	if err := (&Server{port: s.port}).exec("SELECT 1"); err == nil {
		t.Fatal("the orphan still answers")
	}
}
