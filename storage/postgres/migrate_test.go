package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/internal/pgtest"
	"github.com/imgate/imgate/storage"
)

// exec runs sql on the database at url over a connection of its own.
func exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// schemaVersion reads schema_version at url.
func schemaVersion(t testing.TB, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOpenRefusesNewerSchema: a database a newer imgate migrated fails Open
// with ErrSchemaTooNew, and Open leaves it as it was.
func TestOpenRefusesNewerSchema(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	db, url := openTest(t, nil)
	if v := schemaVersion(t, url); v != len(ms) {
		t.Fatalf("schema version %d after Open, want %d", v, len(ms))
	}
	db.Close()
	exec(t, url, `UPDATE schema_version SET version = version + 1`)
	db2, err := Open(context.Background(), url, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		if db2 != nil {
			db2.Close()
		}
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	if v := schemaVersion(t, url); v != len(ms)+1 {
		t.Fatalf("schema version %d after the refused Open, want %d", v, len(ms)+1)
	}
	// The version this binary knows opens again.
	exec(t, url, `UPDATE schema_version SET version = $1`, len(ms))
	db3, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatalf("Open at the known version: %v", err)
	}
	db3.Close()
}

// TestOpenMigratesFromVersion1: a database left at version 1
// is brought to the newest, running only the migrations it lacks.
func TestOpenMigratesFromVersion1(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 {
		t.Skip("one migration: nothing to migrate from")
	}
	url := pgtest.Database(t)
	// What a binary that knew only 0001 made, with a token bound.
	exec(t, url, `CREATE TABLE schema_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)`)
	exec(t, url, ms[0].sql)
	exec(t, url, `INSERT INTO schema_version (one, version) VALUES (true, 1)`)
	exec(t, url, `INSERT INTO users (id, type, nick, avatar, terminal, sign, created, updated) VALUES ('agent_1', 1, '', '', 'pc', '', 1, 1)`)
	exec(t, url, `INSERT INTO tokens (token, uid, terminal, issued, expire) VALUES ('old-token-00000000', 1, 'pc', 1, 1000)`)
	db, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v := schemaVersion(t, url); v != len(ms) {
		t.Fatalf("schema version %d, want %d", v, len(ms))
	}
	expectOwner(t, db, "old-token-00000000", "agent_1", 2)
	for i := 1; i <= 4; i++ { // the old token is the oldest of pc's
		bind(t, db, "agent_1", "pc", tok(i), int64(2+i), 1000)
	}
	expectRefused(t, db, "old-token-00000000", 10, storage.ErrNotFound)
}

// TestOpenRacesOnAFreshDatabase: gateways starting at once on an empty
// database all open it, with one schema and one epoch.
func TestOpenRacesOnAFreshDatabase(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		url := pgtest.Database(t)
		const n = 4
		dbs := make([]*DB, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				dbs[i], errs[i] = Open(context.Background(), url, Options{})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: Open %d of %d: %v", round, i, n, err)
			}
			defer dbs[i].Close()
		}
		for _, db := range dbs[1:] {
			if db.Epoch() != dbs[0].Epoch() {
				t.Fatalf("round %d: epochs %s and %s", round, dbs[0].Epoch(), db.Epoch())
			}
		}
		if v := schemaVersion(t, url); v != len(ms) {
			t.Fatalf("round %d: schema version %d, want %d", round, v, len(ms))
		}
		// Every node works on the one schema: a user registered on one is
		// seen by the others.
		bind(t, dbs[0], "agent_1", "pc", tok(round), 1, 1000)
		for _, db := range dbs[1:] {
			expectOwner(t, db, tok(round), "agent_1", 2)
		}
	}
}
