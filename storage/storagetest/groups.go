package storagetest

import (
	"errors"
	"fmt"

	"github.com/imgate/imgate/storage"
)

// PROTOCOL §5: the first join creates the group; a group at its cap
// refuses a newcomer (JoinFull) but not a member joining again, which
// changes nothing; membership reads agree (IsMember, Members in uid order,
// UserGroups in gid order); MembershipVersion moves with every join and
// leave; leaving drops the member's queued messages of the group, for
// good; leaving what one is not in changes nothing; a group keeps its gid
// when everyone left.
func testJoinLeaveAndCap(f *fixture) {
	t, s := f.t, f.s
	// A cap of 0 has no room for a first member: no group comes of it,
	// and a later join with room creates it whole.
	if _, res := f.join("g", 5, 0); res != storage.JoinFull {
		t.Fatalf("first join at cap 0: result %d, want JoinFull", res)
	}
	if _, err := s.GroupByID("g"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused first join left a group: %v", err)
	}
	gid, res := f.join("g", 5, 3)
	if res != storage.JoinOK || gid == 0 {
		t.Fatalf("first join: gid %d result %d", gid, res)
	}
	if g, err := s.GroupByID("g"); err != nil || g != gid {
		t.Fatalf("GroupByID %d %v, want %d", g, err, gid)
	}
	v := s.MembershipVersion(gid)
	if g, res := f.join("g", 2, 3); res != storage.JoinOK || g != gid {
		t.Fatalf("second join: gid %d result %d", g, res)
	}
	if s.MembershipVersion(gid) == v {
		t.Fatal("a join left the membership version")
	}
	f.join("g", 9, 3)
	if _, res := f.join("g", 7, 3); res != storage.JoinFull {
		t.Fatalf("join of a fourth at cap 3: result %d, want JoinFull", res)
	}
	if f.isMember(gid, 7) || f.members(gid) != "[2 5 9]" {
		t.Fatalf("a refused join changed the members: %s", f.members(gid))
	}
	if g, res := f.join("g", 5, 3); res != storage.JoinOK || g != gid {
		t.Fatalf("a member joining again at the cap: gid %d result %d", g, res)
	}
	if got := f.members(gid); got != "[2 5 9]" || !f.isMember(gid, 5) || !f.isMember(gid, 9) {
		t.Fatalf("joining twice changed the members: %s", got)
	}

	h := f.mustJoin("h", 5)
	a := f.mustJoin("a", 5)
	if h == gid || a == gid || h == a {
		t.Fatalf("three groups, gids %d %d %d", gid, h, a)
	}
	if got := f.userGroups(5); got != sorted(gid, h, a) {
		t.Fatalf("groups of 5: %s, want %s", got, sorted(gid, h, a))
	}
	if got := f.userGroups(2); got != fmt.Sprint([]uint64{gid}) {
		t.Fatalf("groups of 2: %s", got)
	}
	for id, want := range map[string]uint64{"h": h, "a": a} {
		if g, err := s.GroupByID(id); err != nil || g != want {
			t.Fatalf("GroupByID(%s) = %d %v, want %d", id, g, err, want)
		}
	}

	for i := 0; i < 2; i++ {
		f.appendGroup(grp(2, gid, "g", "x"), nil, []uint64{5, 9}, storage.AppendOptions{})
	}
	if got := str(f.groupQueued(9, gid)); got != "[1 2]" {
		t.Fatalf("queued for 9: %s", got)
	}
	v = s.MembershipVersion(gid)
	if !f.leave(gid, 9) {
		t.Fatal("leave of a member: not left")
	}
	if s.MembershipVersion(gid) == v {
		t.Fatal("a leave left the membership version")
	}
	if got := f.groupQueued(9, gid); len(got) != 0 {
		t.Fatalf("queued for 9 after leaving: %v", got)
	}
	if f.isMember(gid, 9) || f.members(gid) != "[2 5]" || f.userGroups(9) != "[]" {
		t.Fatalf("after 9 left: member %v, members %s, groups of 9 %s", f.isMember(gid, 9), f.members(gid), f.userGroups(9))
	}
	if got := str(f.groupQueued(5, gid)); got != "[1 2]" {
		t.Fatalf("another member's queue after 9 left: %s", got)
	}
	if f.leave(gid, 9) || f.leave(gid, 42) || f.leave(a, 2) {
		t.Fatal("leaving a group one is not in: left")
	}
	if got := f.members(gid); got != "[2 5]" {
		t.Fatalf("members after leaves of non-members: %s", got)
	}
	// Room again: a newcomer is taken, and one who comes back gets
	// nothing of what was dropped.
	if _, res := f.join("g", 7, 3); res != storage.JoinOK {
		t.Fatalf("join below the cap: result %d", res)
	}
	if _, res := f.join("g", 9, 4); res != storage.JoinOK {
		t.Fatalf("rejoin: result %d", res)
	}
	if got := f.groupQueued(9, gid); len(got) != 0 {
		t.Fatalf("a rejoin brought back dropped messages: %v", got)
	}
	if got := f.members(gid); got != "[2 5 7 9]" {
		t.Fatalf("members %s", got)
	}
	// Everyone leaves h: it keeps its id and its history.
	f.appendGroup(grp(5, h, "h", "before"), nil, nil, storage.AppendOptions{})
	if !f.leave(h, 5) || f.members(h) != "[]" {
		t.Fatalf("after the last member left: %s", f.members(h))
	}
	if g := f.mustJoin("h", 6); g != h {
		t.Fatalf("the emptied group came back as %d, want %d", g, h)
	}
	if hist, _ := f.groupHistory(h, storage.HistoryQuery{Count: 10}); len(hist) != 1 || hist[0].Content != "before" {
		t.Fatalf("history of the emptied group %+v", hist)
	}
}

