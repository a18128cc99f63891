package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imgate/imgate/storage"
)

// The conformance suite (storage/storagetest) proves the semantics on one
// store; these tests prove what only a shared server can break: several
// nodes (DBs) on one database writing the same conversations, contacts
// and groups at once.

func msgID() (id [16]byte) {
	_, _ = rand.Read(id[:])
	return id
}

func privMsg(from, to uint64, content string, at int64) storage.Message {
	return storage.Message{ID: msgID(), From: from, To: to, FromID: fmt.Sprint("u", from), ToID: fmt.Sprint("u", to),
		ChatType: storage.ChatPrivate, Content: content, CreateTime: at}
}

// openNode opens another node on the database at url.
func openNode(t testing.TB, url string) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func appendWait(t testing.TB, db *DB, m storage.Message, opts storage.AppendOptions) storage.AppendResult {
	t.Helper()
	ch := make(chan storage.AppendResult, 1)
	if err := db.AppendPrivate(m, opts, func(r storage.AppendResult) { ch <- r }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("append: no outcome")
	}
	return storage.AppendResult{}
}

func waitErr(t testing.TB, submit func(done func(error)) error) {
	t.Helper()
	ch := make(chan error, 1)
	if err := submit(func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

// PROTOCOL §4.1, §4.2 across nodes: two nodes, eight goroutines each,
// appending to one conversation from both sides, the pair's first
// messages racing: seqs are 1..n with no gap and no duplicate, times
// never go back along seqs, and the contacts, totals and queues count
// every message once.
func TestAppendTwoNodesOneConversation(t *testing.T) {
	db1, url := openTest(t, nil)
	db2 := openNode(t, url)
	const a, b = 1, 2
	const perNode, each = 8, 40
	const total = 2 * perNode * each
	type sent struct {
		m       storage.Message
		offline bool
	}
	var mu sync.Mutex
	var all []sent
	var wg sync.WaitGroup
	for n, db := range []*DB{db1, db2} {
		for g := 0; g < perNode; g++ {
			wg.Go(func() {
				from, to := uint64(a), uint64(b)
				if (n+g)%2 == 1 {
					from, to = to, from
				}
				var mine []sent
				for i := 0; i < each; i++ {
					offline := i%3 != 0
					r := appendWait(t, db, privMsg(from, to, fmt.Sprint(n, g, i), int64(1000+(i*7919+g*104729+n*31)%5000)),
						storage.AppendOptions{Offline: offline, ClientID: true})
					if r.Duplicate {
						t.Errorf("a fresh message is a duplicate: %+v", r)
					}
					if !offline {
						r.Delivery.Settle(true)
					}
					if len(mine) > 0 && (r.Msg.Seq <= mine[len(mine)-1].m.Seq || r.Msg.CreateTime < mine[len(mine)-1].m.CreateTime) {
						t.Errorf("seq %d at %d after seq %d at %d", r.Msg.Seq, r.Msg.CreateTime, mine[len(mine)-1].m.Seq, mine[len(mine)-1].m.CreateTime)
					}
					mine = append(mine, sent{r.Msg, offline})
				}
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	bySeq := map[uint64]sent{}
	unread := map[uint64]uint64{}
	queued := map[uint64]int{}
	for _, s := range all {
		if _, dup := bySeq[s.m.Seq]; dup {
			t.Fatalf("seq %d given twice", s.m.Seq)
		}
		bySeq[s.m.Seq] = s
		unread[s.m.To]++
		if s.offline {
			queued[s.m.To]++
		}
	}
	h, more, err := db2.History(a, b, storage.HistoryQuery{Count: 2 * total})
	if err != nil || more || len(h) != total {
		t.Fatalf("history: %d messages, more %v, %v", len(h), more, err)
	}
	for i, m := range h {
		if m.Seq != uint64(i+1) || m.ID != bySeq[m.Seq].m.ID {
			t.Fatalf("history position %d: seq %d, id of another message", i, m.Seq)
		}
		if i > 0 && m.CreateTime < h[i-1].CreateTime {
			t.Fatalf("createTime goes back at seq %d", m.Seq)
		}
	}
	// Each node's settled pushes are written by its own committer: flush
	// both before a QueuePending turns what is still pending into queue
	// entries (a push written later would be a duplicate).
	for _, db := range []*DB{db1, db2} {
		if err := db.QueuePending(1 << 40); err != nil {
			t.Fatal(err)
		}
	}
	last := bySeq[total].m
	for _, p := range [][2]uint64{{a, b}, {b, a}} {
		c, err := db1.Contact(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		wantPending := last.From == p[1]
		if c.Unread != unread[p[0]] || c.LastSeq != total || c.Pending != wantPending || c.LastMessage != last.CreateTime {
			t.Fatalf("%d's record of %d: %+v, want %d unread, pending %v, last seq %d", p[0], p[1], c, unread[p[0]], wantPending, total)
		}
		n, err := db2.Counts(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if n.Contacts != 1 || (n.Pending == 1) != wantPending {
			t.Fatalf("%d's counts %+v", p[0], n)
		}
		if err := db1.QueuePending(p[0]); err != nil {
			t.Fatal(err)
		}
		page, err := db1.ReadOffline(p[0], storage.QueueQuery{Peer: p[1], Limit: total})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(page.Friends[0].Msgs); got != queued[p[0]] || page.Friends[0].LastSeq != total {
			t.Fatalf("%d's queue holds %d (last seq %d), want %d", p[0], got, page.Friends[0].LastSeq, queued[p[0]])
		}
	}
}

// PROTOCOL §4.1 across nodes: resends of one client id on two nodes at
// once store it once; every other outcome is the stored message.
func TestResendTwoNodes(t *testing.T) {
	db1, url := openTest(t, nil)
	db2 := openNode(t, url)
	m := privMsg(1, 2, "once", 1000)
	results := make(chan storage.AppendResult, 16)
	for i := 0; i < 16; i++ {
		db := db1
		if i%2 == 1 {
			db = db2
		}
		go func() {
			if err := db.AppendPrivate(m, storage.AppendOptions{Offline: true, ClientID: true}, func(r storage.AppendResult) { results <- r }); err != nil {
				results <- storage.AppendResult{Err: err}
			}
		}()
	}
	fresh := 0
	for i := 0; i < 16; i++ {
		r := <-results
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if !r.Duplicate {
			fresh++
		} else if r.Online {
			t.Fatalf("a resend of a queued message says online: %+v", r)
		}
		if r.Msg.Seq != 1 || r.Msg.ID != m.ID || r.Msg.Content != "once" {
			t.Fatalf("result %+v", r)
		}
	}
	if fresh != 1 {
		t.Fatalf("stored %d times", fresh)
	}
	if c, err := db2.Contact(2, 1); err != nil || c.Unread != 1 {
		t.Fatalf("receiver %+v %v", c, err)
	}
	if n, err := db1.Counts(2); err != nil || n.Contacts != 1 || n.Pending != 1 {
		t.Fatalf("receiver counts %+v %v", n, err)
	}
}

// PROTOCOL §1.2, §1.3 across nodes: two nodes touching a new pair and
// assigning one visitor at once count each contact once and leave one
// partner waited on.
func TestTouchTwoNodes(t *testing.T) {
	db1, url := openTest(t, nil)
	db2 := openNode(t, url)
	const v = 1
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		db := db1
		if i%2 == 1 {
			db = db2
		}
		agent := uint64(100 + i%2)
		wg.Go(func() {
			ch := make(chan error, 1)
			if err := db.Touch(v, agent, int64(1000+i), storage.TouchOptions{Visitor: v, Assigned: true}, func(err error) { ch <- err }); err != nil {
				t.Error(err)
				return
			}
			if err := <-ch; err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	partner, err := db1.LastPartner(v)
	if err != nil || (partner != 100 && partner != 101) {
		t.Fatalf("partner %d %v", partner, err)
	}
	var waiting uint64
	for _, agent := range []uint64{100, 101} {
		n, err := db2.Counts(agent)
		if err != nil || n.Contacts != 1 {
			t.Fatalf("agent %d counts %+v %v", agent, n, err)
		}
		c, err := db2.Contact(agent, v)
		if err != nil || c.Waiting != (n.Waiting == 1) {
			t.Fatalf("agent %d's record %+v against counts %+v (%v)", agent, c, n, err)
		}
		waiting += n.Waiting
	}
	if waiting != 1 {
		t.Fatalf("%d agents have the visitor waiting, want the partner only", waiting)
	}
	if n, err := db1.Counts(v); err != nil || n.Contacts != 2 || n.Waiting != 0 {
		t.Fatalf("visitor counts %+v %v", n, err)
	}
}

// PROTOCOL §4.5 across nodes: two recalls of one message at once, one on
// each node: one recalls it, the other finds it recalled.
func TestRecallTwoNodes(t *testing.T) {
	db1, url := openTest(t, nil)
	db2 := openNode(t, url)
	r := appendWait(t, db1, privMsg(1, 2, "oops", 1000), storage.AppendOptions{Offline: true, ClientID: true})
	errs := make(chan error, 2)
	for _, db := range []*DB{db1, db2} {
		if err := db.Recall(1, r.Msg.ID, 0, func(_ storage.Message, err error) { errs <- err }); err != nil {
			t.Fatal(err)
		}
	}
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) || !(errors.Is(e1, storage.ErrRecalled) || errors.Is(e2, storage.ErrRecalled)) {
		t.Fatalf("two recalls: %v, %v; want one success and one ErrRecalled", e1, e2)
	}
	if c, err := db2.Contact(2, 1); err != nil || c.Unread != 0 || c.Pending {
		t.Fatalf("receiver after the recall %+v %v", c, err)
	}
}

// PROTOCOL §5 across nodes: members joined and left on another node after
// this one read them: the group message queues the one who joined and
// leaves nothing for the one who left, pending or queued.
func TestGroupMembershipMovedOnAnotherNode(t *testing.T) {
	db1, url := openTest(t, nil)
	db2 := openNode(t, url)
	join := func(db *DB, uid uint64) uint64 {
		t.Helper()
		var gid uint64
		waitErr(t, func(done func(error)) error {
			return db.Join("g", uid, 1000, 100, func(g uint64, result int, err error) {
				if err == nil && result != storage.JoinOK {
					err = fmt.Errorf("join result %d", result)
				}
				gid = g
				done(err)
			})
		})
		return gid
	}
	gid := join(db1, 1)
	join(db1, 2)
	join(db1, 4)
	members, err := db1.Members(gid)
	if err != nil || fmt.Sprint(members) != "[1 2 4]" {
		t.Fatalf("members %v %v", members, err)
	}
	ver := db1.MembershipVersion(gid)
	// Node 2: 3 joins, 2 leaves, after node 1 read the members.
	join(db2, 3)
	waitErr(t, func(done func(error)) error {
		return db2.Leave(gid, 2, func(left bool, err error) {
			if err == nil && !left {
				err = errors.New("not left")
			}
			done(err)
		})
	})
	// Node 1 sends with what it read: 2 online, 4 offline.
	ch := make(chan storage.AppendResult, 1)
	m := storage.Message{ID: msgID(), From: 1, FromID: "u1", Group: gid, GroupID: "g", ChatType: storage.ChatGroup, Content: "hi", CreateTime: 1000}
	if err := db1.AppendGroup(m, []uint64{2}, []uint64{4}, ver, storage.AppendOptions{ClientID: true}, func(r storage.AppendResult) { ch <- r }); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.Err != nil || r.Msg.Seq != 1 || r.Delivery == (storage.Delivery{}) {
		t.Fatalf("append %+v", r)
	}
	r.Delivery.Member(0).Settle(false) // 2's push lost: 2 left, nothing to queue
	for uid, want := range map[uint64]string{2: "[]", 3: "[1]", 4: "[1]", 1: "[]"} {
		if err := db1.QueuePending(uid); err != nil {
			t.Fatal(err)
		}
		page, err := db1.ReadOffline(uid, storage.QueueQuery{Group: gid, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, pg := range page.Groups {
			for _, m := range pg.Msgs {
				seqs = append(seqs, m.Seq)
			}
		}
		if fmt.Sprint(seqs) != want && !(want == "[]" && seqs == nil) {
			t.Fatalf("member %d's group queue %v, want %s", uid, seqs, want)
		}
	}
}

// PROTOCOL §7.2: an ack removes the queued entries it covers and leaves
// the pushes still pending to their settling; a flood of acks, spread
// over conversations, applies them all.
func TestAckPendingAndFlood(t *testing.T) {
	db, _ := openTest(t, nil)
	for i := 0; i < 3; i++ {
		appendWait(t, db, privMsg(1, 2, "q", 1000), storage.AppendOptions{Offline: true})
	}
	p := appendWait(t, db, privMsg(1, 2, "pending", 1000), storage.AppendOptions{})
	for peer := uint64(10); peer < 20; peer++ {
		appendWait(t, db, privMsg(peer, 2, "q", 1000), storage.AppendOptions{Offline: true})
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				if err := db.Ack(2, uint64(10+i%10), false, 1); err != nil {
					t.Error(err)
				}
				if err := db.Ack(2, 1, false, uint64(1+i%2)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := db.Ack(2, 1, false, 4); err != nil {
		t.Fatal(err)
	}
	if err := db.QueuePending(1 << 40); err != nil { // the acks are applied
		t.Fatal(err)
	}
	// The ack of 4 took 3, not the pending 4, whose push is lost since.
	p.Delivery.Settle(false)
	if err := db.QueuePending(2); err != nil {
		t.Fatal(err)
	}
	page, err := db.ReadOffline(2, storage.QueueQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pg := range page.Friends {
		for _, m := range pg.Msgs {
			got = append(got, fmt.Sprint(pg.Peer, ":", m.Seq))
		}
	}
	if fmt.Sprint(got) != "[1:4]" {
		t.Fatalf("queued after the acks %v, want [1:4] (the pending push, lost after the ack)", got)
	}
}

// BenchmarkAppendPrivate: concurrent appends to distinct conversations,
// through the group commit.
func BenchmarkAppendPrivate(b *testing.B) {
	db, _ := openTest(b, nil)
	var mu sync.Mutex
	next := uint64(0)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		next += 2
		from := next
		mu.Unlock()
		ch := make(chan storage.AppendResult, 1)
		for pb.Next() {
			if err := db.AppendPrivate(privMsg(from, from+1, "benchmark message", 1000), storage.AppendOptions{Offline: true},
				func(r storage.AppendResult) { ch <- r }); err != nil {
				b.Error(err)
				return
			}
			if r := <-ch; r.Err != nil {
				b.Error(r.Err)
				return
			}
		}
	})
	st := db.CommitStats()
	b.ReportMetric(float64(st.Ops)/float64(max(st.Batches, 1)), "ops/commit")
}
