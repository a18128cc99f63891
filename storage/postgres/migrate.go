package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The schema is created and moved forward at Open by the SQL files of
// migrations/, named NNNN_what.sql and applied in order, each once, in one
// transaction with the update of schema_version. A database whose schema
// is newer than the files this binary holds is refused: an older imgate
// must not write a schema it does not know.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/.
type migration struct {
	version int
	name    string
	sql     string
}

// ErrSchemaTooNew is returned by Open for a database migrated by a newer
// imgate.
var ErrSchemaTooNew = errors.New("postgres: the database's schema is newer than this imgate")

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %q is not named NNNN_what.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{v, e.Name(), string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migrations are not numbered 1, 2, 3…: %s", m.name)
		}
	}
	return ms, nil
}

// migrate brings the schema to the newest version this binary knows. Two
// nodes starting at once serialise on the schema_version row.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	// CREATE TABLE IF NOT EXISTS is not atomic: of two nodes creating the
	// table at once, one may fail on the catalog's unique index (23505) or
	// find the table or its row type made meanwhile (42P07, 42710). The
	// other's table is then committed: the next try finds it.
	for attempt := 0; ; attempt++ {
		_, err := db.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			one     boolean PRIMARY KEY DEFAULT true CHECK (one),
			version integer NOT NULL)`)
		if err == nil {
			break
		}
		var pe *pgconn.PgError
		if attempt == maxRetries || !errors.As(err, &pe) || (pe.Code != "23505" && pe.Code != "42P07" && pe.Code != "42710") {
			return fmt.Errorf("postgres: schema_version: %w", err)
		}
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO schema_version (one, version) VALUES (true, 0) ON CONFLICT (one) DO NOTHING`); err != nil {
		return fmt.Errorf("postgres: schema_version: %w", err)
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var have int
		if err := tx.QueryRow(ctx, `SELECT version FROM schema_version WHERE one FOR UPDATE`).Scan(&have); err != nil {
			return fmt.Errorf("postgres: schema_version: %w", err)
		}
		if have < 0 {
			return fmt.Errorf("postgres: schema_version holds %d, not a version: the database was altered by hand", have)
		}
		if have > len(ms) {
			return fmt.Errorf("%w: the database is at schema version %d, this binary knows up to %d; run a newer imgate", ErrSchemaTooNew, have, len(ms))
		}
		for _, m := range ms[have:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("postgres: migration %s: %w", m.name, err)
			}
			db.log.Info("schema migrated", "migration", m.name)
		}
		if have < len(ms) {
			if _, err := tx.Exec(ctx, `UPDATE schema_version SET version = $1 WHERE one`, len(ms)); err != nil {
				return fmt.Errorf("postgres: schema_version: %w", err)
			}
		}
		return nil
	})
}
