package storagetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/imgate/imgate/storage"
)

// appendedChan is an Appended that forwards its result.
type appendedChan chan storage.AppendResult

func (c appendedChan) Appended(r storage.AppendResult) { c <- r }

// PROTOCOL §4.1-§4.3: a private message gets the conversation's next seq
// and a createTime that never goes back; it is stored as sent; the
// receiver's record counts it unread and owes a reply; an offline message
// is queued, an online one waits for its push and, written, is not; a pull
// of the whole queue empties it and marks the conversation read.
func testAppendPrivate(f *fixture) {
	t := f.t
	const a, b = 1, 2
	var online []storage.Delivery
	var stored []storage.Message
	for i := 1; i <= 5; i++ {
		m := priv(a, b, fmt.Sprint("m", i))
		m.CreateTime = int64(1000 + i)
		m.MsgType = i % 3
		if i == 3 {
			m.CreateTime = 900 // a clock step back: times stay non-decreasing
			m.Extras = []byte(`{"k":1}`)
		}
		offline := i%2 == 0
		opts := storage.AppendOptions{Offline: offline, ClientID: true}
		var r storage.AppendResult
		if i == 5 {
			ch := make(appendedChan, 1)
			if err := f.s.AppendPrivateTo(m, opts, ch); err != nil {
				t.Fatal(err)
			}
			if r = await(t, (<-chan storage.AppendResult)(ch), "AppendPrivateTo"); r.Err != nil {
				t.Fatal(r.Err)
			}
		} else {
			r = f.append(m, opts)
		}
		want := m
		want.Seq = uint64(i)
		if i == 3 {
			want.CreateTime = 1002
		}
		if d := sameMessage(r.Msg, want); d != "" || r.Duplicate {
			t.Fatalf("message %d: %s; duplicate %v", i, d, r.Duplicate)
		}
		if (r.Delivery == storage.Delivery{}) != offline {
			t.Fatalf("message %d (offline %v): delivery %+v", i, offline, r.Delivery)
		}
		if !offline {
			online = append(online, r.Delivery)
		}
		stored = append(stored, r.Msg)
	}
	h, more := f.history(b, a, storage.HistoryQuery{Count: 100})
	if len(h) != 5 || more {
		t.Fatalf("history %+v more %v", h, more)
	}
	for i := range h {
		if d := sameMessage(h[i], stored[i]); d != "" {
			t.Fatalf("history %d: %s", i, d)
		}
	}
	// Receiver: 5 unread, owes a reply; sender: owes nothing.
	if c := f.contact(b, a); c.Unread != 5 || !c.Pending || c.LastContact != 1005 || c.LastMessage != 1005 || c.LastSeq != 5 {
		t.Fatalf("receiver contact %+v", c)
	}
	if c := f.contact(a, b); c.Unread != 0 || c.Pending || c.LastSeq != 5 {
		t.Fatalf("sender contact %+v", c)
	}
	// The reply clears the replier's pending flag and starts the other's.
	re := priv(b, a, "re")
	re.CreateTime = 2000
	f.sendOffline(re)
	if c := f.contact(b, a); c.Pending || c.Unread != 5 {
		t.Fatalf("replier after the reply %+v", c)
	}
	if c := f.contact(a, b); !c.Pending || c.Unread != 1 {
		t.Fatalf("the other after the reply %+v", c)
	}
	// The offline ones were queued; the online ones wait for their
	// pushes: written, nothing is queued.
	if got := str(f.queued(b, a)); got != "[2 4]" {
		t.Fatalf("queued %s, want [2 4]", got)
	}
	for _, d := range online {
		d.Settle(true)
	}
	if got := str(f.queued(b, a)); got != "[2 4]" {
		t.Fatalf("queued after the pushes were written %s, want [2 4]", got)
	}
	if got := fmt.Sprint(f.take(b, 0)); got != "map[1:[2 4]]" {
		t.Fatalf("pull of every queue: %s", got)
	}
	if got := f.queued(b, a); len(got) != 0 {
		t.Fatalf("queue not emptied: %v", got)
	}
	if c := f.contact(b, a); c.Unread != 0 || c.ReadSeq != 6 {
		t.Fatalf("not marked read: %+v", c)
	}
}

