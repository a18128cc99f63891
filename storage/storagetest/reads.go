package storagetest

import (
	"errors"
	"time"

	"github.com/imgate/imgate/storage"
)

// PROTOCOL §7.2: an ack removes the offline entries it covers, and only
// those, in its own conversation (private or group); it does not mark
// anything read; a flood of acks leaves the same outcome as the largest.
func testAckRemovesQueued(f *fixture) {
	t, s := f.t, f.s
	const a, b, c = 1, 2, 3
	ack := func(uid, peer uint64, group bool, upTo uint64) {
		t.Helper()
		if err := s.Ack(uid, peer, group, upTo); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		f.sendOffline(priv(a, b, "m"))
	}
	ack(b, a, false, 2)
	if got := str(f.queued(b, a)); got != "[3]" {
		t.Fatalf("queued after ack 2: %s, want [3]", got)
	}
	ack(b, a, false, 3)
	if got := f.queued(b, a); len(got) != 0 {
		t.Fatalf("queued after ack 3: %v", got)
	}
	f.sendOffline(priv(a, b, "m"))
	if got := str(f.queued(b, a)); got != "[4]" {
		t.Fatalf("queued after a new message: %s, want [4]", got)
	}
	ack(b, a, false, 0)
	if got := str(f.queued(b, a)); got != "[4]" {
		t.Fatalf("queued after ack 0: %s, want [4]", got)
	}
	ack(b, a, false, 100)
	if got := f.queued(b, a); len(got) != 0 {
		t.Fatalf("queued after an ack past the end: %v", got)
	}

	f.sendOffline(priv(a, b, "m")) // 5
	f.sendOffline(priv(c, b, "m")) // 1 of another conversation
	ack(b, c, false, 1)
	ack(a, b, false, 5) // the sender's ack: its own queue of b, empty
	if got, other := str(f.queued(b, a)), f.queued(b, c); got != "[5]" || len(other) != 0 {
		t.Fatalf("after acks of other conversations: %s, and %v", got, other)
	}
	if ct := f.contact(b, a); ct.Unread != 5 || ct.ReadSeq != 0 {
		t.Fatalf("an ack marked read: %+v", ct)
	}

	gid := f.mustJoin("g", a)
	f.mustJoin("g", b)
	for i := 0; i < 3; i++ {
		f.appendGroup(grp(a, gid, "g", "m"), nil, []uint64{b}, storage.AppendOptions{})
	}
	ack(b, gid, true, 2)
	if got := str(f.groupQueued(b, gid)); got != "[3]" {
		t.Fatalf("group queue after ack 2: %s", got)
	}
	if got := str(f.queued(b, a)); got != "[5]" {
		t.Fatalf("a group ack touched a private queue: %s", got)
	}
	if n := f.groupReadSeq(b, gid); n != 0 {
		t.Fatalf("a group ack moved the read seq to %d", n)
	}

	for i := 0; i < 5; i++ {
		f.sendOffline(priv(a, b, "m")) // 6..10
	}
	for i := 0; i < 1000; i++ {
		ack(b, a, false, uint64(5+i%3))
	}
	if got := str(f.queued(b, a)); got != "[8 9 10]" {
		t.Fatalf("after a flood of acks up to 7: %s, want [8 9 10]", got)
	}
}

// PROTOCOL §7.4: LastSeq is the last seq of a conversation, the same from
// both sides, 0 when empty; a group's is the group's, whoever asks; a
// recall does not change it.
func testLastSeq(f *fixture) {
	t := f.t
	const a, b, c = 101, 102, 103
	if n := f.lastSeq(a, b, false); n != 0 {
		t.Fatalf("empty: %d", n)
	}
	for i := 0; i < 3; i++ {
		f.sendOffline(priv(a, b, "m"))
	}
	last := f.sendOffline(priv(b, a, "m"))
	f.sendOffline(priv(b, a, "m"))
	for _, p := range [][2]uint64{{a, b}, {b, a}} {
		if n := f.lastSeq(p[0], p[1], false); n != 5 {
			t.Fatalf("LastSeq(%d, %d) = %d, want 5", p[0], p[1], n)
		}
	}
	if n := f.lastSeq(a, c, false); n != 0 {
		t.Fatalf("another conversation: %d", n)
	}
	gid := f.mustJoin("g", a)
	for i := 0; i < 2; i++ {
		f.appendGroup(grp(a, gid, "g", "m"), nil, nil, storage.AppendOptions{})
	}
	for _, uid := range []uint64{a, c} {
		if n := f.lastSeq(uid, gid, true); n != 2 {
			t.Fatalf("group last seq asked by %d: %d", uid, n)
		}
	}
	if n := f.lastSeq(gid, gid, false); n != 0 {
		t.Fatalf("the private conversation of uid %d with itself: %d", gid, n)
	}
	f.mustRecall(b, f.lastMsgID(a, b))
	f.mustRecall(b, last.Msg.ID)
	if n := f.lastSeq(a, b, false); n != 5 {
		t.Fatalf("after recalls: %d", n)
	}
}

