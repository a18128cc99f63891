// Package storagetest is the conformance suite of storage.Store: one set of
// cases, named after the PROTOCOL sections they prove, that every store
// implementation passes with the same test code (storage/pebble,
// storage/postgres).
//
// # Wiring a store
//
// A store's package runs the suite from one of its _test.go files, giving
// it a Harness that opens fresh stores and reopens them:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Harness{
//			Open: func(t testing.TB, now func() time.Time) storage.Store {
//				db, err := pebble.Open(t.TempDir(), pebble.Options{Now: now})
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { _ = db.Close() })
//				return db
//			},
//			Reopen: func(t testing.TB, s storage.Store) storage.Store {
//				// close s, open the same directory (or database) with
//				// the clock s was opened with, register its Close with
//				// t.Cleanup, return it
//			},
//		})
//	}
//
// Open must return a fresh, empty store each call, closed by a t.Cleanup
// it registers, whose clock for time rules (the expiry of pending pushes,
// PROTOCOL §4.2) is now. Reopen must close s (s may be closed already:
// Close is idempotent) and open the same data with the same clock, as a
// restart of the process would. storage/pebble/conformance_test.go is the
// reference wiring; a server-backed store opens a database of its own per
// Open (internal/pgtest) and keeps a map from the stores it returned to
// their databases for Reopen.
//
// # What the suite assumes
//
// Only the storage.Store contract. Uids and gids are opaque numbers: most
// cases use small uids they never registered, as the contract does not tie
// messages, contacts or groups to registered users (they stay below 2^40,
// so they fit a signed 64-bit column). Cases run one after the other, each
// on its own store. A case that must know that deferred work (a push
// settled as lost, an ack) is durable calls QueuePending for a uid nobody
// uses: QueuePending blocks until every earlier deferred write is durable.
// Every wait is bounded; no case sleeps to synchronise, and the time rules
// run on a manual clock the case advances.
package storagetest