// PROTOCOL §4.3 with §4.6: a message to oneself is stored, but makes no
// contact, no unread, no conversation and no queue entry, whatever its
// push's outcome.
func testMessageToSelf(f *fixture) {
	t := f.t
	f.sendOffline(priv(1, 1, "note to self"))
	r := f.append(priv(1, 1, "another"), storage.AppendOptions{ClientID: true})
	r.Delivery.Settle(false)
	if n := f.counts(1); n != (storage.ContactCounts{}) {
		t.Fatalf("counts %+v, want none", n)
	}
	if _, err := f.s.Contact(1, 1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("self contact: %v", err)
	}
	if err := f.s.QueuePending(1); err != nil {
		t.Fatal(err)
	}
	if got := f.queued(1, 1); len(got) != 0 {
		t.Fatalf("queued to oneself: %v", got)
	}
	if got := f.conversations(1, 0, 0); got != "[]" {
		t.Fatalf("conversations %s", got)
	}
	h, _ := f.history(1, 1, storage.HistoryQuery{Count: 10})
	if len(h) != 2 || h[0].Content != "note to self" || h[1].Seq != 2 || h[1].From != 1 || h[1].To != 1 {
		t.Fatalf("history %+v", h)
	}
	if n := f.lastSeq(1, 1, false); n != 2 {
		t.Fatalf("last seq %d", n)
	}
}

// PROTOCOL §0 and §4.1: a message whose sender chose no id gets one in
// the result (the store may replace the server's with its own: time-ordered
// and unique), and that id is the message's: a resend of it is the same
// message, the ack as the first time, and the sender can recall by it;
// nobody else can.
func testServerMadeIDs(f *fixture) {
	t := f.t
	var id1, id2 [16]byte // as the router makes them: time-ordered
	binary.BigEndian.PutUint64(id1[:], 1<<62)
	binary.BigEndian.PutUint64(id2[:], 1<<62+1)
	m1, m2 := priv(1, 2, "queued"), priv(1, 2, "pushed")
	m1.ID, m2.ID = id1, id2
	r1 := f.append(m1, storage.AppendOptions{Offline: true})
	r2 := f.append(m2, storage.AppendOptions{})
	r2.Delivery.Settle(true)
	if r1.Msg.ID == ([16]byte{}) || bytes.Compare(r1.Msg.ID[:], r2.Msg.ID[:]) >= 0 {
		t.Fatalf("ids %x then %x: want two, in order", r1.Msg.ID, r2.Msg.ID)
	}
	again := f.append(storage.Message{ID: r1.Msg.ID, From: 1, To: 2, ChatType: storage.ChatPrivate, Content: "x"}, storage.AppendOptions{ClientID: true})
	if !again.Duplicate || again.Online || again.Msg.Seq != 1 || again.Msg.Content != "queued" {
		t.Fatalf("a resend of the queued message's id: %+v", again)
	}
	again = f.append(storage.Message{ID: r2.Msg.ID, From: 1, To: 2, ChatType: storage.ChatPrivate, Content: "x"}, storage.AppendOptions{ClientID: true, Offline: true})
	if !again.Duplicate || !again.Online || again.Msg.Seq != 2 {
		t.Fatalf("a resend of the pushed message's id: %+v", again)
	}
	if _, err := f.recall(2, r1.Msg.ID, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("recall of 1's message by 2: %v, want ErrNotFound", err)
	}
	forged := r2.Msg.ID
	forged[15] ^= 1
	if _, err := f.recall(1, forged, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("recall by an id one bit off: %v, want ErrNotFound", err)
	}
	if m := f.mustRecall(1, r2.Msg.ID); m.Seq != 2 || !m.Recalled {
		t.Fatalf("recalled %+v", m)
	}
	h, _ := f.history(1, 2, storage.HistoryQuery{Count: 10})
	if len(h) != 2 || h[0].ID != r1.Msg.ID || h[1].ID != r2.Msg.ID || !h[1].Recalled {
		t.Fatalf("history %+v", h)
	}
}

