package storagetest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/imgate/imgate/storage"
)

// PROTOCOL §4.3 ("nothing acked is ever lost") and §7.7: users, tokens,
// messages, queues, contacts and their counters, read cursors, groups and
// the epoch survive a restart, and the pushes never settled before it are
// in the offline queues after it.
func testReopenKeepsEverything(f *fixture) {
	t := f.t
	reg := func(id string, typ int, terminal, token string) storage.User {
		t.Helper()
		u, err := f.s.Register(storage.Registration{
			User:  storage.User{ID: id, Type: typ, Nick: "nick of " + id, Avatar: "https://x/" + id, Terminal: terminal, Sign: "sign"},
			Token: token, TokenExpire: 1 << 50, Now: 500,
		})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	agent := reg("agent_1", storage.UserAgent, "pc", tok(1))
	visitor := reg("visitor_1", storage.UserVisitor, "h5", tok(2))
	A, V := agent.UID, visitor.UID
	f.touch(V, A, 1000, storage.TouchOptions{Visitor: V, Assigned: true})
	ids := map[uint64]string{A: agent.ID, V: visitor.ID}
	msg := func(from, to uint64, content string, at int64) storage.Message {
		m := priv(from, to, content)
		m.FromID, m.ToID, m.CreateTime = ids[from], ids[to], at
		return m
	}
	for i := int64(0); i < 2; i++ {
		f.append(msg(V, A, "queued", 1100+i), storage.AppendOptions{Offline: true, ClientID: true, Visitor: V}) // A's queue: 1, 2
	}
	lost := f.append(msg(V, A, "lost", 1200), storage.AppendOptions{ClientID: true, Visitor: V}) // 3
	lost.Delivery.Settle(false)
	f.sendOnline(msg(A, V, "written", 1300)).Delivery.Settle(true) // 4
	f.sendOnline(msg(A, V, "never settled", 1400))                 // 5
	f.read(A, V, false, 1)
	gid := f.mustJoin("g", A)
	f.mustJoin("g", V)
	h := f.mustJoin("h", V)
	f.appendGroup(grp(A, gid, "g", "queued"), nil, []uint64{V}, storage.AppendOptions{})
	f.appendGroup(grp(A, gid, "g", "never settled"), []uint64{V}, nil, storage.AppendOptions{})
	f.read(A, gid, true, 2)
	f.barrier()

	snapshot := func() string {
		t.Helper()
		s := f.s
		var b strings.Builder
		put := func(what string, v ...any) { fmt.Fprintf(&b, "%s: %+v\n", what, v) }
		for _, id := range []string{"agent_1", "visitor_1"} {
			u, err := s.UserByID(id)
			put("user "+id, u, err)
			u, err = s.UserByUID(u.UID)
			put("uid of "+id, u, err)
		}
		for _, tk := range []string{tok(1), tok(2)} {
			info, err := s.TokenInfo(tk, 2000)
			put("token "+tk, info, err)
		}
		for _, p := range [][2]uint64{{A, V}, {V, A}} {
			c, err := s.Contact(p[0], p[1])
			put(fmt.Sprint("contact ", p), c, err)
			n, err := s.Counts(p[0])
			put(fmt.Sprint("counts ", p[0]), n, err)
			put(fmt.Sprint("contacts ", p[0]), f.contactOrder(p[0]), f.conversations(p[0], 0, 0))
			k, err := s.RecentCount(p[0], 1000)
			put(fmt.Sprint("recent ", p[0]), k, err)
		}
		p, err := s.LastPartner(V)
		put("partner", p, err)
		hist, more := f.history(A, V, storage.HistoryQuery{Count: 100})
		put("history", hist, more)
		hist, more = f.groupHistory(gid, storage.HistoryQuery{Count: 100})
		put("group history", hist, more)
		put("last seqs", f.lastSeq(A, V, false), f.lastSeq(V, gid, true))
		put("members", f.members(gid), f.members(h), f.userGroups(A), f.userGroups(V))
		for _, id := range []string{"g", "h"} {
			g, err := s.GroupByID(id)
			put("group "+id, g, err)
		}
		put("group read", f.groupReadSeq(A, gid), f.groupReadSeq(V, gid), f.isMember(gid, V))
		put("epoch", s.Epoch())
		return b.String()
	}
	before := snapshot()
	if f.contact(A, V).ReadSeq != 1 || f.groupReadSeq(A, gid) != 2 || f.counts(A).Waiting != 1 || f.counts(A).Assigned != 1000 {
		t.Fatalf("before the restart:\n%s", before)
	}
	f.reopen()
	if after := snapshot(); after != before {
		t.Fatalf("before the restart:\n%s\nafter it:\n%s", before, after)
	}
	if got := str(f.queued(A, V)); got != "[2 3]" {
		t.Fatalf("agent's queue after the restart: %s, want [2 3]", got)
	}
	if got := f.queued(V, A); str(got) != "[5]" && str(got) != "[4 5]" {
		t.Fatalf("visitor's queue after the restart: %v, want [5] (the push never settled)", got)
	}
	if got := str(f.groupQueued(V, gid)); got != "[1 2]" {
		t.Fatalf("visitor's group queue after the restart: %s, want [1 2]", got)
	}
	// And it goes on from there.
	if r := f.append(msg(V, A, "after", 10), storage.AppendOptions{Offline: true, ClientID: true, Visitor: V}); r.Msg.Seq != 6 || r.Msg.CreateTime != 1400 {
		t.Fatalf("next message after the restart: %+v", r.Msg)
	}
	if r := f.appendGroup(grp(V, gid, "g", "after"), nil, []uint64{A}, storage.AppendOptions{}); r.Msg.Seq != 3 {
		t.Fatalf("next group message after the restart: %+v", r.Msg)
	}
	if c := f.contact(A, V); c.Unread != 3 || c.ReadSeq != 1 || !c.Pending || !c.Waiting {
		t.Fatalf("agent's record after the next message: %+v", c)
	}
}

// PROTOCOL §1.4: a store answers Ping while open; Close is idempotent;
// a closed store fails Ping with ErrClosed and refuses submissions with
// ErrClosed; reopened, it has what it had.
func testPingAndClose(f *fixture) {
	t, s := f.t, f.s
	if err := s.Ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	f.sendOffline(priv(1, 2, "kept"))
	gid := f.mustJoin("g", 1)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := s.Ping(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("ping after close: %v", err)
	}
	for what, submit := range map[string]func() error{
		"AppendPrivate": func() error {
			return s.AppendPrivate(priv(1, 2, "late"), storage.AppendOptions{Offline: true}, func(storage.AppendResult) {})
		},
		"AppendGroup": func() error {
			return s.AppendGroup(grp(1, gid, "g", "late"), nil, nil, 0, storage.AppendOptions{}, func(storage.AppendResult) {})
		},
		"Touch":    func() error { return s.Touch(1, 3, 1, storage.TouchOptions{}, func(error) {}) },
		"MarkRead": func() error { return s.MarkRead(2, 1, func(error) {}) },
		"Join":     func() error { return s.Join("g", 2, 1, 10, func(uint64, int, error) {}) },
		"Leave":    func() error { return s.Leave(gid, 1, func(bool, error) {}) },
		"Recall":   func() error { return s.Recall(1, msgID(), 0, func(storage.Message, error) {}) },
		"Read":     func() error { return s.Read(2, 1, false, 1, func(storage.ReadResult, error) {}) },
		"RemoveOffline": func() error {
			return s.RemoveOffline(2, []storage.Removal{{Peer: 1, Seqs: []uint64{1}}}, func(error) {})
		},
		"QueuePending": func() error { return s.QueuePending(2) },
	} {
		if err := submit(); !errors.Is(err, storage.ErrClosed) {
			t.Fatalf("%s on a closed store: %v, want ErrClosed", what, err)
		}
	}
	// Reads too: a read racing shutdown answers ErrClosed, never panics.
	for what, read := range map[string]func() error{
		"History":      func() error { _, _, err := s.History(1, 2, storage.HistoryQuery{Count: 10}); return err },
		"GroupHistory": func() error { _, _, err := s.GroupHistory(gid, storage.HistoryQuery{Count: 10}); return err },
		"ReadOffline":  func() error { _, err := s.ReadOffline(2, storage.QueueQuery{Limit: 10}); return err },
		"LastSeq":      func() error { _, err := s.LastSeq(1, 2, false); return err },
		"Contacts":     func() error { return s.Contacts(1, func(storage.Contact) bool { return true }) },
		"Conversations": func() error {
			return s.Conversations(1, 0, func(storage.Contact) bool { return true })
		},
		"Contact":      func() error { _, err := s.Contact(1, 2); return err },
		"Counts":       func() error { _, err := s.Counts(1); return err },
		"RecentCount":  func() error { _, err := s.RecentCount(1, 0); return err },
		"LastPartner":  func() error { _, err := s.LastPartner(1); return err },
		"GroupUnread":  func() error { _, err := s.GroupUnread(1, gid, 0, 5); return err },
		"GroupReadSeq": func() error { _, err := s.GroupReadSeq(1, gid); return err },
		"Members":      func() error { _, err := s.Members(gid + 1000); return err },
		"IsMember":     func() error { _, err := s.IsMember(gid, 1); return err },
		"UserGroups":   func() error { _, err := s.UserGroups(1); return err },
		"GroupByID":    func() error { _, err := s.GroupByID("g"); return err },
		"UserByID":     func() error { _, err := s.UserByID("u"); return err },
		"UserByUID":    func() error { _, err := s.UserByUID(1); return err },
		"TokenInfo":    func() error { _, err := s.TokenInfo("0123456789abcdef", 0); return err },
	} {
		if err := read(); !errors.Is(err, storage.ErrClosed) {
			t.Fatalf("%s on a closed store: %v, want ErrClosed", what, err)
		}
	}
	f.reopen()
	if err := f.s.Ping(); err != nil {
		t.Fatalf("ping after reopen: %v", err)
	}
	if got := str(f.queued(2, 1)); got != "[1]" {
		t.Fatalf("after reopen: queued %s", got)
	}
	if got := f.members(gid); got != "[1]" {
		t.Fatalf("after reopen: members %s", got)
	}
}

var epochPattern = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

// PROTOCOL §7.7: the epoch is 32 hex characters, stays across restarts,
// and differs between stores.
func testEpoch(f *fixture) {
	t := f.t
	e := f.s.Epoch()
	if !epochPattern.MatchString(e) {
		t.Fatalf("epoch %q is not 32 hex characters", e)
	}
	f.sendOffline(priv(1, 2, "x"))
	f.reopen()
	if got := f.s.Epoch(); got != e {
		t.Fatalf("epoch after a restart %q, want %q", got, e)
	}
	f.reopen()
	if got := f.s.Epoch(); got != e {
		t.Fatalf("epoch after a second restart %q, want %q", got, e)
	}
	other := f.h.Open(t, f.clock.Now)
	if o := other.Epoch(); o == e || !epochPattern.MatchString(o) {
		t.Fatalf("another store's epoch %q, this one's %q", o, e)
	}
}
