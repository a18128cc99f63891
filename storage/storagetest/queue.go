package storagetest

import (
	"errors"
	"fmt"
	"slices"

	"github.com/imgate/imgate/storage"
)

// PROTOCOL §4.4, §4.6, §7.4: reads of what does not exist answer empty,
// not with an error; a query of one private queue returns its page even
// when empty, with the conversation's last seq.
func testEmptyPages(f *fixture) {
	t, s := f.t, f.s
	if h, more := f.history(1, 2, storage.HistoryQuery{Count: 10}); len(h) != 0 || more {
		t.Fatalf("history of nothing %+v %v", h, more)
	}
	if h, more := f.history(1, 2, storage.HistoryQuery{Desc: true, Begin: 1, End: 1 << 50, Count: 10}); len(h) != 0 || more {
		t.Fatalf("history of nothing, desc in a window %+v %v", h, more)
	}
	if h, more := f.groupHistory(999, storage.HistoryQuery{Count: 10}); len(h) != 0 || more {
		t.Fatalf("group history of nothing %+v %v", h, more)
	}
	if n := f.lastSeq(1, 2, false); n != 0 {
		t.Fatalf("last seq of nothing %d", n)
	}
	if n := f.lastSeq(1, 999, true); n != 0 {
		t.Fatalf("last seq of no group %d", n)
	}
	res, err := s.ReadOffline(1, storage.QueueQuery{Peer: 2, Limit: 10})
	if err != nil || res.More || len(res.Groups) != 0 || len(res.Friends) != 1 {
		t.Fatalf("empty queue %+v %v", res, err)
	}
	if pg := res.Friends[0]; pg.Peer != 2 || len(pg.Msgs) != 0 || pg.More || pg.LastSeq != 0 {
		t.Fatalf("empty queue's page %+v", pg)
	}
	res, err = s.ReadOffline(1, storage.QueueQuery{Limit: 10})
	if err != nil || res.More || len(res.Groups) != 0 {
		t.Fatalf("all queues of nobody %+v %v", res, err)
	}
	for _, pg := range res.Friends {
		if len(pg.Msgs) > 0 {
			t.Fatalf("all queues of nobody %+v", res)
		}
	}
	res, err = s.ReadOffline(1, storage.QueueQuery{Group: 999, Limit: 10})
	if err != nil || res.More || len(res.Friends) != 0 {
		t.Fatalf("group queue of nobody %+v %v", res, err)
	}
	for _, pg := range res.Groups {
		if len(pg.Msgs) > 0 {
			t.Fatalf("group queue of nobody %+v", res)
		}
	}
	// A conversation whose messages were all written to connections: the
	// empty page still says how far it goes.
	for i := 0; i < 2; i++ {
		f.sendOnline(priv(3, 4, "pushed")).Delivery.Settle(true)
	}
	f.barrier()
	res, err = s.ReadOffline(4, storage.QueueQuery{Peer: 3, Limit: 10})
	if err != nil || len(res.Friends) != 1 || len(res.Friends[0].Msgs) != 0 || res.Friends[0].LastSeq != 2 || res.More {
		t.Fatalf("empty queue of a conversation of 2: %+v %v", res, err)
	}

	if n := f.counts(1); n != (storage.ContactCounts{}) {
		t.Fatalf("counts of nobody %+v", n)
	}
	if _, err := s.Contact(1, 2); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("contact of nobody: %v", err)
	}
	if got := f.contactOrder(1); got != "[]" {
		t.Fatalf("contacts of nobody %s", got)
	}
	if got := f.conversations(1, 0, 0); got != "[]" {
		t.Fatalf("conversations of nobody %s", got)
	}
	if n, err := s.RecentCount(1, 0); err != nil || n != 0 {
		t.Fatalf("recent of nobody %d %v", n, err)
	}
	if p, err := s.LastPartner(1); err != nil || p != 0 {
		t.Fatalf("partner of nobody %d %v", p, err)
	}
	if _, err := s.GroupByID("nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown group: %v", err)
	}
	if got := f.members(999); got != "[]" {
		t.Fatalf("members of no group %s", got)
	}
	if got := f.userGroups(1); got != "[]" {
		t.Fatalf("groups of nobody %s", got)
	}
	if f.isMember(999, 1) {
		t.Fatal("member of no group")
	}
	if n := f.groupReadSeq(1, 999); n != 0 {
		t.Fatalf("read seq in no group %d", n)
	}
	if n := f.groupUnread(1, 999, 0, 0); n != 0 {
		t.Fatalf("unread in no group %d", n)
	}
}

