package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSection1_2_AssignmentLockSpansGateways: two gateways on one database
// assign one visitor at a time (PROTOCOL §1.2 (2)): while one holds the
// lock the other waits, and gets it once it is released — also when the
// holder's process dies (its connection goes, and the lock with it).
func TestSection1_2_AssignmentLockSpansGateways(t *testing.T) {
	a, url := openTest(t, nil)
	b, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	unlockA, err := a.LockAssignment()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		unlockB, err := b.LockAssignment()
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- unlockB
	}()
	// b must still be waiting: its transaction waits on a's row lock,
	// which the server shows as a lock wait.
	deadline := time.Now().Add(30 * time.Second)
	for !waitingOnLock(t, a) {
		if time.Now().After(deadline) {
			t.Fatal("the second gateway never waited for the lock")
		}
		select {
		case <-got:
			t.Fatal("two gateways held the assignment lock at once")
		case <-time.After(10 * time.Millisecond):
		}
	}
	unlockA()
	select {
	case unlockB := <-got:
		if unlockB == nil {
			t.Fatal("the second gateway's lock failed")
		}
		unlockB()
	case <-time.After(30 * time.Second):
		t.Fatal("the lock was not handed over")
	}

	// A holder whose process died: its socket closes without a word, and
	// the server ends its transaction and the lock.
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), sqlAssignmentLock); err != nil {
		t.Fatal(err)
	}
	conn.PgConn().Conn().Close()
	done := make(chan error, 1)
	go func() {
		unlock, err := b.LockAssignment()
		if err == nil {
			unlock()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a dead holder's lock was never released")
	}
}

// waitingOnLock reports whether some session of the database waits for a
// lock.
func waitingOnLock(t *testing.T, db *DB) bool {
	var n int
	err := db.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}
