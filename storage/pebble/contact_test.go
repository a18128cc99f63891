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

// PROTOCOL §1.3 counters: contacts, pending replies and recency follow
// messages and assignments exactly.
func TestSection1_3_ContactCounters(t *testing.T) {
	db := openTest(t, t.TempDir())
	const agent = 100
	// Three visitors write; one gets a reply; a fourth is only assigned.
	for v := uint64(1); v <= 3; v++ {
		for i := 0; i < 2; i++ {
			appendOpts(t, db, Message{ID: msgID(), From: v, To: agent, ChatType: ChatPrivate, Content: "q", CreateTime: int64(1000 * v)}, AppendOptions{Visitor: v})
		}
	}
	appendOpts(t, db, Message{ID: msgID(), From: agent, To: 2, ChatType: ChatPrivate, Content: "a", CreateTime: 5000}, AppendOptions{Visitor: 2})
	touchSync(t, db, 4, agent, 6000, TouchOptions{Visitor: 4})

	n, err := db.Counts(agent)
	if err != nil || n.Contacts != 4 || n.Pending != 2 {
		t.Fatalf("counts %+v %v", n, err)
	}
	if c, _ := db.Contact(agent, 1); c.Unread != 2 || !c.Pending {
		t.Fatalf("contact 1 %+v", c)
	}
	var order []uint64
	_ = db.Contacts(agent, func(c Contact) bool { order = append(order, c.Peer); return true })
	if fmt.Sprint(order) != "[4 2 3 1]" {
		t.Fatalf("recency order %v", order)
	}
	if k, _ := db.RecentCount(agent, 3000); k != 3 {
		t.Fatalf("recent since 3000: %d", k)
	}
	for v, want := range map[uint64]uint64{1: agent, 2: agent, 4: agent, 100: 0} {
		if p, _ := db.LastPartner(v); p != want {
			t.Fatalf("partner of %d = %d", v, p)
		}
	}
	ch := make(chan error, 1)
	_ = db.MarkRead(agent, 1, func(err error) { ch <- err })
	<-ch
	if c, _ := db.Contact(agent, 1); c.Unread != 0 || !c.Pending {
		t.Fatalf("after mark read %+v", c)
	}
	// The visitor's own view: one contact, nothing pending.
	if n, _ := db.Counts(1); n.Contacts != 1 || n.Pending != 0 {
		t.Fatalf("visitor counts %+v", n)
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

// PROTOCOL §1.3: contact records, recency and counters written once per
// group commit agree with every message of the batch, on disk.
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