// PROTOCOL §5: the member list every group message fans out to follows
// each join and leave as soon as it is acknowledged, while readers keep
// reading it, and survives a restart.
func testMembersFollowJoinAndLeave(f *fixture) {
	t := f.t
	gid := f.mustJoin("g1", 1)
	s := f.s
	stop := readUntil(t, 3, func() error {
		_, err := s.Members(gid)
		return err
	})
	want := []uint64{1}
	for uid := uint64(2); uid <= 40; uid++ {
		f.mustJoin("g1", uid)
		want = append(want, uid)
		if uid%3 == 0 {
			f.leave(gid, uid-1)
			want = append(want[:len(want)-2], uid)
		}
		if m := f.members(gid); m != fmt.Sprint(want) {
			stop()
			t.Fatalf("after uid %d: members %s, want %v", uid, m, want)
		}
	}
	stop()
	f.reopen()
	if m := f.members(gid); m != fmt.Sprint(want) {
		t.Fatalf("after reopen: members %s, want %v", m, want)
	}
	if g, err := f.s.GroupByID("g1"); err != nil || g != gid {
		t.Fatalf("after reopen: GroupByID %d %v, want %d", g, err, gid)
	}
	if !f.isMember(gid, 40) || f.isMember(gid, 38) {
		t.Fatal("after reopen: IsMember disagrees with Members")
	}
	if g2 := f.mustJoin("g2", 1); g2 == gid {
		t.Fatal("a group created after reopen got an existing gid")
	}
}

// PROTOCOL §5: group messages get the group's gap-free seqs and raised
// times, are stored as sent, queued for the offline members listed, not
// stored twice on a resend; a recall replaces one by its marker, takes it
// from every queue and out of unread counts.
func testGroupMessages(f *fixture) {
	t := f.t
	gid := f.mustJoin("g", 1)
	f.mustJoin("g", 2)
	f.mustJoin("g", 3)
	others := map[uint64][]uint64{1: {2, 3}, 2: {1, 3}}
	var sent []storage.Message
	for i := 1; i <= 5; i++ {
		from := uint64(1 + (i+1)%2) // 1, 2, 1, 2, 1
		m := grp(from, gid, "g", fmt.Sprint("g", i))
		m.CreateTime = int64(1000 + i)
		if i == 3 {
			m.CreateTime = 500
		}
		r := f.appendGroup(m, nil, others[from], storage.AppendOptions{ClientID: true})
		want := m
		want.Seq = uint64(i)
		if i == 3 {
			want.CreateTime = 1002
		}
		if d := sameMessage(r.Msg, want); d != "" || r.Duplicate {
			t.Fatalf("group message %d: %s, duplicate %v", i, d, r.Duplicate)
		}
		sent = append(sent, r.Msg)
	}
	h, more := f.groupHistory(gid, storage.HistoryQuery{Count: 10})
	if len(h) != 5 || more {
		t.Fatalf("group history %+v %v", h, more)
	}
	for i := range h {
		if d := sameMessage(h[i], sent[i]); d != "" {
			t.Fatalf("group history %d: %s", i, d)
		}
	}
	if h, more := f.groupHistory(gid, storage.HistoryQuery{Desc: true, Count: 2}); str(seqs(h)) != "[5 4]" || !more {
		t.Fatalf("newest page %v %v", seqs(h), more)
	}
	if h, more := f.groupHistory(gid, storage.HistoryQuery{AfterSeq: 3, Count: 10}); str(seqs(h)) != "[4 5]" || more {
		t.Fatalf("after 3: %v %v", seqs(h), more)
	}
	again := f.appendGroup(sent[0], nil, others[1], storage.AppendOptions{ClientID: true})
	if !again.Duplicate || again.Msg.Seq != 1 || again.Msg.Content != "g1" {
		t.Fatalf("group resend %+v", again)
	}
	if h, _ := f.groupHistory(gid, storage.HistoryQuery{Count: 10}); len(h) != 5 {
		t.Fatalf("the resend was stored: %d messages", len(h))
	}
	for uid, want := range map[uint64]string{1: "[2 4]", 2: "[1 3 5]", 3: "[1 2 3 4 5]"} {
		if got := str(f.groupQueued(uid, gid)); got != want {
			t.Fatalf("queued for %d: %s, want %s", uid, got, want)
		}
	}
	if n := f.lastSeq(3, gid, true); n != 5 {
		t.Fatalf("last seq %d", n)
	}

	if _, err := f.recall(2, sent[2].ID, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("recall by another member: %v", err)
	}
	marker := f.mustRecall(1, sent[2].ID)
	want := sent[2]
	want.Content, want.Extras, want.Recalled = "", nil, true
	if d := sameMessage(marker, want); d != "" {
		t.Fatalf("marker %s", d)
	}
	if h, _ := f.groupHistory(gid, storage.HistoryQuery{AfterSeq: 2, BeforeSeq: 4, Count: 10}); len(h) != 1 || sameMessage(h[0], want) != "" {
		t.Fatalf("history after the recall %+v", h)
	}
	for uid, want := range map[uint64]string{2: "[1 5]", 3: "[1 2 4 5]"} {
		if got := str(f.groupQueued(uid, gid)); got != want {
			t.Fatalf("queued for %d after the recall: %s, want %s", uid, got, want)
		}
	}
	if n := f.groupUnread(3, gid, 0, 5); n != 4 {
		t.Fatalf("unread for 3: %d, want 4", n)
	}
	if n := f.groupUnread(2, gid, 0, 5); n != 2 {
		t.Fatalf("unread for 2: %d, want 2", n)
	}
}