// lastMsgID is the id of the newest message between a and b.
func (f *fixture) lastMsgID(a, b uint64) [16]byte {
	f.t.Helper()
	h, _ := f.history(a, b, storage.HistoryQuery{Desc: true, Count: 1})
	if len(h) != 1 {
		f.t.Fatalf("no message between %d and %d", a, b)
	}
	return h[0].ID
}

// PROTOCOL §7.4, §7.5: GroupUnread counts the messages after readSeq up to
// last that are not the member's own and not recalled, reading at most the
// newest GroupUnreadWalk: older ones count as unread without being read.
func testGroupUnreadWalk(f *fixture) {
	t, s := f.t, f.s
	const me, other = 3, 1
	gid := f.mustJoin("g", me)
	f.mustJoin("g", other)
	for i := 0; i < 5; i++ {
		f.appendGroup(grp(me, gid, "g", "mine"), nil, nil, storage.AppendOptions{})
	}
	const n = storage.GroupUnreadWalk
	results := make(chan storage.AppendResult, n)
	for i := 0; i < n; i++ {
		if err := s.AppendGroup(grp(other, gid, "g", "theirs"), nil, nil, s.MembershipVersion(gid), storage.AppendOptions{}, func(r storage.AppendResult) { results <- r }); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(waitTimeout)
	for i := 0; i < n; i++ {
		select {
		case r := <-results:
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		case <-deadline:
			t.Fatalf("%d of %d group appends done", i, n)
		}
	}
	const last = n + 5
	if got := f.lastSeq(me, gid, true); got != last {
		t.Fatalf("last seq %d, want %d", got, last)
	}
	// Seqs 1-5 are mine, 6-1005 theirs.
	for _, tc := range []struct {
		uid, readSeq, last, want uint64
	}{
		{me, 0, 5, 0},    // only mine
		{other, 0, 5, 5}, // all mine, for the other
		{other, 2, 7, 3}, // mine 3-5 for the other; 6, 7 its own
		{me, 2, 7, 2},    // theirs 6, 7
		{me, 5, last, n}, // the walk covers every unread
		{me, 100, last, last - 100},
		{me, 0, last, last},          // the 5 below the walk count unread, mine or not
		{me, 4, last, n + 1},         // one below the walk
		{me, 0, last - 1, 4 + n - 1}, // the walk covers 5-1004: 4 below it, 999 theirs in it
		{other, 0, last, 5},          // the 5 below the walk count; the walk finds only its own
		{me, last - 1, last, 1},      // the newest alone
		{other, last - 1, last, 0},
		{me, last, last, 0},     // read to the end
		{me, last + 1, last, 0}, // a cursor past last
		{me, 0, 0, 0},
	} {
		if got := f.groupUnread(tc.uid, gid, tc.readSeq, tc.last); got != tc.want {
			t.Fatalf("GroupUnread(uid %d, read %d, last %d) = %d, want %d", tc.uid, tc.readSeq, tc.last, got, tc.want)
		}
	}
}

// PROTOCOL §7.5: a private read moves the read cursor up (never down),
// reports whether it moved, counts unread from the cursor (the reader's
// own and recalled messages aside), removes the offline entries it
// covers, and leaves the other side's record alone.
func testReadPrivate(f *fixture) {
	t := f.t
	const a, b = 1, 2
	var fourth storage.Message
	for i := 1; i <= 4; i++ {
		r := f.sendOffline(priv(a, b, "m"))
		if i == 4 {
			fourth = r.Msg
		}
	}
	f.sendOffline(priv(b, a, "mine")) // 5
	f.sendOffline(priv(a, b, "m"))    // 6
	want := func(step string, r, wantR storage.ReadResult, unread, readSeq uint64, queued string) {
		t.Helper()
		if r != wantR {
			t.Fatalf("%s: read %+v, want %+v", step, r, wantR)
		}
		if c := f.contact(b, a); c.Unread != unread || c.ReadSeq != readSeq {
			t.Fatalf("%s: record %+v, want %d unread, read to %d", step, c, unread, readSeq)
		}
		if got := str(f.queued(b, a)); got != queued {
			t.Fatalf("%s: queued %s, want %s", step, got, queued)
		}
	}
	want("read to 2", f.read(b, a, false, 2), storage.ReadResult{ReadSeq: 2, Advanced: true}, 3, 2, "[3 4 6]")
	want("read to 1", f.read(b, a, false, 1), storage.ReadResult{ReadSeq: 2}, 3, 2, "[3 4 6]")
	want("read to 2 again", f.read(b, a, false, 2), storage.ReadResult{ReadSeq: 2}, 3, 2, "[3 4 6]")
	f.mustRecall(a, fourth.ID)
	if c := f.contact(b, a); c.Unread != 2 {
		t.Fatalf("after a recall: %+v", c)
	}
	want("read to 5", f.read(b, a, false, 5), storage.ReadResult{ReadSeq: 5, Advanced: true}, 1, 5, "[6]")
	want("read to 6", f.read(b, a, false, 6), storage.ReadResult{ReadSeq: 6, Advanced: true}, 0, 6, "[]")
	if c := f.contact(a, b); c.Unread != 1 || c.ReadSeq != 0 {
		t.Fatalf("the other side after the reads: %+v", c)
	}
	// A reader who is no contact: nothing to move, nothing made.
	if r := f.read(9, 8, false, 3); r != (storage.ReadResult{}) {
		t.Fatalf("read of a stranger's conversation: %+v", r)
	}
	if _, err := f.s.Contact(9, 8); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a read made a contact: %v", err)
	}
}