// PROTOCOL §4.4: offline pages are capped by a message limit and a byte
// budget (the first message always read), say "more" per queue and for
// the query, list private queues before group queues, and a pull that
// removes what it carried drains everything exactly once.
func testOfflinePagesCapped(f *fixture) {
	t, s := f.t, f.s
	const r = 10
	for i := 0; i < 5; i++ {
		f.sendOffline(priv(1, r, "mm"))
	}
	for i := 0; i < 3; i++ {
		f.sendOffline(priv(2, r, "mm"))
	}
	gid := f.mustJoin("g", r)
	f.mustJoin("g", 3)
	for i := 0; i < 2; i++ {
		f.appendGroup(grp(3, gid, "g", "gg"), nil, []uint64{r}, storage.AppendOptions{})
	}
	f.barrier()
	read := func(q storage.QueueQuery) storage.QueuePage {
		t.Helper()
		res, err := s.ReadOffline(r, q)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	count := func(res storage.QueuePage) int {
		n := 0
		for _, pg := range append(slices.Clone(res.Friends), res.Groups...) {
			n += len(pg.Msgs)
		}
		return n
	}

	res := read(storage.QueueQuery{Limit: 100})
	friends := map[uint64]string{}
	for _, pg := range res.Friends {
		if pg.More || friends[pg.Peer] != "" {
			t.Fatalf("page %+v", pg)
		}
		friends[pg.Peer] = fmt.Sprintf("%v last %d", seqs(pg.Msgs), pg.LastSeq)
	}
	if res.More || fmt.Sprint(friends) != "map[1:[1 2 3 4 5] last 5 2:[1 2 3] last 3]" {
		t.Fatalf("every queue: friends %v, more %v", friends, res.More)
	}
	if len(res.Groups) != 1 || res.Groups[0].Peer != gid || str(seqs(res.Groups[0].Msgs)) != "[1 2]" || res.Groups[0].More {
		t.Fatalf("every queue: groups %+v", res.Groups)
	}
	for _, m := range res.Groups[0].Msgs {
		if m.Group != gid || m.GroupID != "g" || m.From != 3 || m.ChatType != storage.ChatGroup {
			t.Fatalf("queued group message %+v", m)
		}
	}
	size := storage.MessageSize(&res.Friends[0].Msgs[0])

	for _, tc := range []struct {
		name     string
		q        storage.QueueQuery
		want     string
		pageMore bool
	}{
		{"limit 2", storage.QueueQuery{Peer: 1, Limit: 2}, "[1 2]", true},
		{"limit 5", storage.QueueQuery{Peer: 1, Limit: 5}, "[1 2 3 4 5]", false},
		{"bytes of two", storage.QueueQuery{Peer: 1, Limit: 100, MaxBytes: 2 * size}, "[1 2]", true},
		{"bytes: the first always", storage.QueueQuery{Peer: 1, Limit: 100, MaxBytes: 1}, "[1]", true},
		{"bytes to spare", storage.QueueQuery{Peer: 1, Limit: 100, MaxBytes: 100 * size}, "[1 2 3 4 5]", false},
		{"bytes and limit", storage.QueueQuery{Peer: 1, Limit: 3, MaxBytes: 4 * size}, "[1 2 3]", true},
	} {
		res := read(tc.q)
		if len(res.Friends) != 1 || len(res.Groups) != 0 {
			t.Fatalf("%s: %+v", tc.name, res)
		}
		pg := res.Friends[0]
		if got := str(seqs(pg.Msgs)); pg.Peer != 1 || got != tc.want || pg.More != tc.pageMore || res.More != tc.pageMore || pg.LastSeq != 5 {
			t.Fatalf("%s: page %s (peer %d, more %v, query more %v, last seq %d), want %s more %v", tc.name, got, pg.Peer, pg.More, res.More, pg.LastSeq, tc.want, tc.pageMore)
		}
	}
	res = read(storage.QueueQuery{Group: gid, Limit: 1})
	if len(res.Friends) != 0 || len(res.Groups) != 1 || str(seqs(res.Groups[0].Msgs)) != "[1]" || !res.Groups[0].More || !res.More {
		t.Fatalf("group queue, limit 1: %+v", res)
	}
	for limit, more := range map[int]bool{1: true, 4: true, 6: true, 8: true, 9: true, 10: false, 11: false} {
		if res := read(storage.QueueQuery{Limit: limit}); count(res) != min(limit, 10) || res.More != more {
			t.Fatalf("every queue, limit %d: %d messages, more %v; want %d, more %v", limit, count(res), res.More, min(limit, 10), more)
		}
	}

	// Pages of 3, each removed once its reply is written: every entry
	// comes exactly once, and the queues end empty.
	seen := map[string]int{}
	for round := 0; ; round++ {
		if round > 10 {
			t.Fatalf("not drained after %d pulls: %v", round, seen)
		}
		res := read(storage.QueueQuery{Limit: 3})
		if count(res) == 0 {
			if res.More {
				t.Fatal("an empty page says more")
			}
			break
		}
		if count(res) != 3 && res.More {
			t.Fatalf("a page of %d says more", count(res))
		}
		var rs []storage.Removal
		for _, pg := range res.Friends {
			rs = append(rs, storage.Removal{Peer: pg.Peer, Seqs: seqs(pg.Msgs)})
			for _, m := range pg.Msgs {
				seen[fmt.Sprintf("u%d:%d", pg.Peer, m.Seq)]++
			}
		}
		for _, pg := range res.Groups {
			rs = append(rs, storage.Removal{Peer: pg.Peer, Group: true, Seqs: seqs(pg.Msgs)})
			for _, m := range pg.Msgs {
				seen[fmt.Sprintf("g%d:%d", pg.Peer, m.Seq)]++
			}
		}
		f.remove(r, rs)
	}
	if len(seen) != 10 {
		t.Fatalf("drained %d entries, want 10: %v", len(seen), seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("entry %s pulled %d times", k, n)
		}
	}
	// Removal without ReadTo marks nothing read.
	if c := f.contact(r, 1); c.Unread != 5 || c.ReadSeq != 0 {
		t.Fatalf("removal without ReadTo marked read: %+v", c)
	}
}

// PROTOCOL §4.4: a type 0 pull that carried only part of the queue marks
// read up to what it carried; one that emptied it marks the whole
// conversation read, and an empty pull does too.
func testPartialPull(f *fixture) {
	t := f.t
	for i := range 3 {
		f.sendOffline(priv(1, 2, fmt.Sprint("m", i)))
	}
	f.sendOffline(priv(2, 1, "reply")) // seq 4, from the owner
	res, err := f.s.ReadOffline(2, storage.QueueQuery{Peer: 1, Limit: 2})
	if err != nil || len(res.Friends) != 1 || len(res.Friends[0].Msgs) != 2 || !res.Friends[0].More || !res.More || res.Friends[0].LastSeq != 4 {
		t.Fatalf("page %+v %v", res, err)
	}
	f.remove(2, []storage.Removal{{Peer: 1, Seqs: []uint64{1, 2}, ReadTo: 2}})
	if c := f.contact(2, 1); c.Unread != 1 || c.ReadSeq != 2 {
		t.Fatalf("after a partial pull: %+v, want 1 unread, read to 2", c)
	}
	if got := fmt.Sprint(f.take(2, 1)); got != "map[1:[3]]" {
		t.Fatalf("rest %s", got)
	}
	if c := f.contact(2, 1); c.Unread != 0 || c.ReadSeq != 4 {
		t.Fatalf("after emptying: %+v, want read to the end", c)
	}
	// Pushed (and written) messages are unread until a pull of the empty
	// queue marks them read.
	for range 2 {
		f.sendOnline(priv(1, 2, "pushed")).Delivery.Settle(true)
	}
	f.barrier()
	if c := f.contact(2, 1); c.Unread != 2 {
		t.Fatalf("pushed: %+v", c)
	}
	if got := f.take(2, 1); len(got) != 0 {
		t.Fatalf("queue not empty: %v", got)
	}
	if c := f.contact(2, 1); c.Unread != 0 || c.ReadSeq != 6 {
		t.Fatalf("after an empty pull: %+v", c)
	}
}

// PROTOCOL §4.4 with §7.5: a group pull removes what it carried and moves
// the member's group read cursor, which never goes back; one removal may
// cover private and group queues together.
func testGroupPull(f *fixture) {
	t := f.t
	gid := f.mustJoin("g", 1)
	f.mustJoin("g", 2)
	for i := 0; i < 3; i++ {
		f.appendGroup(grp(1, gid, "g", "x"), nil, []uint64{2}, storage.AppendOptions{})
	}
	f.remove(2, []storage.Removal{{Peer: gid, Group: true, Seqs: []uint64{1, 2}, ReadTo: 2}})
	if got := str(f.groupQueued(2, gid)); got != "[3]" {
		t.Fatalf("after a partial pull %s", got)
	}
	if n := f.groupReadSeq(2, gid); n != 2 {
		t.Fatalf("read seq %d, want 2", n)
	}
	f.remove(2, []storage.Removal{{Peer: gid, Group: true, ReadTo: 1}})
	if n := f.groupReadSeq(2, gid); n != 2 {
		t.Fatalf("read seq went back to %d", n)
	}
	f.remove(2, []storage.Removal{{Peer: gid, Group: true, Seqs: []uint64{3}, ReadTo: 3}})
	if got := f.groupQueued(2, gid); len(got) != 0 || f.groupReadSeq(2, gid) != 3 {
		t.Fatalf("after emptying: %v, read seq %d", got, f.groupReadSeq(2, gid))
	}

	for i := 0; i < 2; i++ {
		f.sendOffline(priv(5, 2, "x"))
	}
	f.appendGroup(grp(1, gid, "g", "x"), nil, []uint64{2}, storage.AppendOptions{})
	f.remove(2, []storage.Removal{
		{Peer: 5, Seqs: []uint64{1, 2}, ReadTo: 2},
		{Peer: gid, Group: true, Seqs: []uint64{4}, ReadTo: 4},
	})
	if got, gq := f.queued(2, 5), f.groupQueued(2, gid); len(got) != 0 || len(gq) != 0 {
		t.Fatalf("after one removal of both: private %v, group %v", got, gq)
	}
	if c := f.contact(2, 5); c.Unread != 0 || c.ReadSeq != 2 {
		t.Fatalf("private conversation after the removal: %+v", c)
	}
	if n := f.groupReadSeq(2, gid); n != 4 {
		t.Fatalf("group read seq %d, want 4", n)
	}
	// Removing what is not queued changes nothing.
	f.remove(2, []storage.Removal{{Peer: 5, Seqs: []uint64{9}}, {Peer: gid, Group: true, Seqs: []uint64{9}}})
	if n := f.groupReadSeq(1, gid); n != 0 {
		t.Fatalf("the sender's read seq moved: %d", n)
	}
}

// PROTOCOL §4.4: a pull first queues what is still awaiting its push to
// the puller (QueuePending): the unsettled pushes to that user, private
// and group, and nothing else; a push settled after that is not queued a
// second time; counters do not move.
func testQueuePending(f *fixture) {
	t, s := f.t, f.s
	r1 := f.sendOnline(priv(1, 2, "unsettled"))
	f.sendOnline(priv(1, 2, "written")).Delivery.Settle(true)
	r3 := f.sendOnline(priv(1, 3, "another receiver's"))
	gid := f.mustJoin("g", 1)
	f.mustJoin("g", 2)
	rg := f.appendGroup(grp(1, gid, "g", "x"), []uint64{2}, nil, storage.AppendOptions{})
	if rg.Delivery == (storage.Delivery{}) {
		t.Fatal("a group message to an online member has no delivery to settle")
	}
	if got, gq := f.queued(2, 1), f.groupQueued(2, gid); len(got) != 0 || len(gq) != 0 {
		t.Fatalf("queued before QueuePending: %v, group %v", got, gq)
	}
	unread := f.contact(2, 1).Unread
	if err := s.QueuePending(2); err != nil {
		t.Fatal(err)
	}
	if got := str(f.queuedNow(2, 1)); got != str([]uint64{r1.Msg.Seq}) {
		t.Fatalf("after QueuePending: %s, want [%d]", got, r1.Msg.Seq)
	}
	if got := str(f.groupQueued(2, gid)); got != "[1]" {
		t.Fatalf("group after QueuePending: %s", got)
	}
	if got := f.queued(3, 1); len(got) != 0 {
		t.Fatalf("another receiver's push was queued: %v", got)
	}
	if c := f.contact(2, 1); c.Unread != unread {
		t.Fatalf("QueuePending moved unread to %d from %d", c.Unread, unread)
	}
	// Late outcomes: not queued again.
	r1.Delivery.Settle(true)
	r1.Delivery.Settle(false)
	rg.Delivery.Member(0).Settle(false)
	if err := s.QueuePending(2); err != nil {
		t.Fatal(err)
	}
	if got, gq := str(f.queued(2, 1)), str(f.groupQueued(2, gid)); got != "[1]" || gq != "[1]" {
		t.Fatalf("after late outcomes: %s, group %s", got, gq)
	}
	if err := s.QueuePending(3); err != nil {
		t.Fatal(err)
	}
	if got := str(f.queuedNow(3, 1)); got != str([]uint64{r3.Msg.Seq}) {
		t.Fatalf("receiver 3 after its QueuePending: %s", got)
	}
}
