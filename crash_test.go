package main

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
)

type pulled struct {
	Code int
	Data struct {
		Friends map[string][]struct {
			ID      string
			Seq     uint64
			Content string
		}
	}
}

// history reads the whole conversation of c's user with peer, 500 a page.
func history(t testing.TB, c *wsClient, peer string) (ids []string, seqs []uint64) {
	t.Helper()
	var after uint64
	for {
		c.send(fmt.Sprintf(`{"cmd":19,"type":1,"fromUserId":%q,"afterSeq":%d}`, peer, after))
		var r pulled
		if err := json.Unmarshal([]byte(c.read()), &r); err != nil || r.Code != 10018 {
			t.Fatalf("history page: %v %+v", err, r)
		}
		page := r.Data.Friends[peer]
		if len(page) == 0 {
			return ids, seqs
		}
		for _, m := range page {
			ids = append(ids, m.ID)
			seqs = append(seqs, m.Seq)
		}
		after = page[len(page)-1].Seq
	}
}

// PROTOCOL §4.3 "nothing acked is ever lost": 500 acked messages to an
// offline user survive kill -9, in the offline queue and in history, in
// order and once each.
func TestSection4_3_AckedMessagesSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "-rate-limit", "-1")
	ts := p.testServer()
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	const n = 500
	for i := 0; i < n; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"m%d"}`, i))
	}
	acked := make([]string, 0, n)
	for i := 0; i < n; i++ {
		m := ackRE.FindStringSubmatch(a.read())
		if m == nil || m[1] != "10001" || m[4] != fmt.Sprint(i+1) {
			t.Fatalf("ack %d: %v", i, m)
		}
		acked = append(acked, m[3])
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()

	ts2 := startProc(t, dir, "-rate-limit", "-1").testServer()
	b := ts2.login(tb)
	b.send(`{"cmd":19,"type":2,"fromUserId":"visitor_a"}`)
	var r pulled
	if err := json.Unmarshal([]byte(b.read()), &r); err != nil || r.Code != 10022 {
		t.Fatalf("pull: %v %+v", err, r.Code)
	}
	q := r.Data.Friends["visitor_a"]
	if len(q) != n {
		t.Fatalf("offline queue holds %d of %d", len(q), n)
	}
	for i, m := range q {
		if m.ID != acked[i] || m.Content != fmt.Sprintf("m%d", i) {
			t.Fatalf("queue[%d] = %+v, want id %s", i, m, acked[i])
		}
	}
	ids, _ := history(t, b, "visitor_a")
	if fmt.Sprint(ids) != fmt.Sprint(acked) {
		t.Fatalf("history differs from the acked messages: %d vs %d", len(ids), len(acked))
	}
}

// floodProc starts a gateway process on dir, registers visitor_a and
// agent_b, and has visitor_a send agent_b sent messages without ids as
// fast as the socket takes them, until the server is gone. It returns the
// process, visitor_a's token and connection (whose acks the caller reads).
func floodProc(t *testing.T, dir string, sent int) (*proc, string, *wsClient) {
	t.Helper()
	p := startProc(t, dir, "-rate-limit", "-1")
	ts := p.testServer()
	ta := ts.register("visitor_a", 0)
	ts.register("agent_b", 1)
	a := ts.login(ta)
	go func() {
		for i := 0; i < sent; i++ {
			if a.c.WriteMessage(1, []byte(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"m%d"}`, i))) != nil {
				return // the server is gone
			}
		}
	}()
	return p, ta, a
}

// PROTOCOL §4.3: killed while messages are in flight, every message that
// was acked is there after the restart; seqs stay gap-free and nothing is
// stored twice.
func TestSection4_3_KillDuringSending(t *testing.T) {
	dir := t.TempDir()
	const sent, killAfter = 3000, 400
	p, ta, a := floodProc(t, dir, sent)
	acked := map[string]bool{}
	for len(acked) < killAfter {
		m := ackRE.FindStringSubmatch(a.read())
		if m == nil {
			t.Fatal("bad ack")
		}
		acked[m[3]] = true
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()

	ts2 := startProc(t, dir, "-rate-limit", "-1").testServer()
	a2 := ts2.login(ta)
	ids, seqs := history(t, a2, "agent_b")
	seen := map[string]bool{}
	for i, id := range ids {
		if seqs[i] != uint64(i+1) {
			t.Fatalf("seq %d at position %d: not gap-free", seqs[i], i)
		}
		if seen[id] {
			t.Fatalf("id %s stored twice", id)
		}
		seen[id] = true
	}
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acked message %s lost (%d stored, %d acked)", id, len(ids), len(acked))
		}
	}
	t.Logf("%d acked before the kill, %d stored", len(acked), len(ids))
}
