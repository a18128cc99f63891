package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imgate/imgate/storage"
)

type joined struct {
	gid    uint64
	result int
	err    error
}

// join joins uid to group on db and waits for the outcome.
func join(t testing.TB, db *DB, group string, uid uint64, max int) joined {
	t.Helper()
	ch := make(chan joined, 1)
	if err := db.Join(group, uid, 1, max, func(gid uint64, result int, err error) { ch <- joined{gid, result, err} }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("join %s %d: no outcome", group, uid)
	}
	return joined{}
}

// leave removes uid from gid on db and reports whether it was a member.
func leave(t testing.TB, db *DB, gid, uid uint64) bool {
	t.Helper()
	type res struct {
		left bool
		err  error
	}
	ch := make(chan res, 1)
	if err := db.Leave(gid, uid, func(left bool, err error) { ch <- res{left, err} }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("leave %d %d: %v", gid, uid, r.err)
		}
		return r.left
	case <-time.After(30 * time.Second):
		t.Fatalf("leave %d %d: no outcome", gid, uid)
	}
	return false
}

// expectMembers checks db's view of gid's members.
func expectMembers(t testing.TB, db *DB, gid uint64, want ...uint64) {
	t.Helper()
	m, err := db.Members(gid)
	if err != nil || !slices.Equal(m, want) {
		t.Fatalf("members of %d: %v %v, want %v", gid, m, err, want)
	}
}

// groupRow reads chat_groups' count and version of gid.
func groupRow(t testing.TB, db *DB, gid uint64) (members int, version uint64) {
	t.Helper()
	if err := db.pool.QueryRow(context.Background(), `SELECT members, version FROM chat_groups WHERE gid = $1`, int64(gid)).Scan(&members, &version); err != nil {
		t.Fatal(err)
	}
	return members, version
}

// PROTOCOL §5: a group is created by its first join; joining twice changes
// nothing; a full group refuses; each change moves the version; leaving
// twice leaves once.
func TestSection5_JoinLeave(t *testing.T) {
	db, _ := openTest(t, nil)
	if _, err := db.GroupByID("g"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GroupByID before the first join: %v", err)
	}
	if r := join(t, db, "nope", 1, 0); r != (joined{0, storage.JoinFull, nil}) {
		t.Fatalf("join with no room: %+v", r)
	}
	if _, err := db.GroupByID("nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused first join created the group: %v", err)
	}
	r := join(t, db, "g", 5, 2)
	if r.err != nil || r.result != storage.JoinOK || r.gid == 0 {
		t.Fatalf("first join %+v", r)
	}
	gid := r.gid
	if g, err := db.GroupByID("g"); err != nil || g != gid {
		t.Fatalf("GroupByID %d %v, want %d", g, err, gid)
	}
	if v := db.MembershipVersion(gid); v != 1 {
		t.Fatalf("version after the first join %d, want 1", v)
	}
	if r := join(t, db, "g", 5, 2); r != (joined{gid, storage.JoinOK, nil}) {
		t.Fatalf("second join %+v", r)
	}
	if n, v := groupRow(t, db, gid); n != 1 || v != 1 {
		t.Fatalf("a repeated join changed the group: %d members, version %d", n, v)
	}
	join(t, db, "g", 3, 2)
	if r := join(t, db, "g", 4, 2); r != (joined{gid, storage.JoinFull, nil}) {
		t.Fatalf("join of a full group %+v", r)
	}
	if r := join(t, db, "g", 3, 2); r != (joined{gid, storage.JoinOK, nil}) {
		t.Fatalf("a member joining a full group again %+v", r)
	}
	expectMembers(t, db, gid, 3, 5)
	for uid, want := range map[uint64]bool{3: true, 5: true, 4: false} {
		if ok, err := db.IsMember(gid, uid); err != nil || ok != want {
			t.Errorf("IsMember(%d) %v %v, want %v", uid, ok, err, want)
		}
	}
	if v := db.MembershipVersion(gid); v != 2 {
		t.Fatalf("version after two joins %d, want 2", v)
	}
	if !leave(t, db, gid, 5) || leave(t, db, gid, 5) || leave(t, db, gid+100, 5) {
		t.Fatal("leave, leave again, leave an unknown group: want true, false, false")
	}
	expectMembers(t, db, gid, 3)
	if n, v := groupRow(t, db, gid); n != 1 || v != 3 || db.MembershipVersion(gid) != 3 {
		t.Fatalf("after the leave: %d members, version %d, known %d", n, v, db.MembershipVersion(gid))
	}
	if m, err := db.Members(gid + 100); err != nil || m != nil {
		t.Fatalf("members of an unknown group %v %v", m, err)
	}
}

// PROTOCOL §5: leaving drops the member's queued messages of the group and
// its read cursor, nobody else's and nothing of other groups.
func TestSection5_LeaveDropsQueueAndCursor(t *testing.T) {
	db, _ := openTest(t, nil)
	g1 := join(t, db, "g1", 1, 10).gid
	join(t, db, "g1", 2, 10)
	g2 := join(t, db, "g2", 1, 10).gid
	ctx := context.Background()
	if _, err := db.pool.Exec(ctx, `INSERT INTO queue (uid, grp, peer, seq, pending, created)
		SELECT u, true, g, s, s = 3, 1 FROM unnest($1::bigint[]) u, unnest($2::bigint[]) g, generate_series(1, 3) s`,
		[]int64{1, 2}, []int64{int64(g1), int64(g2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO queue (uid, grp, peer, seq, created) VALUES (1, false, $1, 1, 1)`, int64(g1)); err != nil {
		t.Fatal(err) // a private queue whose peer's uid happens to be g1
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO group_reads (uid, gid, read_seq) VALUES (1, $1, 2), (2, $1, 2), (1, $2, 2)`, int64(g1), int64(g2)); err != nil {
		t.Fatal(err)
	}
	if !leave(t, db, g1, 1) {
		t.Fatal("not left")
	}
	var queued, reads int
	if err := db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM queue), (SELECT count(*) FROM group_reads)`).Scan(&queued, &reads); err != nil {
		t.Fatal(err)
	}
	// Left: uid 2's 6 group entries, uid 1's 3 of g2 and its private one.
	if queued != 10 || reads != 2 {
		t.Fatalf("after the leave: %d queue rows, %d cursors; want 10, 2", queued, reads)
	}
	var mine int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM queue WHERE uid = 1 AND grp AND peer = $1`, int64(g1)).Scan(&mine); err != nil || mine != 0 {
		t.Fatalf("%d entries of g1 left for the leaver (%v)", mine, err)
	}
	if gs, err := db.UserGroups(1); err != nil || !slices.Equal(gs, []uint64{g2}) {
		t.Fatalf("groups of 1: %v %v", gs, err)
	}
}

