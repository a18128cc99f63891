package storage

import (
	"fmt"
	"testing"
)

func touchSync(t testing.TB, db *DB, a, b uint64, now int64, visitor, partner uint64) {
	t.Helper()
	ch := make(chan error, 1)
	if err := db.Touch(a, b, now, visitor, partner, func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

// PROTOCOL §1.3 counters: contacts, pending replies and recency follow
// messages and assignments exactly.
func TestSection1_3_ContactCounters(t *testing.T) {
	db := openTest(t, t.TempDir())
	const agent = 100
	// Three visitors write; one gets a reply; a fourth is only assigned.
	for v := uint64(1); v <= 3; v++ {
		for i := 0; i < 2; i++ {
			appendOpts(t, db, Message{ID: msgID(), From: v, To: agent, ChatType: ChatPrivate, Content: "q", CreateTime: int64(1000 * v)}, AppendOptions{Visitor: v})
		}
	}
	appendOpts(t, db, Message{ID: msgID(), From: agent, To: 2, ChatType: ChatPrivate, Content: "a", CreateTime: 5000}, AppendOptions{Visitor: 2})
	touchSync(t, db, 4, agent, 6000, 4, agent)

	n, err := db.Counts(agent)
	if err != nil || n.Contacts != 4 || n.Pending != 2 {
		t.Fatalf("counts %+v %v", n, err)
	}
	if c, _ := db.Contact(agent, 1); c.Unread != 2 || !c.Pending {
		t.Fatalf("contact 1 %+v", c)
	}
	var order []uint64
	_ = db.Contacts(agent, func(c Contact) bool { order = append(order, c.Peer); return true })
	if fmt.Sprint(order) != "[4 2 3 1]" {
		t.Fatalf("recency order %v", order)
	}
	if k, _ := db.RecentCount(agent, 3000); k != 3 {
		t.Fatalf("recent since 3000: %d", k)
	}
	for v, want := range map[uint64]uint64{1: agent, 2: agent, 4: agent, 100: 0} {
		if p, _ := db.LastPartner(v); p != want {
			t.Fatalf("partner of %d = %d", v, p)
		}
	}
	ch := make(chan error, 1)
	_ = db.MarkRead(agent, 1, func(err error) { ch <- err })
	<-ch
	if c, _ := db.Contact(agent, 1); c.Unread != 0 || !c.Pending {
		t.Fatalf("after mark read %+v", c)
	}
	// The visitor's own view: one contact, nothing pending.
	if n, _ := db.Counts(1); n.Contacts != 1 || n.Pending != 0 {
		t.Fatalf("visitor counts %+v", n)
	}
}
