package pebble

import (
	"fmt"
	"testing"
)

func joinSync(t *testing.T, db *DB, group string, uid uint64) uint64 {
	t.Helper()
	type res struct {
		gid    uint64
		result int
		err    error
	}
	ch := make(chan res, 1)
	if err := db.Join(group, uid, 1, 2000, func(gid uint64, result int, err error) { ch <- res{gid, result, err} }); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil || r.result != JoinOK {
		t.Fatalf("join %s %d: %+v", group, uid, r)
	}
	return r.gid
}

func leaveSync(t *testing.T, db *DB, gid, uid uint64) {
	t.Helper()
	ch := make(chan error, 1)
	if err := db.Leave(gid, uid, func(_ bool, err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

// PROTOCOL §5: the member list every group message fans out to follows
// each join and leave as soon as it is acknowledged, while readers keep
// the cached list warm, and survives a reopen.
func TestSection5_MembersFollowJoinAndLeave(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	gid := joinSync(t, db, "g1", 1)
	if g, err := db.GroupByID("g1"); err != nil || g != gid {
		t.Fatalf("GroupByID %d %v, want %d", g, err, gid)
	}
	stop := readUntil(t, 3, func() error {
		_, err := db.Members(gid)
		return err
	})
	want := []uint64{1}
	for uid := uint64(2); uid <= 60; uid++ {
		joinSync(t, db, "g1", uid)
		want = append(want, uid)
		if uid%3 == 0 {
			leaveSync(t, db, gid, uid-1)
			want = append(want[:len(want)-2], uid)
		}
		if m, err := db.Members(gid); err != nil || fmt.Sprint(m) != fmt.Sprint(want) {
			t.Fatalf("after uid %d: members %v %v, want %v", uid, m, err, want)
		}
	}
	stop()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	if m, err := db.Members(gid); err != nil || fmt.Sprint(m) != fmt.Sprint(want) {
		t.Fatalf("after reopen: members %v %v, want %v", m, err, want)
	}
}

// PROTOCOL §5 with §4.3: the members a group message is given may be
// stale (read before the commit): one who joined since is queued, one who
// left since is not.
func TestSection5_JoinRacingAGroupMessageIsQueued(t *testing.T) {
	db := openTest(t, t.TempDir())
	gid := joinSync(t, db, "g", 1)
	joinSync(t, db, "g", 2)
	ver := db.MembershipVersion(gid) // what the router read, with the members 1 and 2
	joinSync(t, db, "g", 3)          // 3 joins before the message commits
	leaveSync(t, db, gid, 2)         // 2 leaves
	ch := make(chan AppendResult, 1)
	m := Message{ID: msgID(), From: 1, FromID: "u1", Group: gid, GroupID: "g", ChatType: ChatGroup, Content: "x", CreateTime: 1}
	if err := db.AppendGroup(m, nil, []uint64{2}, ver, AppendOptions{}, func(r AppendResult) { ch <- r }); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; r.Err != nil {
		t.Fatal(r.Err)
	}
	for uid, want := range map[uint64]int{2: 0, 3: 1} {
		page, err := db.ReadOffline(uid, QueueQuery{Group: gid, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range page.Groups {
			n += len(p.Msgs)
		}
		if n != want {
			t.Fatalf("member %d: %d queued, want %d", uid, n, want)
		}
	}
}
