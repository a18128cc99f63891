package main

import (
	"os"
	"sync"
	"testing"

	"github.com/imgate/imgate/internal/pgtest"
)

// The end-to-end tests run against the store IMGATE_TEST_STORE names:
// empty or "pebble" for the embedded default, "postgres" for a throwaway
// PostgreSQL (internal/pgtest), one database per test. .ci/run runs the
// suite both ways.
var testStoreKind = os.Getenv("IMGATE_TEST_STORE")

// onPostgres reports whether this run's gateways keep their store in
// PostgreSQL.
func onPostgres() bool { return testStoreKind == "postgres" }

// storeURLs maps a test's data directory to its database, so that a
// gateway restarted on the same directory finds the same store.
var storeURLs sync.Map // dir → URL

// storeFor returns the -store of a gateway whose -data is dir: "" for
// Pebble, else the database of dir, created on first use for t.
func storeFor(t testing.TB, dir string) string {
	t.Helper()
	if !onPostgres() {
		return ""
	}
	if u, ok := storeURLs.Load(dir); ok {
		return u.(string)
	}
	u := pgtest.Database(t)
	storeURLs.Store(dir, u)
	t.Cleanup(func() { storeURLs.Delete(dir) })
	return u
}

// storeArgs is storeFor as command-line flags.
func storeArgs(t testing.TB, dir string) []string {
	if u := storeFor(t, dir); u != "" {
		return []string{"-store", u}
	}
	return nil
}

// pebbleOnly skips a test of Pebble's own data directory on a PostgreSQL
// run.
func pebbleOnly(t testing.TB) {
	t.Helper()
	if onPostgres() {
		t.Skip("reads or writes a Pebble data directory: not a PostgreSQL store's concern")
	}
}