// PROTOCOL §5 with §4.3: the members a group message is given may be
// stale (read before the commit): one who joined since is queued, one who
// left since is not, whether it was listed offline or online.
func testJoinRacingAGroupMessage(f *fixture) {
	t, s := f.t, f.s
	gid := f.mustJoin("g", 1)
	f.mustJoin("g", 2)
	ver := s.MembershipVersion(gid) // what the router read, with the members 1 and 2
	f.mustJoin("g", 3)              // 3 joins before the message commits
	f.leave(gid, 2)                 // 2 leaves
	f.appendGroupVer(grp(1, gid, "g", "x"), nil, []uint64{2}, ver, storage.AppendOptions{})
	for uid, want := range map[uint64]string{2: "[]", 3: "[1]"} {
		if got := str(f.groupQueued(uid, gid)); got != want {
			t.Fatalf("member %d: queued %s, want %s", uid, got, want)
		}
	}
	f.mustJoin("g", 4)
	ver = s.MembershipVersion(gid) // members 1, 3, 4; 4 online
	f.leave(gid, 4)
	r := f.appendGroupVer(grp(1, gid, "g", "y"), []uint64{4}, []uint64{3}, ver, storage.AppendOptions{})
	r.Delivery.Member(0).Settle(false) // 4's push dropped: 4 left anyway
	for uid, want := range map[uint64]string{3: "[1 2]", 4: "[]"} {
		if got := str(f.groupQueued(uid, gid)); got != want {
			t.Fatalf("member %d after the second message: queued %s, want %s", uid, got, want)
		}
	}
}

// PROTOCOL §5 with §4.3: each online member's push is settled on its own:
// one no connection wrote is queued at once, without waiting for the
// others; a second outcome does nothing; a message never settled before a
// restart is queued for every online member after it.
func testGroupDeliverySettled(f *fixture) {
	t := f.t
	gid := f.mustJoin("g", 1)
	for _, uid := range []uint64{2, 3, 4} {
		f.mustJoin("g", uid)
	}
	send := func(content string) storage.AppendResult {
		t.Helper()
		r := f.appendGroup(grp(1, gid, "g", content), []uint64{2, 3}, []uint64{4}, storage.AppendOptions{})
		if r.Delivery == (storage.Delivery{}) {
			t.Fatalf("append %+v: no delivery to settle", r)
		}
		return r
	}
	want := func(step string, queued map[uint64]string) {
		t.Helper()
		for uid, want := range queued {
			if got := str(f.groupQueued(uid, gid)); got != want {
				t.Fatalf("%s: member %d queued %s, want %s", step, uid, got, want)
			}
		}
	}
	r1 := send("one")
	want("before any outcome", map[uint64]string{1: "[]", 2: "[]", 3: "[]", 4: "[1]"})
	r1.Delivery.Member(1).Settle(false) // member 3's connection died first
	want("3 lost, 2 pending", map[uint64]string{2: "[]", 3: "[1]", 4: "[1]"})
	r1.Delivery.Member(0).Settle(true)
	r1.Delivery.Member(0).Settle(false) // a second outcome does nothing
	r1.Delivery.Member(1).Settle(false)
	want("2 written", map[uint64]string{2: "[]", 3: "[1]"})
	send("two") // then a restart: never settled
	f.reopen()
	want("after the restart", map[uint64]string{1: "[]", 2: "[2]", 3: "[1 2]", 4: "[1 2]"})
}