// Two nodes joining one group at once: the cap holds, the counts and the
// version match the members, and each node's Members follows the other's
// changes.
func TestSection5_JoinsOnTwoNodes(t *testing.T) {
	db, url := openTest(t, nil)
	other := openGateway(t, url)
	const max, n = 25, 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok []uint64
	gids := map[uint64]bool{}
	for uid := uint64(1); uid <= n; uid++ {
		node := db
		if uid%2 == 0 {
			node = other
		}
		wg.Go(func() {
			r := join(t, node, "crowd", uid, max)
			mu.Lock()
			defer mu.Unlock()
			if r.err != nil {
				t.Error(r.err)
				return
			}
			gids[r.gid] = true
			if r.result == storage.JoinOK {
				ok = append(ok, uid)
			}
		})
	}
	wg.Wait()
	if len(gids) != 1 || len(ok) != max {
		t.Fatalf("gids %v, %d joined; want one gid, %d joined", gids, len(ok), max)
	}
	var gid uint64
	for g := range gids {
		gid = g
	}
	slices.Sort(ok)
	expectMembers(t, db, gid, ok...)
	expectMembers(t, other, gid, ok...)
	if m, v := groupRow(t, db, gid); m != max || v != max {
		t.Fatalf("chat_groups: %d members, version %d; want %d, %d", m, v, max, max)
	}
	if a, b := db.MembershipVersion(gid), other.MembershipVersion(gid); a != max || b != max {
		t.Fatalf("versions known %d and %d, want %d", a, b, max)
	}

	// The other node's leave is what db's next Members shows, cached list
	// or not, with the version it moved to.
	if !leave(t, other, gid, ok[0]) {
		t.Fatal("not left")
	}
	if db.MembershipVersion(gid) != max {
		t.Fatal("db's version moved without a read")
	}
	expectMembers(t, db, gid, ok[1:]...)
	if v := db.MembershipVersion(gid); v != max+1 {
		t.Fatalf("db's version after reading %d, want %d", v, max+1)
	}
	r := join(t, other, "crowd", ok[0], max)
	if r.result != storage.JoinOK {
		t.Fatalf("rejoin %+v", r)
	}
	expectMembers(t, db, gid, ok...)
}

// Members returns the cached slice while the version stays, and a fresh
// one once any node moved it.
func TestMembersCache(t *testing.T) {
	db, url := openTest(t, nil)
	gid := join(t, db, "g", 1, 10).gid
	join(t, db, "g", 2, 10)
	a, _ := db.Members(gid)
	b, _ := db.Members(gid)
	if len(a) != 2 || &a[0] != &b[0] {
		t.Fatalf("second read not served from the cache: %v %v", a, b)
	}
	join(t, openGateway(t, url), "g", 3, 10)
	expectMembers(t, db, gid, 1, 2, 3)
	expectMembers(t, db, gid, 1, 2, 3)
	for uid := uint64(1); uid <= 3; uid++ {
		leave(t, db, gid, uid)
	}
	expectMembers(t, db, gid)
}

// Members read while joins and leaves commit always match one version: a
// list read with version v is never older than v.
func TestMembersConsistentWithVersion(t *testing.T) {
	db, url := openTest(t, nil)
	other := openGateway(t, url)
	gid := join(t, db, "g", 1, 1000).gid
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for uid := uint64(2); uid <= 40; uid++ {
			join(t, other, "g", uid, 1000)
		}
		close(stop)
	})
	for {
		ver := db.MembershipVersion(gid)
		m, err := db.Members(gid)
		if err != nil {
			t.Fatal(err)
		}
		// Every join adds one member: version v has v members.
		if uint64(len(m)) < ver {
			t.Fatalf("version %d known before reading %d members %v", ver, len(m), m)
		}
		if got := db.MembershipVersion(gid); uint64(len(m)) != got {
			t.Fatalf("members %v read at version %d", m, got)
		}
		select {
		case <-stop:
			wg.Wait()
			expectMembers(t, db, gid, seq(1, 40)...)
			return
		default:
		}
	}
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// UserGroups lists a user's groups in gid order.
func TestUserGroups(t *testing.T) {
	db, _ := openTest(t, nil)
	var want []uint64
	for i := range 5 {
		want = append(want, join(t, db, fmt.Sprint("g", i), 7, 10).gid)
	}
	join(t, db, "other", 8, 10)
	if gs, err := db.UserGroups(7); err != nil || !slices.Equal(gs, want) {
		t.Fatalf("UserGroups %v %v, want %v", gs, err, want)
	}
	if gs, err := db.UserGroups(9); err != nil || gs != nil {
		t.Fatalf("UserGroups of a user in none %v %v", gs, err)
	}
}
