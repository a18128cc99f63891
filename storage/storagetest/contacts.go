package storagetest

import (
	"errors"

	"github.com/imgate/imgate/storage"
)

// PROTOCOL §1.2 (2): an agent's load is the visitors waiting for them —
// assigned and unanswered, or written to last — never colleagues or
// consultants; the last-assigned time and the load survive a restart.
func testWaitingVisitors(f *fixture) {
	t := f.t
	const x, y, c, v1, v2 = 100, 200, 300, 1, 2
	want := func(step string, wx, wy uint64) {
		t.Helper()
		if nx, ny := f.counts(x), f.counts(y); nx.Waiting != wx || ny.Waiting != wy {
			t.Fatalf("%s: waiting x=%d y=%d, want %d %d", step, nx.Waiting, ny.Waiting, wx, wy)
		}
	}
	waiting := func(owner, visitor uint64, w bool) {
		t.Helper()
		if ct := f.contact(owner, visitor); ct.Waiting != w {
			t.Fatalf("%d's record of %d: %+v, want waiting=%v", owner, visitor, ct, w)
		}
	}
	send := func(from, to, visitor uint64, at int64) {
		t.Helper()
		m := priv(from, to, "m")
		m.CreateTime = at
		f.append(m, storage.AppendOptions{Offline: true, Visitor: visitor})
	}
	f.touch(v1, x, 1000, storage.TouchOptions{Visitor: v1, Assigned: true})
	want("v1 assigned to x, silent", 1, 0)
	waiting(x, v1, true)
	send(c, y, 0, 1100) // a consultant asks y: not a visitor
	want("consultant wrote to y", 1, 0)
	if n := f.counts(y); n.Pending != 1 {
		t.Fatalf("y pending %d: a colleague's message still owes a reply", n.Pending)
	}
	send(v1, x, v1, 1200)
	want("v1 wrote", 1, 0)
	send(x, v1, v1, 1300)
	want("x answered", 0, 0)
	waiting(x, v1, false)
	f.touch(v1, x, 1400, storage.TouchOptions{Visitor: v1})
	want("v1 back to the same partner", 0, 0)
	send(v1, x, v1, 1500)
	want("v1 wrote again", 1, 0)
	f.touch(v1, y, 1600, storage.TouchOptions{Visitor: v1, Assigned: true})
	want("v1 reassigned to y", 0, 1)
	waiting(x, v1, false)
	waiting(y, v1, true)
	send(v2, x, v2, 1700) // v2 writes to x without an assignment
	want("v2 wrote to x", 1, 1)
	send(y, v2, v2, 1800) // y answers v2: v2's partner is now y
	want("y took v2", 0, 1)
	for v, p := range map[uint64]uint64{v1: y, v2: y} {
		if got, err := f.s.LastPartner(v); err != nil || got != p {
			t.Fatalf("partner of %d: %d %v, want %d", v, got, err, p)
		}
	}
	if n := f.counts(y); n.Assigned != 1600 {
		t.Fatalf("y assigned at %d, want 1600", n.Assigned)
	}
	if n := f.counts(x); n.Assigned != 1000 {
		t.Fatalf("x assigned at %d, want 1000", n.Assigned)
	}
	f.reopen()
	want("after a restart", 0, 1)
	if n := f.counts(x); n.Assigned != 1000 {
		t.Fatalf("after a restart x assigned at %d, want 1000", n.Assigned)
	}
	if n := f.counts(y); n.Assigned != 1600 {
		t.Fatalf("after a restart y assigned at %d, want 1600", n.Assigned)
	}
	// The partner survives too: v1 writing to y keeps y's load, and y
	// answering ends it.
	send(v1, y, v1, 1900)
	want("v1 wrote to y after the restart", 0, 1)
	send(y, v1, v1, 2000)
	want("y answered v1", 0, 0)
}

