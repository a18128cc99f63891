package pgtest

import (
	"context"
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