// PROTOCOL §4.1 (ext): a resend of the same id by the same sender is not
// stored again: it gets the stored message, Duplicate, and Online as the
// first time was; nothing is counted or queued twice. Another sender's
// message with the same id is its own.
func testIdempotentResend(f *fixture) {
	t := f.t
	m := priv(1, 2, "once")
	m.CreateTime = 10
	first := f.sendOffline(m)
	resend := m
	resend.CreateTime, resend.Content = 99, "changed"
	again := f.sendOffline(resend)
	if !again.Duplicate || again.Online {
		t.Fatalf("resend of an offline message: %+v", again)
	}
	if d := sameMessage(again.Msg, first.Msg); d != "" {
		t.Fatalf("resend: %s", d)
	}
	again = f.append(resend, storage.AppendOptions{ClientID: true}) // now online
	if !again.Duplicate || again.Online || again.Msg.Seq != 1 {
		t.Fatalf("online resend of an offline message: %+v", again)
	}

	on := priv(1, 2, "online")
	firstOn := f.sendOnline(on)
	againOn := f.sendOffline(on)
	if !againOn.Duplicate || !againOn.Online || againOn.Msg.Seq != firstOn.Msg.Seq || againOn.Msg.Content != "online" {
		t.Fatalf("resend of an online message: %+v", againOn)
	}
	firstOn.Delivery.Settle(true)

	if h, _ := f.history(1, 2, storage.HistoryQuery{Count: 10}); str(seqs(h)) != "[1 2]" {
		t.Fatalf("history %v", seqs(h))
	}
	if c := f.contact(2, 1); c.Unread != 2 || c.LastSeq != 2 {
		t.Fatalf("counted twice: %+v", c)
	}
	if got := str(f.queued(2, 1)); got != "[1]" {
		t.Fatalf("queued %s, want [1]", got)
	}

	other := m
	other.From, other.FromID = 3, name(3)
	if r := f.sendOffline(other); r.Duplicate || r.Msg.Seq != 1 || r.Msg.From != 3 {
		t.Fatalf("another sender's message with the same id: %+v", r)
	}
}

// PROTOCOL §4.1 (ext): concurrent resends of one client id store it once.
func testConcurrentResendsStoreOnce(f *fixture) {
	t, s := f.t, f.s
	const n = 16
	m := priv(1, 2, "racing")
	results := make(chan storage.AppendResult, n)
	for i := 0; i < n; i++ {
		go func() {
			if err := s.AppendPrivate(m, storage.AppendOptions{Offline: true, ClientID: true}, func(r storage.AppendResult) { results <- r }); err != nil {
				results <- storage.AppendResult{Err: err}
			}
		}()
	}
	fresh := 0
	for i := 0; i < n; i++ {
		r := await(t, results, "AppendPrivate")
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if !r.Duplicate {
			fresh++
		}
		if r.Msg.ID != m.ID || r.Msg.Seq != 1 || r.Msg.Content != "racing" {
			t.Fatalf("result %+v", r)
		}
	}
	if fresh != 1 {
		t.Fatalf("%d of %d resends stored, want 1", fresh, n)
	}
	if h, _ := f.history(1, 2, storage.HistoryQuery{Count: 100}); len(h) != 1 {
		t.Fatalf("stored %d times", len(h))
	}
	if c := f.contact(2, 1); c.Unread != 1 {
		t.Fatalf("counted %d times", c.Unread)
	}
	if got := str(f.queued(2, 1)); got != "[1]" {
		t.Fatalf("queued %s", got)
	}
}

