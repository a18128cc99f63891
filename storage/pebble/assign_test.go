package pebble

import (
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// storage/doc.go, migration waiting-v1: a data directory whose contact
// records and counters predate Waiting gets it from the partner records.
func TestSection1_2_WaitingMigrated(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	const x, v1, v2, v3 = 100, 1, 2, 3
	touchSync(t, db, v1, x, 1000, TouchOptions{Visitor: v1, Assigned: true}) // assigned, silent: waiting
	appendOpts(t, db, Message{ID: msgID(), From: v2, To: x, ChatType: ChatPrivate, Content: "q", CreateTime: 1100}, AppendOptions{Visitor: v2})
	appendOpts(t, db, Message{ID: msgID(), From: v3, To: x, ChatType: ChatPrivate, Content: "q", CreateTime: 1200}, AppendOptions{Visitor: v3})
	appendOpts(t, db, Message{ID: msgID(), From: x, To: v3, ChatType: ChatPrivate, Content: "a", CreateTime: 1300}, AppendOptions{Visitor: v3})
	if n, _ := db.Counts(x); n.Waiting != 2 {
		t.Fatalf("waiting %d before the downgrade, want 2", n.Waiting)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Write the records as the release before Waiting did: no flag, a
	// two-field counter, no marker.
	pdb, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint64{v1, v2, v3} {
		raw, err := getCopy(pdb, keyContact(x, v))
		if err != nil {
			t.Fatal(err)
		}
		ct, err := decodeContact(v, raw)
		if err != nil {
			t.Fatal(err)
		}
		ct.Waiting = false
		_ = pdb.Set(keyContact(x, v), encodeContact(&ct), nil)
	}
	raw, err := getCopy(pdb, keyCounts(x))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := decodeCounts(raw)
	_ = pdb.Set(keyCounts(x), encodeCounts(ContactCounts{Contacts: n.Contacts, Pending: n.Pending})[:2], nil)
	_ = pdb.Delete([]byte(prefixMigrated+"waiting-v1"), nil)
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir)
	if n, err := db.Counts(x); err != nil || n.Waiting != 2 || n.Contacts != 3 {
		t.Fatalf("migrated counts %+v %v, want 3 contacts, 2 waiting", n, err)
	}
	for v, w := range map[uint64]bool{v1: true, v2: true, v3: false} {
		if ct, _ := db.Contact(x, v); ct.Waiting != w {
			t.Fatalf("visitor %d waiting=%v, want %v", v, ct.Waiting, w)
		}
	}
}
