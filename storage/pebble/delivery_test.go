package pebble

import (
	"errors"
	"fmt"
	"testing"

	"github.com/imgate/imgate/storage"
)

func private(from, to uint64, content string) Message {
	return Message{ID: msgID(), From: from, To: to, FromID: fmt.Sprint("u", from), ToID: fmt.Sprint("u", to), ChatType: ChatPrivate, Content: content, CreateTime: 1000}
}

// PROTOCOL §4.3 and the batch journal (lazy.go): the private messages a
// batch acks as pushed share one journal record, whose receivers are
// settled one by one: a dropped push is queued at once though the others
// of the record are pending, and a record a crash left queues every
// receiver it names, the written one too. (Delivery as seen through
// storage.Store is in the storagetest suite.)
func TestSection4_3_BatchJournalSettledPerReceiver(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	release := holdCommitter(t, db) // three messages in one batch, one journal
	ch := make(chan AppendResult, 3)
	for _, c := range []string{"written", "dropped", "crashed"} {
		if err := db.AppendPrivate(private(1, 2, c), AppendOptions{}, func(r AppendResult) { ch <- r }); err != nil {
			t.Fatal(err)
		}
	}
	release()
	var rs []AppendResult
	for range 3 {
		r := <-ch
		if r.Err != nil || (r.Delivery == storage.Delivery{}) {
			t.Fatalf("append %+v", r)
		}
		rs = append(rs, r)
	}
	if got := offline(t, db, 2, 1); len(got) != 0 {
		t.Fatalf("queued before any outcome: %+v", got)
	}
	rs[0].Delivery.Settle(true)
	rs[1].Delivery.Settle(false)
	flushLazy(t, db)
	// The dropped one is queued at once, though the third is pending.
	if got := offline(t, db, 2, 1); len(got) != 1 || fmt.Sprint(seqs(got[0].Msgs)) != "[2]" {
		t.Fatalf("after one written and one dropped: %+v, want only the dropped one", got)
	}
	// A crash now: the journal record is on disk.
	_ = db.Close()
	db = openTest(t, dir)
	if got := offline(t, db, 2, 1); len(got) != 1 || fmt.Sprint(seqs(got[0].Msgs)) != "[1 2 3]" {
		t.Fatalf("after a crash with the journal unsettled: %+v, want all three queued", got)
	}
}

// PROTOCOL §4.3: an operation that fails after it wrote leaves nothing in
// the group commit, and the others of the batch commit as if it had never
// been there.
func TestSection4_3_FailedApplyLeavesNoWrites(t *testing.T) {
	db := openTest(t, t.TempDir())
	release := holdCommitter(t, db)
	boom := errors.New("boom")
	ch := make(chan error, 3)
	_ = db.AppendPrivate(private(1, 2, "before"), AppendOptions{}, func(r AppendResult) { ch <- r.Err })
	if err := db.submit(op{
		applyFn: func(t *tx) error {
			t.set([]byte("z|partial"), nil)
			t.appendCore(privateConv(1, 2), convState{seq: 9}, &Message{From: 1, To: 2, Content: "failed"}, false, false) // and a message
			c := Contact{Peer: 9, Unread: 7}
			t.writeContact(8, &c) // a cache write too
			return boom
		},
		doneFn: func(err error) { ch <- err },
	}, 0); err != nil {
		t.Fatal(err)
	}
	_ = db.AppendPrivate(private(1, 2, "after"), AppendOptions{}, func(r AppendResult) { ch <- r.Err })
	release()
	var errs []error
	for range 3 {
		errs = append(errs, <-ch)
	}
	if errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil {
		t.Fatalf("outcomes %v, want nil, boom, nil", errs)
	}
	if _, err := db.get([]byte("z|partial")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the failed operation's write was committed: %v", err)
	}
	if _, err := db.Contact(8, 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the failed operation's contact was committed: %v", err)
	}
	h, _, _ := db.History(1, 2, HistoryQuery{Count: 10})
	if fmt.Sprint(seqs(h)) != "[1 2]" || h[0].Content != "before" || h[1].Content != "after" {
		t.Fatalf("history %+v", h)
	}
	if c, _ := db.Contact(2, 1); c.Unread != 2 {
		t.Fatalf("counters of the batch: %+v", c)
	}
	if got := logRecords(t, db.ldb); fmt.Sprint(got) != "[1:before 2:after]" {
		t.Fatalf("the log holds %v: the failed operation's record, or a gap", got)
	}
}