// PROTOCOL §1.3 counters: contacts, pending replies, unread and recency
// follow messages and assignments exactly; LastPartner follows the
// visitor's conversations (PROTOCOL §1.2 (1)).
func testContactCounters(f *fixture) {
	t, s := f.t, f.s
	const agent = 100
	// Three visitors write; one gets a reply; a fourth is only assigned.
	for v := uint64(1); v <= 3; v++ {
		for i := 0; i < 2; i++ {
			m := priv(v, agent, "q")
			m.CreateTime = int64(1000 * v)
			f.append(m, storage.AppendOptions{Offline: true, Visitor: v})
		}
	}
	m := priv(agent, 2, "a")
	m.CreateTime = 5000
	f.append(m, storage.AppendOptions{Offline: true, Visitor: 2})
	f.touch(4, agent, 6000, storage.TouchOptions{Visitor: 4})

	if n := f.counts(agent); n.Contacts != 4 || n.Pending != 2 {
		t.Fatalf("counts %+v, want 4 contacts, 2 pending", n)
	}
	if c := f.contact(agent, 1); c.Unread != 2 || !c.Pending || c.LastContact != 1000 {
		t.Fatalf("contact 1 %+v", c)
	}
	if c := f.contact(agent, 2); c.Unread != 2 || c.Pending || c.LastContact != 5000 {
		t.Fatalf("contact 2 %+v", c)
	}
	if c := f.contact(agent, 4); c.Unread != 0 || c.Pending || c.LastContact != 6000 || c.LastMessage != 0 || c.LastSeq != 0 {
		t.Fatalf("contact 4, assigned only: %+v", c)
	}
	if got := f.contactOrder(agent); got != "[4 2 3 1]" {
		t.Fatalf("recency order %s", got)
	}
	for since, want := range map[int64]int{0: 4, 3000: 3, 3001: 2, 6000: 1, 6001: 0} {
		if k, err := s.RecentCount(agent, since); err != nil || k != want {
			t.Fatalf("recent since %d: %d %v, want %d", since, k, err, want)
		}
	}
	for v, want := range map[uint64]uint64{1: agent, 2: agent, 4: agent, agent: 0, 99: 0} {
		if p, err := s.LastPartner(v); err != nil || p != want {
			t.Fatalf("partner of %d = %d %v, want %d", v, p, err, want)
		}
	}
	f.markRead(agent, 1)
	if c := f.contact(agent, 1); c.Unread != 0 || !c.Pending || c.ReadSeq != 2 {
		t.Fatalf("after mark read %+v, want nothing unread, still pending, read to 2", c)
	}
	// The visitors' own view: one contact, nothing pending but for 2,
	// who got a reply.
	if n := f.counts(1); n.Contacts != 1 || n.Pending != 0 || n.Waiting != 0 {
		t.Fatalf("visitor 1 counts %+v", n)
	}
	if n := f.counts(2); n.Contacts != 1 || n.Pending != 1 {
		t.Fatalf("visitor 2 counts %+v", n)
	}
	if c := f.contact(2, agent); c.Unread != 1 || !c.Pending {
		t.Fatalf("visitor 2's record %+v", c)
	}
	if _, err := s.Contact(1, 2); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("two visitors who never met: %v", err)
	}
}

// PROTOCOL §1.3, §7.4: every field of the contact records, the recency and
// conversation orders and the totals are exact, and stay so across a
// restart and the next message.
func testContactRecordsExact(f *fixture) {
	t := f.t
	const agent = 100
	send := func(from, to uint64, at int64) {
		t.Helper()
		m := priv(from, to, "x")
		m.CreateTime = at
		f.append(m, storage.AppendOptions{Offline: true})
	}
	for r := int64(0); r < 4; r++ {
		for v := uint64(1); v <= 5; v++ {
			send(v, agent, 1000*r+int64(v))
		}
	}
	send(agent, 2, 4000)
	send(agent, 4, 4100)
	f.touch(6, agent, 4200, storage.TouchOptions{Visitor: 6})
	f.markRead(agent, 3)

	check := func(step, wantOrder string, wantPending uint64) {
		t.Helper()
		if got := f.contactOrder(agent); got != wantOrder {
			t.Fatalf("%s: recency order %s, want %s", step, got, wantOrder)
		}
		if n := f.counts(agent); n.Contacts != 6 || n.Pending != wantPending || n.Waiting != 1 {
			t.Fatalf("%s: counts %+v", step, n)
		}
		if k, err := f.s.RecentCount(agent, 0); err != nil || k != 6 {
			t.Fatalf("%s: %d recent of 6 contacts, %v", step, k, err)
		}
	}
	check("before the restart", "[6 4 2 5 3 1]", 3)
	f.reopen()
	check("after the restart", "[6 4 2 5 3 1]", 3)
	if k, err := f.s.RecentCount(agent, 3004); err != nil || k != 4 {
		t.Fatalf("recent since 3004: %d %v", k, err)
	}
	for peer, want := range map[uint64]storage.Contact{
		1: {Peer: 1, Unread: 4, Pending: true, LastContact: 3001, LastMessage: 3001, LastSeq: 4},
		2: {Peer: 2, Unread: 4, LastContact: 4000, LastMessage: 4000, LastSeq: 5},
		3: {Peer: 3, Pending: true, LastContact: 3003, ReadSeq: 4, LastMessage: 3003, LastSeq: 4},
		6: {Peer: 6, LastContact: 4200, Waiting: true}, // assigned, unanswered
	} {
		if c, err := f.s.Contact(agent, peer); err != nil || c != want {
			t.Fatalf("contact %d: %+v %v, want %+v", peer, c, err, want)
		}
	}
	if c := f.contact(2, agent); c != (storage.Contact{Peer: agent, Unread: 1, Pending: true, LastContact: 4000, LastMessage: 4000, LastSeq: 5}) {
		t.Fatalf("visitor 2's view %+v", c)
	}
	if c := f.contact(6, agent); c != (storage.Contact{Peer: agent, LastContact: 4200}) {
		t.Fatalf("visitor 6's view %+v", c)
	}
	// PROTOCOL §7.4: conversations by their newest message, none for a
	// contact without one; before keeps those strictly older.
	if got := f.conversations(agent, 0, 0); got != "[4 2 5 3 1]" {
		t.Fatalf("conversations %s", got)
	}
	if got := f.conversations(agent, 4000, 2); got != "[5 3]" {
		t.Fatalf("conversations before 4000, two: %s", got)
	}
	if got := f.conversations(agent, 4001, 0); got != "[2 5 3 1]" {
		t.Fatalf("conversations before 4001: %s", got)
	}
	if got := f.conversations(agent, 1, 0); got != "[]" {
		t.Fatalf("conversations before 1: %s", got)
	}
	if got := f.conversations(6, 0, 0); got != "[]" {
		t.Fatalf("visitor 6's conversations: %s", got)
	}
	// One more message moves visitor 1 to the front of both orders.
	send(1, agent, 5000)
	check("after one more message", "[1 6 4 2 5 3]", 3)
	if got := f.conversations(agent, 0, 0); got != "[1 4 2 5 3]" {
		t.Fatalf("conversations after one more message: %s", got)
	}
	if c := f.contact(agent, 1); c.Unread != 5 || c.LastMessage != 5000 || c.LastSeq != 5 || c.LastContact != 5000 {
		t.Fatalf("contact 1 after one more message: %+v", c)
	}
}

