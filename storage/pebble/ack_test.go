package pebble

import (
	"testing"
)

// queuedSeqs lists uid's queued messages from peer.
func queuedSeqs(t *testing.T, db *DB, uid, peer uint64) []uint64 {
	t.Helper()
	if err := db.QueuePending(uid); err != nil { // a commit after what was submitted
		t.Fatal(err)
	}
	page, err := db.ReadOffline(uid, QueueQuery{Peer: peer, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, p := range page.Friends {
		for _, m := range p.Msgs {
			seqs = append(seqs, m.Seq)
		}
	}
	return seqs
}

// PROTOCOL §7.2, the empty-queue hint (ack.go): a conversation whose queue
// an ack emptied is hinted empty, so the next ack costs nothing; a new
// entry makes it known non-empty again. (What acks remove is in the
// storagetest suite.)
func TestSection7_2_AckKeepsTheEmptyQueueHint(t *testing.T) {
	db := openTest(t, t.TempDir())
	const a, b = 1, 2
	for i := 0; i < 3; i++ {
		appendSync(t, db, Message{ID: msgID(), From: a, To: b, ChatType: ChatPrivate, Content: "m"}, true)
	}
	k := hintKey(b, a, false)
	if db.hint.empty(k) {
		t.Fatal("a queue with entries is hinted empty")
	}
	if err := db.Ack(b, a, false, 2); err != nil {
		t.Fatal(err)
	}
	if got := queuedSeqs(t, db, b, a); len(got) != 1 || got[0] != 3 {
		t.Fatalf("queued after ack 2: %v, want [3]", got)
	}
	if db.hint.empty(k) {
		t.Fatal("hinted empty with seq 3 queued")
	}
	if err := db.Ack(b, a, false, 3); err != nil {
		t.Fatal(err)
	}
	if got := queuedSeqs(t, db, b, a); len(got) != 0 {
		t.Fatalf("queued after ack 3: %v", got)
	}
	if !db.hint.empty(k) {
		t.Fatal("an emptied queue is not hinted empty")
	}
	appendSync(t, db, Message{ID: msgID(), From: a, To: b, ChatType: ChatPrivate, Content: "m"}, true)
	if db.hint.empty(k) {
		t.Fatal("a new entry left the hint empty")
	}
	if got := queuedSeqs(t, db, b, a); len(got) != 1 || got[0] != 4 {
		t.Fatalf("queued: %v, want [4]", got)
	}
}

// PROTOCOL §7.2 and the memory rule: acks are not rate-limited, so a
// flood of them for one conversation queues one removal, not one each.
func TestSection7_2_AckFloodQueuesOneRemoval(t *testing.T) {
	db := openTest(t, t.TempDir())
	const a, b = 1, 2
	for i := 0; i < 5; i++ {
		appendSync(t, db, Message{ID: msgID(), From: a, To: b, ChatType: ChatPrivate, Content: "m"}, true)
	}
	release := holdCommitter(t, db)
	queued := func() int {
		db.cq.mu.Lock()
		defer db.cq.mu.Unlock()
		return len(db.cq.ops)
	}
	before := queued()
	for i := 0; i < 10000; i++ {
		if err := db.Ack(b, a, false, uint64(1+i%3)); err != nil {
			t.Fatal(err)
		}
	}
	if n := queued() - before; n != 1 {
		t.Fatalf("%d operations queued by 10 000 acks, want 1", n)
	}
	release()
	if got := queuedSeqs(t, db, b, a); len(got) != 2 || got[0] != 4 {
		t.Fatalf("queued after acks up to 3: %v, want [4 5]", got)
	}
}
