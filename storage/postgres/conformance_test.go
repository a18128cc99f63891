package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/imgate/imgate/internal/pgtest"
	"github.com/imgate/imgate/storage"
	"github.com/imgate/imgate/storage/storagetest"
)

// TestConformance runs the storage.Store suite against PostgreSQL stores,
// each on a fresh database of the shared throwaway server.
func TestConformance(t *testing.T) {
	type opened struct {
		url string
		now func() time.Time
	}
	var mu sync.Mutex
	stores := map[*DB]opened{}
	open := func(t testing.TB, o opened) *DB {
		t.Helper()
		db, err := Open(context.Background(), o.url, Options{Now: o.now})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = db.Close() })
		mu.Lock()
		stores[db] = o
		mu.Unlock()
		return db
	}
	storagetest.Run(t, storagetest.Harness{
		Open: func(t testing.TB, now func() time.Time) storage.Store {
			return open(t, opened{url: pgtest.Database(t), now: now})
		},
		Reopen: func(t testing.TB, s storage.Store) storage.Store {
			t.Helper()
			db := s.(*DB)
			mu.Lock()
			o, ok := stores[db]
			delete(stores, db)
			mu.Unlock()
			if !ok {
				t.Fatal("Reopen of a store this harness did not open")
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, o)
		},
	})
}
