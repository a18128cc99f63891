package pebble

import (
	"crypto/rand"
	"fmt"
	"github.com/imgate/imgate/storage"
	"sync"
	"testing"
	"time"
)

func msgID() (id [16]byte) {
	_, _ = rand.Read(id[:])
	return id
}

// appendSync appends and waits for the durable result.
func appendSync(t testing.TB, db *DB, m Message, offline bool) AppendResult {
	return appendOpts(t, db, m, AppendOptions{Offline: offline, ClientID: true})
}

func appendOpts(t testing.TB, db *DB, m Message, opts AppendOptions) AppendResult {
	t.Helper()
	ch := make(chan AppendResult, 1)
	if err := db.AppendPrivate(m, opts, func(r AppendResult) { ch <- r }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("append never completed")
	}
	return AppendResult{}
}

// offline reads uid's private queues (peer 0: all of them), dropping the
// empty page of a one-peer query.
func offline(t testing.TB, db *DB, uid, peer uint64) []OfflinePage {
	t.Helper()
	res, err := db.ReadOffline(uid, QueueQuery{Peer: peer, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var out []OfflinePage
	for _, pg := range res.Friends {
		if len(pg.Msgs) > 0 {
			out = append(out, pg)
		}
	}
	return out
}

// takeSync is a type 0 pull whose reply was written: read, then remove
// what was read and mark it read.
func takeSync(t testing.TB, db *DB, uid, peer uint64) []OfflinePage {
	t.Helper()
	res, err := db.ReadOffline(uid, QueueQuery{Peer: peer, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var rs []Removal
	var out []OfflinePage
	for _, pg := range res.Friends {
		r := Removal{Peer: pg.Peer, ReadTo: pg.LastSeq}
		if pg.More {
			r.ReadTo = pg.Msgs[len(pg.Msgs)-1].Seq
		}
		for _, m := range pg.Msgs {
			r.Seqs = append(r.Seqs, m.Seq)
		}
		rs = append(rs, r)
		if len(pg.Msgs) > 0 {
			out = append(out, pg)
		}
	}
	removeSync(t, db, uid, rs)
	return out
}

// flushLazy waits until deferred work submitted before it is committed.
func flushLazy(t testing.TB, db *DB) {
	t.Helper()
	ch := make(chan error, 1)
	if err := db.submit(op{applyFn: func(*tx) error { return nil }, doneFn: func(err error) { ch <- err }}, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func removeSync(t testing.TB, db *DB, uid uint64, rs []Removal) {
	t.Helper()
	ch := make(chan error, 1)
	if err := db.RemoveOffline(uid, rs, func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func seqs(ms []Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func TestSection4_3_AppendPrivate(t *testing.T) {
	db := openTest(t, t.TempDir())
	const a, b = 1, 2
	var online []storage.Delivery
	for i := 1; i <= 5; i++ {
		m := Message{ID: msgID(), From: a, To: b, FromID: "a", ToID: "b", ChatType: ChatPrivate, Content: fmt.Sprint("m", i), CreateTime: int64(1000 + i)}
		if i == 3 {
			m.CreateTime = 900 // a clock step back: times stay non-decreasing
			m.Extras = []byte(`{"k":1}`)
		}
		r := appendSync(t, db, m, i%2 == 0)
		if r.Msg.Seq != uint64(i) || r.Duplicate || (r.Delivery == storage.Delivery{}) != (i%2 == 0) {
			t.Fatalf("message %d: %+v", i, r)
		}
		if i%2 != 0 {
			online = append(online, r.Delivery)
		}
	}
	h, _, err := db.History(b, a, HistoryQuery{Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs(h)) != "[1 2 3 4 5]" || h[2].CreateTime != 1002 || string(h[2].Extras) != `{"k":1}` || h[4].Content != "m5" {
		t.Fatalf("history %+v", h)
	}
	// Receiver: 5 unread, owes a reply; sender: owes nothing.
	if c, err := db.Contact(b, a); err != nil || c.Unread != 5 || !c.Pending || c.LastContact != 1005 {
		t.Fatalf("receiver contact %+v %v", c, err)
	}
	if c, err := db.Contact(a, b); err != nil || c.Unread != 0 || c.Pending {
		t.Fatalf("sender contact %+v %v", c, err)
	}
	// The reply clears the replier's pending flag and starts the other's.
	appendSync(t, db, Message{ID: msgID(), From: b, To: a, ChatType: ChatPrivate, Content: "re", CreateTime: 2000}, false)
	if c, _ := db.Contact(b, a); c.Pending || c.Unread != 5 {
		t.Fatalf("after reply %+v", c)
	}
	// The offline ones were queued; the online ones wait in the batch's
	// journal until their pushes are settled: written, nothing is queued.
	pages := offline(t, db, b, a)
	if len(pages) != 1 || fmt.Sprint(seqs(pages[0].Msgs)) != "[2 4]" {
		t.Fatalf("offline %+v", pages)
	}
	for _, d := range online {
		d.Settle(true)
	}
	flushLazy(t, db)
	pages = offline(t, db, b, a)
	if len(pages) != 1 || fmt.Sprint(seqs(pages[0].Msgs)) != "[2 4]" {
		t.Fatalf("offline after delivery %+v", pages)
	}
	if got := takeSync(t, db, b, 0); len(got) != 1 || got[0].Peer != a || fmt.Sprint(seqs(got[0].Msgs)) != "[2 4]" {
		t.Fatalf("take %+v", got)
	}
	if pages := offline(t, db, b, 0); len(pages) != 0 {
		t.Fatalf("queue not emptied: %+v", pages)
	}
	if c, _ := db.Contact(b, a); c.Unread != 0 {
		t.Fatalf("not marked read: %+v", c)
	}
}

func TestSection4_1_Idempotent(t *testing.T) {
	db := openTest(t, t.TempDir())
	m := Message{ID: msgID(), From: 1, To: 2, ChatType: ChatPrivate, Content: "once", CreateTime: 10}
	first := appendSync(t, db, m, true)
	m.CreateTime = 99
	again := appendSync(t, db, m, true)
	if !again.Duplicate || again.Msg.Seq != first.Msg.Seq || again.Msg.CreateTime != first.Msg.CreateTime {
		t.Fatalf("first %+v again %+v", first, again)
	}
	if h, _, _ := db.History(1, 2, HistoryQuery{Count: 10}); len(h) != 1 {
		t.Fatalf("stored twice: %+v", h)
	}
	if c, _ := db.Contact(2, 1); c.Unread != 1 {
		t.Fatalf("counted twice: %+v", c)
	}
}

func TestSection4_4_HistoryPaging(t *testing.T) {
	db := openTest(t, t.TempDir())
	for i := 1; i <= 10; i++ {
		from, to := uint64(1), uint64(2)
		if i%3 == 0 {
			from, to = to, from
		}
		appendSync(t, db, Message{ID: msgID(), From: from, To: to, ChatType: ChatPrivate, Content: fmt.Sprint(i), CreateTime: int64(100 * i)}, false)
	}
	for _, tc := range []struct {
		name string
		q    HistoryQuery
		want string
	}{
		{"all", HistoryQuery{Count: 500}, "[1 2 3 4 5 6 7 8 9 10]"},
		{"offset 1 count 2", HistoryQuery{Offset: 1, Count: 2}, "[2 3]"},
		{"time window inclusive", HistoryQuery{Begin: 300, End: 500, Count: 500}, "[3 4 5]"},
		{"time window between messages", HistoryQuery{Begin: 250, End: 450, Count: 500}, "[3 4]"},
		{"time window empty", HistoryQuery{Begin: 5000, Count: 500}, "[]"},
		{"newest page", HistoryQuery{Desc: true, Count: 3}, "[10 9 8]"},
		{"page before", HistoryQuery{Desc: true, BeforeSeq: 8, Count: 3}, "[7 6 5]"},
		{"desc offset", HistoryQuery{Desc: true, Offset: 2, Count: 2}, "[8 7]"},
		{"after seq", HistoryQuery{AfterSeq: 8, Count: 500}, "[9 10]"},
		{"before first", HistoryQuery{BeforeSeq: 1, Count: 500}, "[]"},
		{"offset past end", HistoryQuery{Offset: 50, Count: 5}, "[]"},
		{"window and offset", HistoryQuery{Begin: 200, End: 900, Offset: 2, Count: 3}, "[4 5 6]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _, err := db.History(2, 1, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(seqs(h)); got != tc.want {
				t.Fatalf("got %s want %s", got, tc.want)
			}
		})
	}
}

// PROTOCOL §4.4 beginTime/endTime over runs of equal createTimes: the
// window maps to seqs by binary search over the history records.
func TestSection4_4_TimeWindowEqualTimes(t *testing.T) {
	db := openTest(t, t.TempDir())
	for i := 0; i < 100; i++ {
		appendSync(t, db, Message{ID: msgID(), From: 1, To: 2, ChatType: ChatPrivate, Content: "x", CreateTime: int64(i/10*100 + 100)}, false)
	}
	for _, tc := range []struct {
		begin, end  int64
		first, last uint64 // 0, 0: empty
	}{
		{400, 400, 31, 40},
		{350, 450, 31, 40},
		{0, 150, 1, 10},
		{1000, 0, 91, 100},
		{1, 99, 0, 0},
		{1001, 0, 0, 0},
		{0, 1000, 1, 100},
	} {
		h, _, err := db.History(1, 2, HistoryQuery{Begin: tc.begin, End: tc.end, Count: 500})
		if err != nil {
			t.Fatal(err)
		}
		var first, last uint64
		if len(h) > 0 {
			first, last = h[0].Seq, h[len(h)-1].Seq
		}
		if first != tc.first || last != tc.last || (len(h) > 0 && uint64(len(h)) != last-first+1) {
			t.Fatalf("window [%d, %d]: %d messages, seqs %d..%d, want %d..%d", tc.begin, tc.end, len(h), first, last, tc.first, tc.last)
		}
	}
}

func TestSection4_3_SurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		appendSync(t, db, Message{ID: msgID(), From: 5, To: 6, ChatType: ChatPrivate, Content: "x", CreateTime: 50}, true)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	r := appendSync(t, db, Message{ID: msgID(), From: 6, To: 5, ChatType: ChatPrivate, Content: "y", CreateTime: 10}, false)
	if r.Msg.Seq != 4 || r.Msg.CreateTime != 50 {
		t.Fatalf("after reopen: %+v", r.Msg)
	}
	if pages := offline(t, db, 6, 5); len(pages) != 1 || len(pages[0].Msgs) != 3 {
		t.Fatalf("queue after reopen %+v", pages)
	}
}

// 50 senders × 200 messages to one receiver: every seq unique and gap-free
// per conversation, contact counters exact, and commits grouped.
func TestSection4_2_ConcurrentAppends(t *testing.T) {
	db := openTest(t, t.TempDir())
	const senders, each = 50, 200
	const receiver = 1000
	var wg sync.WaitGroup
	for s := uint64(1); s <= senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mu sync.Mutex
			got := make([]uint64, 0, each)
			var inner sync.WaitGroup
			for i := 0; i < each; i++ {
				inner.Add(1)
				err := db.AppendPrivate(Message{ID: msgID(), From: s, To: receiver, ChatType: ChatPrivate, Content: "c", CreateTime: int64(i)}, AppendOptions{Offline: true}, func(r AppendResult) {
					defer inner.Done()
					if r.Err != nil {
						t.Error(r.Err)
						return
					}
					mu.Lock()
					got = append(got, r.Msg.Seq)
					mu.Unlock()
				})
				if err != nil {
					t.Error(err)
					inner.Done()
				}
			}
			inner.Wait()
			// Acks arrive in submit order, so seqs are exactly 1..each.
			for i, s := range got {
				if s != uint64(i+1) {
					t.Errorf("sender seqs %v", got[:min(len(got), 10)])
					return
				}
			}
		}()
	}
	wg.Wait()
	for s := uint64(1); s <= senders; s++ {
		if c, err := db.Contact(receiver, s); err != nil || c.Unread != each {
			t.Fatalf("contact %d: %+v %v", s, c, err)
		}
	}
	st := db.CommitStats()
	if st.Ops != senders*each || st.Batches >= st.Ops {
		t.Fatalf("commit stats %+v: not grouped", st)
	}
	t.Logf("%d appends in %d synced commits", st.Ops, st.Batches)
}
