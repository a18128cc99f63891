package pebble

import (
	"fmt"
	"sync"
	"testing"
)

func touchSync(t testing.TB, db *DB, a, b uint64, now int64, opts TouchOptions) {
	t.Helper()
	ch := make(chan error, 1)
	if err := db.Touch(a, b, now, opts, func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

// holdCommitter blocks the committer until the returned func is called, so
// that everything submitted meanwhile lands in one batch.
func holdCommitter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	held, gate := make(chan struct{}), make(chan struct{})
	if err := db.submit(op{
		applyFn: func(*tx) error { close(held); <-gate; return nil },
		doneFn:  func(error) {},
	}, 0); err != nil {
		t.Fatal(err)
	}
	<-held
	return func() { close(gate) }
}

// PROTOCOL §1.3 and the group commit (contact.go, seal): contact records,
// recency and counters written once per batch agree with every message of
// the batch, on disk. (The same records written one operation per batch
// are in the storagetest suite.)
func TestSection1_3_ContactCountersWithinOneBatch(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const agent = 100
	var wg sync.WaitGroup
	fail := func(err error) {
		if err != nil {
			t.Error(err)
		}
		wg.Done()
	}
	before := db.CommitStats()
	release := holdCommitter(t, db)
	send := func(from, to uint64, at int64) {
		wg.Add(1)
		m := Message{ID: msgID(), From: from, To: to, ChatType: ChatPrivate, Content: "x", CreateTime: at}
		if err := db.AppendPrivate(m, AppendOptions{}, func(r AppendResult) { fail(r.Err) }); err != nil {
			t.Fatal(err)
		}
	}
	for r := int64(0); r < 4; r++ {
		for v := uint64(1); v <= 5; v++ {
			send(v, agent, 1000*r+int64(v))
		}
	}
	send(agent, 2, 4000)
	send(agent, 4, 4100)
	wg.Add(2)
	if err := db.Touch(6, agent, 4200, TouchOptions{Visitor: 6}, fail); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkRead(agent, 3, fail); err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	if got := db.CommitStats().Batches - before.Batches; got != 2 {
		t.Fatalf("%d batches: the held operations did not share one", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)

	check := func(wantOrder string, wantPending uint64) {
		t.Helper()
		var order []uint64
		if err := db.Contacts(agent, func(c Contact) bool { order = append(order, c.Peer); return true }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(order) != wantOrder {
			t.Fatalf("recency order %v, want %s", order, wantOrder)
		}
		if n, err := db.Counts(agent); err != nil || n.Contacts != 6 || n.Pending != wantPending {
			t.Fatalf("counts %+v %v", n, err)
		}
		// One recency key per contact: none left behind at an old time.
		if k, _ := db.RecentCount(agent, 0); k != 6 {
			t.Fatalf("%d recency keys for 6 contacts", k)
		}
	}
	check("[6 4 2 5 3 1]", 3)
	if k, _ := db.RecentCount(agent, 3004); k != 4 {
		t.Fatalf("recent since 3004: %d", k)
	}
	for peer, want := range map[uint64]Contact{
		1: {Peer: 1, Unread: 4, Pending: true, LastContact: 3001, LastMessage: 3001, LastSeq: 4},
		2: {Peer: 2, Unread: 4, LastContact: 4000, LastMessage: 4000, LastSeq: 5},
		3: {Peer: 3, Pending: true, LastContact: 3003, ReadSeq: 4, LastMessage: 3003, LastSeq: 4},
		6: {Peer: 6, LastContact: 4200, Waiting: true}, // assigned, unanswered
	} {
		if c, err := db.Contact(agent, peer); err != nil || c != want {
			t.Fatalf("contact %d: %+v %v, want %+v", peer, c, err, want)
		}
	}
	if c, _ := db.Contact(2, agent); c.Unread != 1 || !c.Pending || c.LastContact != 4000 {
		t.Fatalf("visitor 2's view %+v", c)
	}
	// PROTOCOL §7.4: conversations by their newest message, one index key
	// each (none left at an older time), none for a contact without one.
	var convs []uint64
	if err := db.Conversations(agent, 0, func(c Contact) bool { convs = append(convs, c.Peer); return true }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(convs) != "[4 2 5 3 1]" {
		t.Fatalf("conversations %v", convs)
	}
	convs = convs[:0]
	_ = db.Conversations(agent, 4000, func(c Contact) bool { convs = append(convs, c.Peer); return len(convs) < 2 })
	if fmt.Sprint(convs) != "[5 3]" {
		t.Fatalf("conversations before 4000, two: %v", convs)
	}
	// After reopen the committer starts from disk: one more message moves
	// visitor 1 to the front and leaves the counters exact.
	send(1, agent, 5000)
	wg.Wait()
	check("[1 6 4 2 5 3]", 3)
}