// PROTOCOL §1.2, §1.3: Touch makes two users contacts of each other with
// activity that never goes back, counts an assignment, and makes no
// conversation; MarkRead of a conversation reads it to its last seq and
// makes nobody a contact.
func testTouchAndMarkRead(f *fixture) {
	t := f.t
	const a, b = 10, 20
	f.touch(a, b, 5000, storage.TouchOptions{})
	for _, p := range [][2]uint64{{a, b}, {b, a}} {
		if c := f.contact(p[0], p[1]); c != (storage.Contact{Peer: p[1], LastContact: 5000}) {
			t.Fatalf("%d's record of %d after a touch: %+v", p[0], p[1], c)
		}
		if n := f.counts(p[0]); n != (storage.ContactCounts{Contacts: 1}) {
			t.Fatalf("%d's counts after a touch: %+v", p[0], n)
		}
	}
	f.touch(b, a, 3000, storage.TouchOptions{}) // older: activity stays
	if c := f.contact(a, b); c.LastContact != 5000 {
		t.Fatalf("a touch in the past moved activity back: %+v", c)
	}
	if n := f.counts(a); n.Contacts != 1 {
		t.Fatalf("touching again counted a second contact: %+v", n)
	}
	if got := f.conversations(a, 0, 0); got != "[]" {
		t.Fatalf("a touch made a conversation: %s", got)
	}
	// An assignment stamps the agent's Assigned, never the visitor's.
	const v, agent = 30, 40
	f.touch(v, agent, 7000, storage.TouchOptions{Visitor: v, Assigned: true})
	if n := f.counts(agent); n.Assigned != 7000 || n.Waiting != 1 {
		t.Fatalf("agent after an assignment: %+v", n)
	}
	if n := f.counts(v); n.Assigned != 0 || n.Waiting != 0 {
		t.Fatalf("visitor after an assignment: %+v", n)
	}
	f.touch(v, agent, 6500, storage.TouchOptions{Visitor: v, Assigned: true})
	if n := f.counts(agent); n.Assigned != 7000 || n.Waiting != 1 {
		t.Fatalf("an older assignment: %+v, want assigned at 7000, one waiting", n)
	}

	// MarkRead reads to the last seq, and leaves non-contacts alone.
	for i := 0; i < 3; i++ {
		f.sendOffline(priv(b, a, "m"))
	}
	f.markRead(a, b)
	if c := f.contact(a, b); c.Unread != 0 || c.ReadSeq != 3 || !c.Pending {
		t.Fatalf("after MarkRead: %+v", c)
	}
	f.markRead(a, b) // again: nothing changes
	if c := f.contact(a, b); c.Unread != 0 || c.ReadSeq != 3 {
		t.Fatalf("after a second MarkRead: %+v", c)
	}
	f.markRead(77, 88)
	if _, err := f.s.Contact(77, 88); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("MarkRead of strangers made a contact: %v", err)
	}
	if n := f.counts(77); n != (storage.ContactCounts{}) {
		t.Fatalf("MarkRead of strangers counted: %+v", n)
	}
}
