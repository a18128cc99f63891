package storagetest

import (
	"errors"

	"github.com/imgate/imgate/storage"
)

// PROTOCOL §4.5: only the sender may recall, within the window (at or
// after notBefore), once: the marker keeps id, seq, parties and time and
// drops content and extras, replaces the message in history, leaves the
// offline queues and unread; a pending push recalled is never queued.
func testRecallRules(f *fixture) {
	t := f.t
	m := priv(1, 2, "hello")
	m.Extras = []byte(`{"k":1}`)
	m.CreateTime, m.MsgType = 5000, 1
	r := f.sendOffline(m)
	if _, err := f.recall(2, m.ID, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("recall by the receiver: %v", err)
	}
	if _, err := f.recall(1, msgID(), 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("recall of an unknown id: %v", err)
	}
	if _, err := f.recall(1, m.ID, 5001); !errors.Is(err, storage.ErrTooLate) {
		t.Fatalf("recall after the window: %v", err)
	}
	if h, _ := f.history(1, 2, storage.HistoryQuery{Count: 10}); len(h) != 1 || sameMessage(h[0], r.Msg) != "" {
		t.Fatalf("a refused recall changed history: %+v", h)
	}
	if got := str(f.queued(2, 1)); got != "[1]" || f.contact(2, 1).Unread != 1 {
		t.Fatalf("a refused recall changed the queue %s or unread", got)
	}
	marker, err := f.recall(1, m.ID, 5000)
	if err != nil {
		t.Fatalf("recall at the window's edge: %v", err)
	}
	want := r.Msg
	want.Content, want.Extras, want.Recalled = "", nil, true
	if d := sameMessage(marker, want); d != "" {
		t.Fatalf("marker: %s", d)
	}
	if h, _ := f.history(2, 1, storage.HistoryQuery{Count: 10}); len(h) != 1 || sameMessage(h[0], want) != "" {
		t.Fatalf("history after the recall %+v", h)
	}
	if got := f.queued(2, 1); len(got) != 0 {
		t.Fatalf("recalled message still queued: %v", got)
	}
	if c := f.contact(2, 1); c.Unread != 0 || c.Pending {
		t.Fatalf("receiver after the recall %+v", c)
	}
	if _, err := f.recall(1, m.ID, 0); !errors.Is(err, storage.ErrRecalled) {
		t.Fatalf("second recall: %v", err)
	}
	if n := f.lastSeq(1, 2, false); n != 1 {
		t.Fatalf("last seq after the recall %d", n)
	}

	// A push pending when recalled: its loss queues nothing, nor does a
	// pull's QueuePending.
	p := f.sendOnline(priv(1, 2, "pending"))
	f.mustRecall(1, p.Msg.ID)
	p.Delivery.Settle(false)
	if got := f.queued(2, 1); len(got) != 0 {
		t.Fatalf("a recalled push lost was queued: %v", got)
	}
	p2 := f.sendOnline(priv(1, 2, "pending too"))
	f.mustRecall(1, p2.Msg.ID)
	if err := f.s.QueuePending(2); err != nil {
		t.Fatal(err)
	}
	if got := f.queuedNow(2, 1); len(got) != 0 {
		t.Fatalf("QueuePending queued a recalled push: %v", got)
	}
	if c := f.contact(2, 1); c.Unread != 0 {
		t.Fatalf("recalled pushes count unread: %+v", c)
	}
}

// PROTOCOL §4.5: a recalled message is no longer unread, leaves the queue,
// and the pending-reply flags follow the newest message left.
func testRecallUpdatesCounts(f *fixture) {
	t := f.t
	const a, b = 1, 2
	first := f.sendOffline(priv(a, b, "one"))
	second := f.sendOffline(priv(a, b, "two"))
	f.mustRecall(a, second.Msg.ID)
	if c := f.contact(b, a); c.Unread != 1 || !c.Pending {
		t.Fatalf("receiver after recalling the second: %+v, want 1 unread, pending", c)
	}
	if n := f.counts(b); n.Pending != 1 {
		t.Fatalf("receiver counts %+v", n)
	}
	if got := str(f.queued(b, a)); got != "[1]" {
		t.Fatalf("queue %s", got)
	}
	f.mustRecall(a, first.Msg.ID)
	if c := f.contact(b, a); c.Unread != 0 || c.Pending {
		t.Fatalf("receiver after recalling both: %+v, want nothing unread or pending", c)
	}
	if n := f.counts(b); n.Pending != 0 {
		t.Fatalf("receiver counts %+v", n)
	}
	// A reply, then its recall: with every message recalled, nobody owes
	// a reply.
	reply := f.sendOffline(priv(b, a, "re"))
	if c := f.contact(a, b); !c.Pending || c.Unread != 1 {
		t.Fatalf("sender after the reply: %+v", c)
	}
	f.mustRecall(b, reply.Msg.ID)
	if c := f.contact(a, b); c.Pending || c.Unread != 0 {
		t.Fatalf("sender after the reply's recall: %+v", c)
	}
	// A recall of the newest hands the pending flag back to the sender of
	// the one before.
	f.sendOffline(priv(a, b, "three"))
	four := f.sendOffline(priv(b, a, "four"))
	f.mustRecall(b, four.Msg.ID)
	if c := f.contact(b, a); !c.Pending || c.Unread != 1 {
		t.Fatalf("receiver of three after four's recall: %+v", c)
	}
	if c := f.contact(a, b); c.Pending {
		t.Fatalf("sender of three after four's recall: %+v", c)
	}
	// A recalled message that was read already changes no unread count.
	five := f.sendOffline(priv(a, b, "five"))
	f.take(b, a)
	f.mustRecall(a, five.Msg.ID)
	if c := f.contact(b, a); c.Unread != 0 {
		t.Fatalf("recall of a read message: %+v", c)
	}
}