// PROTOCOL §4.1, §4.2: 16 goroutines appending 50 messages each to one
// conversation, from both sides: seqs are 1..800 with no gap and no
// duplicate, each goroutine's increase, createTime never decreases along
// seq, and the history is what the appends reported.
func testGapFreeSeqUnderConcurrentAppends(f *fixture) {
	t, s := f.t, f.s
	const goroutines, each = 16, 50
	const a, b = 1, 2
	const total = goroutines * each
	before := s.CommitStats()
	got := make([][]storage.Message, goroutines)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Go(func() {
			from, to := uint64(a), uint64(b)
			if g%2 == 1 {
				from, to = to, from
			}
			for i := 0; i < each; i++ {
				m := priv(from, to, fmt.Sprint(g, ".", i))
				m.CreateTime = int64(1000 + (i*7919+g*104729)%5000) // jumps back and forth
				ch := make(chan storage.AppendResult, 1)
				if err := s.AppendPrivate(m, storage.AppendOptions{Offline: true, ClientID: true}, func(r storage.AppendResult) { ch <- r }); err != nil {
					t.Error(err)
					return
				}
				var r storage.AppendResult
				select {
				case r = <-ch:
				case <-time.After(waitTimeout):
					t.Errorf("goroutine %d: append %d: no outcome", g, i)
					return
				}
				if r.Err != nil || r.Duplicate || r.Msg.ID != m.ID {
					t.Errorf("goroutine %d: append %d: %+v", g, i, r)
					return
				}
				got[g] = append(got[g], r.Msg)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	bySeq := make(map[uint64]storage.Message, total)
	for g, ms := range got {
		for i, m := range ms {
			if i > 0 && (m.Seq <= ms[i-1].Seq || m.CreateTime < ms[i-1].CreateTime) {
				t.Fatalf("goroutine %d: append %d got seq %d at %d after seq %d at %d", g, i, m.Seq, m.CreateTime, ms[i-1].Seq, ms[i-1].CreateTime)
			}
			if prev, dup := bySeq[m.Seq]; dup {
				t.Fatalf("seq %d given twice: %+v and %+v", m.Seq, prev, m)
			}
			bySeq[m.Seq] = m
		}
	}
	h, more := f.history(a, b, storage.HistoryQuery{Count: 2 * total})
	if len(h) != total || more {
		t.Fatalf("history holds %d messages (more %v), want %d", len(h), more, total)
	}
	for i, m := range h {
		if m.Seq != uint64(i+1) {
			t.Fatalf("history position %d has seq %d", i, m.Seq)
		}
		if i > 0 && m.CreateTime < h[i-1].CreateTime {
			t.Fatalf("createTime goes back at seq %d: %d after %d", m.Seq, m.CreateTime, h[i-1].CreateTime)
		}
		if d := sameMessage(m, bySeq[m.Seq]); d != "" {
			t.Fatalf("seq %d: stored and reported differ: %s", m.Seq, d)
		}
	}
	if n := f.lastSeq(a, b, false); n != total {
		t.Fatalf("last seq %d", n)
	}
	if n := f.lastSeq(b, a, false); n != total {
		t.Fatalf("last seq from the other side %d", n)
	}
	for _, p := range [][2]uint64{{a, b}, {b, a}} {
		if c := f.contact(p[0], p[1]); c.Unread != total/2 || c.LastSeq != total {
			t.Fatalf("%d's record of %d: %+v, want %d unread", p[0], p[1], c, total/2)
		}
	}
	st := s.CommitStats()
	if ops := st.Ops - before.Ops; ops < total || st.Batches <= before.Batches || st.Batches > st.Ops {
		t.Fatalf("commit stats %+v after %+v: %d operations for %d appends", st, before, ops, total)
	}
}

// PROTOCOL §4.2, §4.3: 20 senders, each with 50 appends in flight at once,
// to one receiver: each conversation's seqs are 1..50, the counters exact,
// every message queued once.
func testConcurrentAppendsToOneReceiver(f *fixture) {
	t, s := f.t, f.s
	const senders, each = 20, 50
	const receiver = 1000
	var wg sync.WaitGroup
	for sender := uint64(1); sender <= senders; sender++ {
		wg.Go(func() {
			results := make(chan storage.AppendResult, each)
			for i := 0; i < each; i++ {
				m := priv(sender, receiver, "c")
				m.CreateTime = int64(i)
				if err := s.AppendPrivate(m, storage.AppendOptions{Offline: true}, func(r storage.AppendResult) { results <- r }); err != nil {
					t.Error(err)
					return
				}
			}
			var got []uint64
			for i := 0; i < each; i++ {
				select {
				case r := <-results:
					if r.Err != nil {
						t.Error(r.Err)
						return
					}
					got = append(got, r.Msg.Seq)
				case <-time.After(waitTimeout):
					t.Errorf("sender %d: %d of %d appends done", sender, i, each)
					return
				}
			}
			slices.Sort(got)
			for i, seq := range got {
				if seq != uint64(i+1) {
					t.Errorf("sender %d: seqs %v", sender, got)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for sender := uint64(1); sender <= senders; sender++ {
		if c := f.contact(receiver, sender); c.Unread != each || !c.Pending || c.LastSeq != each {
			t.Fatalf("contact %d: %+v", sender, c)
		}
	}
	if n := f.counts(receiver); n.Contacts != senders || n.Pending != senders {
		t.Fatalf("receiver counts %+v", n)
	}
	f.barrier()
	page, err := s.ReadOffline(receiver, storage.QueueQuery{Limit: 10 * senders * each})
	if err != nil {
		t.Fatal(err)
	}
	if page.More || len(page.Friends) != senders {
		t.Fatalf("%d pages, more %v", len(page.Friends), page.More)
	}
	for _, pg := range page.Friends {
		if len(pg.Msgs) != each || pg.More || pg.LastSeq != each {
			t.Fatalf("queue of %d: %d messages, more %v, last seq %d", pg.Peer, len(pg.Msgs), pg.More, pg.LastSeq)
		}
	}
}

// PROTOCOL §4.3: a conversation goes on after a restart: its next seq
// follows the last, its times do not go back, its queue is kept.
func testSurvivesReopen(f *fixture) {
	t := f.t
	for i := 0; i < 3; i++ {
		m := priv(5, 6, "x")
		m.CreateTime = 50
		f.sendOffline(m)
	}
	f.reopen()
	m := priv(6, 5, "y")
	m.CreateTime = 10
	r := f.sendOffline(m)
	if r.Msg.Seq != 4 || r.Msg.CreateTime != 50 {
		t.Fatalf("after reopen: %+v", r.Msg)
	}
	if got := str(f.queued(6, 5)); got != "[1 2 3]" {
		t.Fatalf("queue after reopen %s", got)
	}
	if h, _ := f.history(5, 6, storage.HistoryQuery{Count: 10}); str(seqs(h)) != "[1 2 3 4]" {
		t.Fatalf("history after reopen %v", seqs(h))
	}
}

// PROTOCOL §4.4: history pages select by createTime (both ends
// inclusive), seq bounds, offset and count, oldest or newest first, and
// under a byte budget; "more" says whether the selection goes on.
func testHistoryPaging(f *fixture) {
	t := f.t
	for i := 1; i <= 10; i++ {
		from, to := uint64(1), uint64(2)
		if i%3 == 0 {
			from, to = to, from
		}
		m := priv(from, to, fmt.Sprintf("%02d", i))
		m.CreateTime = int64(100 * i)
		f.sendOffline(m)
	}
	all, _ := f.history(1, 2, storage.HistoryQuery{Count: 500})
	if len(all) != 10 {
		t.Fatalf("history of 10: %d", len(all))
	}
	size := storage.MessageSize(&all[0]) // every message weighs the same
	for i, m := range all {
		from := uint64(1)
		if (i+1)%3 == 0 {
			from = 2
		}
		if m.Seq != uint64(i+1) || m.From != from || m.To != 3-from || m.Content != fmt.Sprintf("%02d", i+1) || m.CreateTime != int64(100*(i+1)) || storage.MessageSize(&m) != size {
			t.Fatalf("message %d: %+v", i+1, m)
		}
	}
	for _, tc := range []struct {
		name string
		q    storage.HistoryQuery
		want string
		more bool
	}{
		{"all", storage.HistoryQuery{Count: 500}, "[1 2 3 4 5 6 7 8 9 10]", false},
		{"count exact", storage.HistoryQuery{Count: 10}, "[1 2 3 4 5 6 7 8 9 10]", false},
		{"offset 1 count 2", storage.HistoryQuery{Offset: 1, Count: 2}, "[2 3]", true},
		{"last page exact", storage.HistoryQuery{Offset: 7, Count: 3}, "[8 9 10]", false},
		{"offset past end", storage.HistoryQuery{Offset: 50, Count: 5}, "[]", false},
		{"time window inclusive", storage.HistoryQuery{Begin: 300, End: 500, Count: 500}, "[3 4 5]", false},
		{"time window between messages", storage.HistoryQuery{Begin: 250, End: 450, Count: 500}, "[3 4]", false},
		{"time window after the last", storage.HistoryQuery{Begin: 5000, Count: 500}, "[]", false},
		{"time window before the first", storage.HistoryQuery{End: 50, Count: 500}, "[]", false},
		{"time window from", storage.HistoryQuery{Begin: 900, Count: 500}, "[9 10]", false},
		{"time window to", storage.HistoryQuery{End: 200, Count: 500}, "[1 2]", false},
		{"window and offset", storage.HistoryQuery{Begin: 200, End: 900, Offset: 2, Count: 3}, "[4 5 6]", true},
		{"window and seqs", storage.HistoryQuery{Begin: 200, End: 900, AfterSeq: 4, BeforeSeq: 9, Count: 10}, "[5 6 7 8]", false},
		{"newest page", storage.HistoryQuery{Desc: true, Count: 3}, "[10 9 8]", true},
		{"page before", storage.HistoryQuery{Desc: true, BeforeSeq: 8, Count: 3}, "[7 6 5]", true},
		{"desc offset", storage.HistoryQuery{Desc: true, Offset: 2, Count: 2}, "[8 7]", true},
		{"desc last page", storage.HistoryQuery{Desc: true, Offset: 7, Count: 5}, "[3 2 1]", false},
		{"desc offset past end", storage.HistoryQuery{Desc: true, Offset: 20, Count: 3}, "[]", false},
		{"desc after seq", storage.HistoryQuery{Desc: true, AfterSeq: 7, Count: 5}, "[10 9 8]", false},
		{"desc seq range", storage.HistoryQuery{Desc: true, AfterSeq: 3, BeforeSeq: 7, Count: 2}, "[6 5]", true},
		{"desc time window", storage.HistoryQuery{Desc: true, Begin: 300, End: 600, Count: 2}, "[6 5]", true},
		{"after seq", storage.HistoryQuery{AfterSeq: 8, Count: 500}, "[9 10]", false},
		{"after the last seq", storage.HistoryQuery{AfterSeq: 10, Count: 500}, "[]", false},
		{"seq range", storage.HistoryQuery{AfterSeq: 3, BeforeSeq: 7, Count: 500}, "[4 5 6]", false},
		{"before the first seq", storage.HistoryQuery{BeforeSeq: 1, Count: 500}, "[]", false},
		{"before seq 2", storage.HistoryQuery{BeforeSeq: 2, Count: 500}, "[1]", false},
		{"bytes of three", storage.HistoryQuery{MaxBytes: 3 * size, Count: 500}, "[1 2 3]", true},
		{"bytes: the first always", storage.HistoryQuery{MaxBytes: 1, Count: 500}, "[1]", true},
		{"bytes, newest first", storage.HistoryQuery{Desc: true, MaxBytes: 2 * size, Count: 500}, "[10 9]", true},
		{"bytes and count", storage.HistoryQuery{MaxBytes: 3 * size, Count: 2}, "[1 2]", true},
		{"bytes to spare", storage.HistoryQuery{MaxBytes: 100 * size, Count: 500}, "[1 2 3 4 5 6 7 8 9 10]", false},
		{"bytes of the rest", storage.HistoryQuery{AfterSeq: 7, MaxBytes: 3 * size, Count: 500}, "[8 9 10]", false},
	} {
		for _, side := range [][2]uint64{{2, 1}, {1, 2}} {
			h, more := f.history(side[0], side[1], tc.q)
			if got := str(seqs(h)); got != tc.want || more != tc.more {
				t.Fatalf("%s (from %d's side): %s more %v, want %s more %v", tc.name, side[0], got, more, tc.want, tc.more)
			}
		}
	}
}

// PROTOCOL §4.4 beginTime/endTime over runs of equal createTimes.
func testTimeWindowEqualTimes(f *fixture) {
	t := f.t
	for i := 0; i < 100; i++ {
		m := priv(1, 2, "x")
		m.CreateTime = int64(i/10*100 + 100)
		f.sendOffline(m)
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
		{100, 100, 1, 10},
		{550, 560, 0, 0},
	} {
		h, more := f.history(1, 2, storage.HistoryQuery{Begin: tc.begin, End: tc.end, Count: 500})
		var first, last uint64
		if len(h) > 0 {
			first, last = h[0].Seq, h[len(h)-1].Seq
		}
		if more || first != tc.first || last != tc.last || (len(h) > 0 && uint64(len(h)) != last-first+1) {
			t.Fatalf("window [%d, %d]: %d messages, seqs %d..%d, more %v; want %d..%d", tc.begin, tc.end, len(h), first, last, more, tc.first, tc.last)
		}
	}
}
