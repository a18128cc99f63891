package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/imgate/imgate/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTest opens a store on a fresh database of the shared throwaway
// server; it is closed when t ends. now nil means time.Now.
func openTest(t testing.TB, now func() time.Time) (*DB, string) {
	t.Helper()
	url := pgtest.Database(t)
	db, err := Open(context.Background(), url, Options{Now: now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, url
}

// TestOpenMigrates: a fresh database gets the schema and an epoch; opening
// it again changes neither.
func TestOpenMigrates(t *testing.T) {
	db, url := openTest(t, nil)
	e := db.Epoch()
	if len(e) != 32 {
		t.Fatalf("epoch %q, want 32 hex", e)
	}
	db.Close()
	db2, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if db2.Epoch() != e {
		t.Fatalf("epoch changed across reopen: %s → %s", e, db2.Epoch())
	}
}
