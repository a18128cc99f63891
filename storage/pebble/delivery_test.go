package pebble

import (
	"errors"
	"fmt"
	"github.com/imgate/imgate/storage"
	"sync"
	"testing"
	"time"
)

func private(from, to uint64, content string) Message {
	return Message{ID: msgID(), From: from, To: to, FromID: fmt.Sprint("u", from), ToID: fmt.Sprint("u", to), ChatType: ChatPrivate, Content: content, CreateTime: 1000}
}

// PROTOCOL §4.3: a message acked 10000 is held by its batch's journal
// until its push is settled: a written push leaves nothing queued, a
// dropped one is queued at once, and a crash before either queues it at
// the next Open. No kill -9 loses it.
func TestSection4_3_OnlineDeliveryJournaled(t *testing.T) {
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
	// Settled with a loss: only the lost one is queued, the record goes.
	takeSync(t, db, 2, 1)
	release = holdCommitter(t, db)
	for _, c := range []string{"written", "dropped"} {
		if err := db.AppendPrivate(private(1, 2, c), AppendOptions{}, func(r AppendResult) { ch <- r }); err != nil {
			t.Fatal(err)
		}
	}
	release()
	a, b := <-ch, <-ch
	a.Delivery.Settle(true)
	b.Delivery.Settle(false)
	flushLazy(t, db)
	if got := offline(t, db, 2, 1); len(got) != 1 || fmt.Sprint(seqs(got[0].Msgs)) != fmt.Sprint([]uint64{b.Msg.Seq}) {
		t.Fatalf("after settling: %+v, want only seq %d", got, b.Msg.Seq)
	}
	_ = db.Close()
	db = openTest(t, dir)
	if got := offline(t, db, 2, 1); len(got) != 1 || len(got[0].Msgs) != 1 {
		t.Fatalf("a settled journal came back at Open: %+v", got)
	}
}

// PROTOCOL §4.3 with §4.6: a message to oneself is stored, but makes no
// contact, no unread and no queue entry.
func TestSection4_3_MessageToSelfMakesNoContact(t *testing.T) {
	db := openTest(t, t.TempDir())
	appendSync(t, db, private(1, 1, "note to self"), false)
	if n, _ := db.Counts(1); n != (ContactCounts{}) {
		t.Fatalf("counts %+v, want none", n)
	}
	if _, err := db.Contact(1, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("self contact: %v", err)
	}
	if got := offline(t, db, 1, 0); len(got) != 0 {
		t.Fatalf("queued to oneself: %+v", got)
	}
	if h, _, _ := db.History(1, 1, HistoryQuery{Count: 10}); len(h) != 1 || h[0].Content != "note to self" {
		t.Fatalf("history %+v", h)
	}
}

// PROTOCOL §4.4: a type 0 pull that carried only part of the queue marks
// read up to what it carried; one that emptied it marks the whole
// conversation read, and an empty pull does too.
func TestSection4_4_PartialPullMarksReadUpToWhatItCarried(t *testing.T) {
	db := openTest(t, t.TempDir())
	for i := range 3 {
		appendSync(t, db, private(1, 2, fmt.Sprint("m", i)), true)
	}
	appendSync(t, db, private(2, 1, "reply"), false) // seq 4, from the owner
	res, err := db.ReadOffline(2, QueueQuery{Peer: 1, Limit: 2})
	if err != nil || len(res.Friends) != 1 || len(res.Friends[0].Msgs) != 2 || !res.Friends[0].More || !res.More {
		t.Fatalf("page %+v %v", res, err)
	}
	removeSync(t, db, 2, []Removal{{Peer: 1, Seqs: []uint64{1, 2}, ReadTo: 2}})
	if c, _ := db.Contact(2, 1); c.Unread != 1 || c.ReadSeq != 2 {
		t.Fatalf("after a partial pull: %+v, want 1 unread, read to 2", c)
	}
	got := takeSync(t, db, 2, 1)
	if len(got) != 1 || fmt.Sprint(seqs(got[0].Msgs)) != "[3]" {
		t.Fatalf("rest %+v", got)
	}
	if c, _ := db.Contact(2, 1); c.Unread != 0 || c.ReadSeq != 4 {
		t.Fatalf("after emptying: %+v, want read to the end", c)
	}
	// Pushed (and written) messages are unread until a pull of the empty
	// queue marks them read.
	for range 2 {
		r := appendSync(t, db, private(1, 2, "pushed"), false)
		r.Delivery.Settle(true)
	}
	flushLazy(t, db)
	if c, _ := db.Contact(2, 1); c.Unread != 2 {
		t.Fatalf("pushed: %+v", c)
	}
	if got := takeSync(t, db, 2, 1); len(got) != 0 {
		t.Fatalf("queue not empty: %+v", got)
	}
	if c, _ := db.Contact(2, 1); c.Unread != 0 || c.ReadSeq != 6 {
		t.Fatalf("after an empty pull: %+v", c)
	}
}

