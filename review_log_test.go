package main

import (
	"fmt"
	"syscall"
	"testing"
)

// PROTOCOL §4.1 (ext), §4.5: "a repeat of the same id from the same sender
// is not stored again; the sender gets the same ack as the first time".
// A message acked 10001 (the receiver offline, the message queued) and
// then recalled is acked 10001 again when its id comes back, whether the
// client chose the id or the server made it (the ack's id).
func TestSection4_1_ResendOfARecalledQueuedMessageGetsItsFirstAck(t *testing.T) {
	ts := newTestServer(t)
	ta := ts.register("visitor_a", 0)
	ts.register("agent_b", 1) // never connects: every message is queued
	a := ts.login(ta)
	const clientID = "0000019ad0c1a2b3c4d5e6f708192a3b"
	for _, tc := range []struct{ name, id string }{{"client id", clientID}, {"server id", ""}} {
		idField := ""
		if tc.id != "" {
			idField = fmt.Sprintf(`,"id":%q`, tc.id)
		}
		a.send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"hi"%s}`, idField))
		first := ackRE.FindStringSubmatch(a.read())
		if first == nil || first[1] != "10001" {
			t.Fatalf("%s: first ack %v, want 10001", tc.name, first)
		}
		id := first[3]
		a.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, id))
		a.expect(`{"code":10025,"command":16,"msg":"recall ok 撤回成功"}`)
		_ = a.read() // the recall notice to the sender's connections
		a.send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"hi","id":%q}`, id))
		again := ackRE.FindStringSubmatch(a.read())
		if again == nil || again[3] != id || again[4] != first[4] {
			t.Fatalf("%s: resend ack %v, want id %s seq %s", tc.name, again, id, first[4])
		}
		if again[1] != first[1] {
			t.Errorf("%s: a resend of a queued, recalled message is acked %s, the first time %s", tc.name, again[1], first[1])
		}
	}
}

// PROTOCOL §0 (message ids are time-ordered and unique) and §4.3 with ids
// the store makes: a gateway killed (SIGKILL) while a sender without ids
// has many messages in flight may leave log records nothing refers to.
// After the restart new messages get ids of their own, never one of an
// acked message; history stays gap-free with one id per message, ids in
// seq order; an id acked before the kill still finds its message (a
// resend is acked as before, with its seq) and a new one can be recalled.
func TestSection4_3_StoreMadeIDsStayUniqueAcrossAKill(t *testing.T) {
	dir := t.TempDir()
	const sent, killAfter = 3000, 300
	p, ta, a := floodProc(t, dir, sent)
	type ack struct{ code, id, seq string }
	var before []ack
	for len(before) < killAfter {
		m := ackRE.FindStringSubmatch(a.read())
		if m == nil {
			t.Fatal("bad ack")
		}
		before = append(before, ack{m[1], m[3], m[4]})
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()

	ts2 := startProc(t, dir, "-rate-limit", "-1").testServer()
	a2 := ts2.login(ta)
	const after = 200
	for i := 0; i < after; i++ {
		a2.send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"n%d"}`, i))
	}
	var newIDs []string
	for i := 0; i < after; i++ {
		m := ackRE.FindStringSubmatch(a2.read())
		if m == nil || m[1] != "10001" {
			t.Fatalf("ack %d after the restart: %v", i, m)
		}
		newIDs = append(newIDs, m[3])
	}
	ids, seqs := history(t, a2, "agent_b")
	at := map[string]int{}
	for i, id := range ids {
		if seqs[i] != uint64(i+1) {
			t.Fatalf("seq %d at position %d: not gap-free", seqs[i], i)
		}
		if _, dup := at[id]; dup {
			t.Fatalf("id %s names two messages (seqs %d and %d)", id, at[id]+1, i+1)
		}
		at[id] = i
		if i > 0 && id <= ids[i-1] {
			t.Fatalf("ids out of order: seq %d has %s, seq %d %s", i, ids[i-1], i+1, id)
		}
	}
	for _, b := range before {
		if i, ok := at[b.id]; !ok || fmt.Sprint(i+1) != b.seq {
			t.Fatalf("acked %s (seq %s) before the kill: at %d, %v", b.id, b.seq, i+1, ok)
		}
	}
	for _, id := range newIDs {
		if _, ok := at[id]; !ok {
			t.Fatalf("acked %s after the restart: not in history", id)
		}
	}
	last := before[len(before)-1]
	a2.send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"again","id":%q}`, last.id))
	if m := ackRE.FindStringSubmatch(a2.read()); m == nil || m[1] != last.code || m[3] != last.id || m[4] != last.seq {
		t.Fatalf("resend of %+v after the kill: %v", last, m)
	}
	a2.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, newIDs[0]))
	a2.expect(`{"code":10025,"command":16,"msg":"recall ok 撤回成功"}`)
}
