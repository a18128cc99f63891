package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
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
func onPostgres() bool { return testStoreKind == "postgres" || onCluster() }

// onCluster reports whether this run's gateways are clusters of
// testClusterNodes nodes on PostgreSQL and NATS (IMGATE_TEST_STORE=cluster),
// each client connection and HTTP call going to the next node (PROTOCOL §8).
func onCluster() bool { return testStoreKind == "cluster" }

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

// TestFlags_Store: -store (IMGATE_STORE) picks the store; anything but
// empty, "pebble" or a postgres:// URL is refused at start with a clear
// error, and a URL's password never reaches the error.
func TestFlags_Store(t *testing.T) {
	cfg, err := parseFlags(nil, func(k string) string {
		if k == "IMGATE_STORE" {
			return "postgres://u@127.0.0.1:1/x"
		}
		return ""
	})
	if err != nil || cfg.Store != "postgres://u@127.0.0.1:1/x" {
		t.Fatalf("IMGATE_STORE: %q, %v", cfg.Store, err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct{ store, want string }{
		{"mysql://root:secret@db/imgate", "want empty, 'pebble' or a postgres:// URL"},
		// Nothing listens on port 1: the start fails naming the store.
		{"postgres://imgate:secret@127.0.0.1:1/imgate?connect_timeout=5", "store postgres://imgate:xxxxx@127.0.0.1:1/imgate"},
	} {
		s, err := start(config{WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), Store: tc.store}, log)
		if err == nil {
			s.stop(context.Background())
			t.Fatalf("-store %s started", tc.store)
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Fatalf("-store %s: %v; want it to say %q without the password", tc.store, err, tc.want)
		}
	}
	// "pebble" is the default spelled out.
	s, err := start(config{WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), Store: "pebble"}, log)
	if err != nil {
		t.Fatalf("-store pebble: %v", err)
	}
	s.stop(context.Background())
}

// TestFlags_StorePasswordNeverLogged: whatever form the store's password
// takes, the gateway's logs and errors never show it.
func TestFlags_StorePasswordNeverLogged(t *testing.T) {
	for _, s := range []string{
		"postgres://imgate:s3cret@db:5432/imgate?sslmode=disable",
		"postgres://imgate@db/imgate?sslmode=disable&password=s3cret",
		"postgresql://imgate:s3cret@%2Ftmp%2Fpg:5432/imgate",
		"host=db user=imgate password=s3cret dbname=imgate",
		"host=db user=imgate password = 's3cret' dbname=imgate",
		"Postgres://imgate:s3cret@db/imgate",
	} {
		if r := redactURL(s); strings.Contains(r, "s3cret") || !strings.Contains(r, "xxxxx") {
			t.Errorf("redactURL(%q) = %q", s, r)
		}
	}
	if r := redactURL("postgres://imgate@db/imgate"); r != "postgres://imgate@db/imgate" {
		t.Errorf("a URL without a password changed: %q", r)
	}
}