// PROTOCOL §4.5: a recalled message is no longer unread, leaves the queue,
// and the pending-reply flags follow the newest message left.
func TestSection4_5_RecallUpdatesCounts(t *testing.T) {
	db := openTest(t, t.TempDir())
	const a, b = 1, 2
	first := appendSync(t, db, private(a, b, "one"), true)
	second := appendSync(t, db, private(a, b, "two"), true)
	recall := func(m Message) {
		t.Helper()
		ch := make(chan error, 1)
		if err := db.Recall(a, m.ID, 0, func(_ Message, err error) { ch <- err }); err != nil {
			t.Fatal(err)
		}
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	recall(second.Msg)
	if c, _ := db.Contact(b, a); c.Unread != 1 || !c.Pending {
		t.Fatalf("receiver after recalling the second: %+v, want 1 unread, pending", c)
	}
	if n, _ := db.Counts(b); n.Pending != 1 {
		t.Fatalf("receiver counts %+v", n)
	}
	if got := offline(t, db, b, a); len(got) != 1 || fmt.Sprint(seqs(got[0].Msgs)) != "[1]" {
		t.Fatalf("queue %+v", got)
	}
	recall(first.Msg)
	if c, _ := db.Contact(b, a); c.Unread != 0 || c.Pending {
		t.Fatalf("receiver after recalling both: %+v, want nothing unread or pending", c)
	}
	if n, _ := db.Counts(b); n.Pending != 0 {
		t.Fatalf("receiver counts %+v", n)
	}
	// A reply, then the receiver recalls it: the sender owes no reply any
	// more, the receiver does again (the newest left is the sender's... none
	// left: both recalled, so nobody owes one).
	reply := appendSync(t, db, private(b, a, "re"), false)
	if c, _ := db.Contact(a, b); !c.Pending || c.Unread != 1 {
		t.Fatalf("sender after the reply: %+v", c)
	}
	ch := make(chan error, 1)
	_ = db.Recall(b, reply.Msg.ID, 0, func(_ Message, err error) { ch <- err })
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	if c, _ := db.Contact(a, b); c.Pending || c.Unread != 0 {
		t.Fatalf("sender after the reply's recall: %+v", c)
	}
	// A recalled message that was read already changes no unread count.
	third := appendSync(t, db, private(a, b, "three"), true)
	takeSync(t, db, b, a)
	recall(third.Msg)
	if c, _ := db.Contact(b, a); c.Unread != 0 {
		t.Fatalf("recall of a read message: %+v", c)
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
}

// PROTOCOL §5 with §4.3: a group message to online members gets a pending
// record; a member no connection wrote it to gets it queued at once, not
// when the others are settled; a record a crash left queues every member
// it names at Open.
func TestSection5_GroupDeliverySettled(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	gid := joinSync(t, db, "g", 1)
	for _, uid := range []uint64{2, 3, 4} {
		joinSync(t, db, "g", uid)
	}
	send := func(content string) AppendResult {
		ch := make(chan AppendResult, 1)
		m := Message{ID: msgID(), From: 1, FromID: "u1", Group: gid, GroupID: "g", ChatType: ChatGroup, Content: content, CreateTime: 1}
		if err := db.AppendGroup(m, []uint64{2, 3}, []uint64{4}, db.MembershipVersion(gid), AppendOptions{}, func(r AppendResult) { ch <- r }); err != nil {
			t.Fatal(err)
		}
		r := <-ch
		if r.Err != nil || (r.Delivery == storage.Delivery{}) {
			t.Fatalf("append %+v", r)
		}
		return r
	}
	queued := func(uid uint64) string {
		res, err := db.ReadOffline(uid, QueueQuery{Group: gid, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var s []uint64
		for _, pg := range res.Groups {
			s = append(s, seqs(pg.Msgs)...)
		}
		return fmt.Sprint(s)
	}
	r1 := send("one")
	r1.Delivery.Member(1).Settle(false) // member 3's connection died first
	flushLazy(t, db)
	// Member 2's push is still unsettled: 3 does not wait for it.
	for uid, want := range map[uint64]string{2: "[]", 3: "[1]", 4: "[1]"} {
		if got := queued(uid); got != want {
			t.Fatalf("member %d queued %s, want %s", uid, got, want)
		}
	}
	r1.Delivery.Member(0).Settle(true)
	r1.Delivery.Member(0).Settle(false) // a second outcome does nothing
	flushLazy(t, db)
	if got := queued(2); got != "[]" {
		t.Fatalf("member 2 queued %s after its push was written", got)
	}
	send("two") // then a crash: never settled
	_ = db.Close()
	db = openTest(t, dir)
	for uid, want := range map[uint64]string{2: "[2]", 3: "[1 2]", 4: "[1 2]"} {
		if got := queued(uid); got != want {
			t.Fatalf("after reopen member %d queued %s, want %s", uid, got, want)
		}
	}
}

// PROTOCOL §4.3: a push that stays unsettled (a connection holds it
// unsent) for pendingExpiry is queued anyway, so no receiver waits on a
// slow connection; its record goes, and a late outcome changes nothing.
func TestSection4_3_UnsettledDeliveryExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	db, err := Open(dir, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	r := appendSync(t, db, private(1, 2, "slow"), false)
	if r.Delivery == (storage.Delivery{}) {
		t.Fatal("no delivery to settle")
	}
	flushLazy(t, db)
	if got := offline(t, db, 2, 1); len(got) != 0 {
		t.Fatalf("queued before it expired: %+v", got)
	}
	mu.Lock()
	now = now.Add(pendingExpiry + time.Second)
	mu.Unlock()
	flushLazy(t, db) // the committer expires before each batch
	flushLazy(t, db) // and the queueing rides on the next
	if got := offline(t, db, 2, 1); len(got) != 1 || len(got[0].Msgs) != 1 {
		t.Fatalf("after the expiry: %+v, want it queued", got)
	}
	r.Delivery.Settle(true) // the slow connection wrote it after all
	flushLazy(t, db)
	if got := offline(t, db, 2, 1); len(got) != 1 {
		t.Fatalf("a late outcome changed the queue: %+v", got)
	}
	// The record is gone: a reopen queues nothing more.
	takeSync(t, db, 2, 1)
	_ = db.Close()
	db, err = Open(dir, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if got := offline(t, db, 2, 1); len(got) != 0 {
		t.Fatalf("an expired record came back at Open: %+v", got)
	}
}

// PROTOCOL §4.3 (README: a push late past 2 s is queued): on a store with
// nothing else to do, an unsettled delivery is queued by the expiry alone,
// with no later operation to wake the committer.
func TestSection4_3_ExpiryOnAQuietStore(t *testing.T) {
	db := openTest(t, t.TempDir())
	if r := appendSync(t, db, private(1, 2, "never settled"), false); r.Delivery == (storage.Delivery{}) {
		t.Fatal("no delivery to settle")
	}
	deadline := time.Now().Add(pendingExpiry + 10*time.Second)
	for {
		page, err := db.ReadOffline(2, QueueQuery{Peer: 1, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Friends) == 1 && len(page.Friends[0].Msgs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not queued %v after the push was left unsettled", pendingExpiry+10*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
