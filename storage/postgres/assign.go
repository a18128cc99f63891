package postgres

import (
	"context"
	"fmt"
)

// LockAssignment takes the assignment lock (storage.Store) shared by every
// gateway on the database: the meta row 'assignment' locked FOR UPDATE by
// a transaction held open until unlock. A row lock rather than an advisory
// lock, so that CockroachDB takes the same SQL. A gateway that dies
// holding it releases it with its connection.
//
// The gateway's own assigners queue on a mutex first: each waiter on the
// row would hold a connection of the pool, and enough of them would leave
// none for the holder's reads and commit.
func (db *DB) LockAssignment() (unlock func(), err error) {
	db.assignMu.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
	tx, err := db.pool.Begin(ctx)
	if err == nil {
		if _, err = tx.Exec(ctx, sqlAssignmentLock); err != nil {
			_ = tx.Rollback(ctx)
		}
	}
	if err != nil {
		cancel()
		db.assignMu.Unlock()
		return nil, fmt.Errorf("postgres: assignment lock: %w", err)
	}
	return func() {
		_ = tx.Rollback(ctx)
		cancel()
		db.assignMu.Unlock()
	}, nil
}

// sqlAssignmentLock locks the assignment row; Open makes sure it exists.
const sqlAssignmentLock = `SELECT value FROM meta WHERE name = 'assignment' FOR UPDATE`

// ensureAssignmentRow creates the row LockAssignment locks.
func (db *DB) ensureAssignmentRow(ctx context.Context) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO meta (name, value) VALUES ('assignment', '') ON CONFLICT (name) DO NOTHING`)
	return err
}