// PROTOCOL §7.5: a group read moves the member's group cursor up (never
// down), removes the offline entries it covers, and GroupUnread counts
// from it; other members are unaffected.
func testReadGroup(f *fixture) {
	t := f.t
	gid := f.mustJoin("g", 1)
	f.mustJoin("g", 2)
	for i := 0; i < 4; i++ {
		f.appendGroup(grp(1, gid, "g", "m"), nil, []uint64{2}, storage.AppendOptions{})
	}
	if n, u := f.groupReadSeq(2, gid), f.groupUnread(2, gid, 0, 4); n != 0 || u != 4 {
		t.Fatalf("before reading: read seq %d, unread %d", n, u)
	}
	if r := f.read(2, gid, true, 2); r != (storage.ReadResult{ReadSeq: 2, Advanced: true}) {
		t.Fatalf("read to 2: %+v", r)
	}
	if n, q, u := f.groupReadSeq(2, gid), str(f.groupQueued(2, gid)), f.groupUnread(2, gid, 2, 4); n != 2 || q != "[3 4]" || u != 2 {
		t.Fatalf("after reading to 2: read seq %d, queued %s, unread %d", n, q, u)
	}
	if r := f.read(2, gid, true, 1); r != (storage.ReadResult{ReadSeq: 2}) {
		t.Fatalf("read to 1: %+v", r)
	}
	if n := f.groupReadSeq(2, gid); n != 2 {
		t.Fatalf("read seq went back to %d", n)
	}
	f.appendGroup(grp(2, gid, "g", "mine"), nil, []uint64{1}, storage.AppendOptions{}) // 5
	if u := f.groupUnread(2, gid, 2, 5); u != 2 {
		t.Fatalf("unread for 2 with its own message: %d", u)
	}
	if u := f.groupUnread(1, gid, 0, 5); u != 1 {
		t.Fatalf("unread for 1: %d", u)
	}
	if r := f.read(2, gid, true, 5); r != (storage.ReadResult{ReadSeq: 5, Advanced: true}) {
		t.Fatalf("read to 5: %+v", r)
	}
	if q := f.groupQueued(2, gid); len(q) != 0 {
		t.Fatalf("queued after reading to the end: %v", q)
	}
	if q, n := str(f.groupQueued(1, gid)), f.groupReadSeq(1, gid); q != "[5]" || n != 0 {
		t.Fatalf("the other member: queued %s, read seq %d", q, n)
	}
}
