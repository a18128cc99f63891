package pebble

import (
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// PROTOCOL §1.2 (2): an agent's load is the visitors waiting for them —
// assigned and unanswered, or written to last — never colleagues or
// consultants; the last-assigned time and the load survive a restart.
func TestSection1_2_WaitingVisitors(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	const x, y, c, v1, v2 = 100, 200, 300, 1, 2
	load := func(db *DB, uid uint64) ContactCounts {
		t.Helper()
		n, err := db.Counts(uid)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := func(db *DB, step string, wx, wy uint64) {
		t.Helper()
		if nx, ny := load(db, x), load(db, y); nx.Waiting != wx || ny.Waiting != wy {
			t.Fatalf("%s: waiting x=%d y=%d, want %d %d", step, nx.Waiting, ny.Waiting, wx, wy)
		}
	}
	send := func(from, to, visitor uint64, at int64) {
		appendOpts(t, db, Message{ID: msgID(), From: from, To: to, ChatType: ChatPrivate, Content: "m", CreateTime: at}, AppendOptions{Visitor: visitor})
	}
	touchSync(t, db, v1, x, 1000, TouchOptions{Visitor: v1, Assigned: true})
	want(db, "v1 assigned to x, silent", 1, 0)
	send(c, y, 0, 1100) // a consultant asks y: not a visitor
	want(db, "consultant wrote to y", 1, 0)
	if n := load(db, y); n.Pending != 1 {
		t.Fatalf("y pending %d: a colleague's message still owes a reply", n.Pending)
	}
	send(v1, x, v1, 1200)
	want(db, "v1 wrote", 1, 0)
	send(x, v1, v1, 1300)
	want(db, "x answered", 0, 0)
	touchSync(t, db, v1, x, 1400, TouchOptions{Visitor: v1})
	want(db, "v1 back to the same partner", 0, 0)
	send(v1, x, v1, 1500)
	want(db, "v1 wrote again", 1, 0)
	touchSync(t, db, v1, y, 1600, TouchOptions{Visitor: v1, Assigned: true})
	want(db, "v1 reassigned to y", 0, 1)
	send(v2, x, v2, 1700) // v2 writes to x without an assignment
	want(db, "v2 wrote to x", 1, 1)
	send(y, v2, v2, 1800) // y answers v2: v2's partner is now y
	want(db, "y took v2", 0, 1)
	if n := load(db, y); n.Assigned != 1600 {
		t.Fatalf("y assigned at %d, want 1600", n.Assigned)
	}
	if n := load(db, x); n.Assigned != 1000 {
		t.Fatalf("x assigned at %d, want 1000", n.Assigned)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	want(db, "after a restart", 0, 1)
	if n := load(db, x); n.Assigned != 1000 {
		t.Fatalf("after a restart x assigned at %d, want 1000", n.Assigned)
	}
}

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
