package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// pull is a decoded cmd 20 reply.
type pull struct {
	Code int
	Data struct {
		Friends map[string][]struct {
			ID      string
			Seq     uint64
			Content string
		}
		Groups map[string][]struct {
			ID  string
			Seq uint64
		}
		More   bool
		Userid string
	}
}

func decodePull(t testing.TB, s string) pull {
	t.Helper()
	var p pull
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		t.Fatalf("pull reply %.200s: %v", s, err)
	}
	return p
}

// sendAll sends n messages of size bytes from c to peer and returns the
// acked ids in order; every ack must have code want ("": either).
func sendAll(t testing.TB, c *wsClient, peer string, n, size int, want string) []string {
	t.Helper()
	pad := strings.Repeat("x", size)
	// At most 1 MiB unacknowledged: more could meet the connection's
	// request queue cap (10028) on a loaded machine.
	window := max(1, (1<<20)/(size+100))
	ids := make([]string, 0, n)
	sent := 0
	for len(ids) < n {
		for ; sent < n && sent-len(ids) < window; sent++ {
			c.send(fmt.Sprintf(`{"cmd":11,"to":%q,"chatType":2,"content":"%d %s"}`, peer, sent, pad))
		}
		raw := c.read()
		m := ackRE.FindStringSubmatch(raw)
		if m == nil || (want != "" && m[1] != want) {
			t.Fatalf("ack %d: %.300s, want %s", len(ids), raw, want)
		}
		ids = append(ids, m[3])
	}
	return ids
}

// pullAll pulls c's offline queue from peer (type 0) until it is empty and
// returns the ids in order; each reply must fit within maxReply bytes.
func pullAll(t testing.TB, c *wsClient, peer string, maxReply int) []string {
	t.Helper()
	var ids []string
	for round := 0; ; round++ {
		c.send(fmt.Sprintf(`{"cmd":19,"type":0,"fromUserId":%q}`, peer))
		raw := c.read()
		if maxReply > 0 && len(raw) > maxReply {
			t.Fatalf("pull reply of %d bytes, over the %d the connection takes", len(raw), maxReply)
		}
		p := decodePull(t, raw)
		if p.Code != 10016 {
			t.Fatalf("pull code %d", p.Code)
		}
		page := p.Data.Friends[peer]
		for _, m := range page {
			ids = append(ids, m.ID)
		}
		if len(page) == 0 {
			if p.Data.More {
				t.Fatal(`an empty page says "more"`)
			}
			return ids
		}
		if round > 1000 {
			t.Fatal("the queue never empties")
		}
	}
}

// settled makes a round trip on c after a pull: a pull's removal takes
// effect before the connection's next request is answered (PROTOCOL §4.4),
// so counts read after it (chatInfo, over HTTP) include it.
func settled(t testing.TB, ts *testServer, c *wsClient) {
	t.Helper()
	c.send(`{"cmd":13}`)
	c.expect(heartbeatReply(ts))
}

func unreadOf(t testing.TB, ts *testServer, owner, peer string) int {
	t.Helper()
	var r struct {
		Data struct {
			UnReadNum       int
			PendingReplyNum int
			AllContactsNum  int
		}
	}
	if err := json.Unmarshal([]byte(ts.chatInfo(fmt.Sprintf(`{"from":%q,"to":%q}`, owner, peer))), &r); err != nil {
		t.Fatal(err)
	}
	return r.Data.UnReadNum
}

// PROTOCOL §4.4: an offline pull bigger than the connection's output cap
// comes in pages that fit it, each saying "more"; nothing is removed that
// a reply did not carry, and the connection stays open.
func TestSection4_4_PullFitsTheOutputCap(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	sent := sendAll(t, a, "agent_b", 80, 60000, "10001") // ~4.8 MB for a 4 MiB cap
	b := ts.login(tb)
	b.send(`{"cmd":19,"type":0,"fromUserId":"visitor_a"}`)
	first := decodePull(t, b.read())
	if n := len(first.Data.Friends["visitor_a"]); n == 0 || n >= 80 || !first.Data.More {
		t.Fatalf("first page: %d messages, more=%v; want a part and more", n, first.Data.More)
	}
	got := []string{}
	for _, m := range first.Data.Friends["visitor_a"] {
		got = append(got, m.ID)
	}
	settled(t, ts, b)
	if n := unreadOf(t, ts, "agent_b", "visitor_a"); n != 80-len(got) {
		t.Fatalf("unread after the first page: %d, want %d", n, 80-len(got))
	}
	got = append(got, pullAll(t, b, "visitor_a", 4<<20)...)
	if fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("pulled %d messages, sent %d (or out of order)", len(got), len(sent))
	}
	settled(t, ts, b)
	if n := unreadOf(t, ts, "agent_b", "visitor_a"); n != 0 {
		t.Fatalf("unread after the queue emptied: %d", n)
	}
	b.send(`{"cmd":13}`)
	b.expect(heartbeatReply(ts))
}

// PROTOCOL §4.4: a type 0 pull whose reply was not written when the
// connection ended removes nothing: a client that drops right after asking
// finds everything again.
func TestSection4_4_UnwrittenPullRemovesNothing(t *testing.T) {
	// A cap above what the kernel's buffers take, so that most of the
	// reply can only wait in the server.
	ts := newTestServer(t, func(c *config) { c.MaxPending = 32 << 20; c.RateLimit = -1 })
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	sent := sendAll(t, a, "agent_b", 300, 60000, "10001") // 18 MB
	rc := ts.rawLogin(tb)
	if tc, ok := rc.nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	rc.write(text(`{"cmd":19,"type":0,"fromUserId":"visitor_a"}`))
	// The reply has begun: its first bytes are here.
	if op, p := rc.readFrameHead(); op != 1 || !bytes.HasPrefix(p, []byte(`{"code":10016`)) {
		t.Fatalf("reply starts with op %d %q", op, p)
	}
	// Drop the connection with the reply unread (RST, not FIN).
	if tc, ok := rc.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	rc.nc.Close()
	waitFor(t, "the connection to close", func() bool { return ts.stats().Conns == 1 })
	b := ts.login(tb)
	if got := pullAll(t, b, "visitor_a", 0); fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("after the unread pull: %d of %d messages left", len(got), len(sent))
	}
}

// readFrameHead reads a frame's header and the first bytes of its payload
// (up to 64), leaving the rest unread.
func (rc *rawConn) readFrameHead() (op byte, head []byte) {
	rc.t.Helper()
	var h [2]byte
	if _, err := rc.br.Read(h[:1]); err != nil {
		rc.t.Fatalf("read frame: %v", err)
	}
	if _, err := rc.br.Read(h[1:]); err != nil {
		rc.t.Fatalf("read frame: %v", err)
	}
	switch h[1] & 0x7f {
	case 126:
		_, _ = rc.br.Discard(2)
	case 127:
		_, _ = rc.br.Discard(8)
	}
	head = make([]byte, 64)
	n, _ := rc.br.Read(head)
	return h[0] & 0x0f, head[:n]
}

// PROTOCOL §2 and §4.2: a connection whose CLOSE is queued is offline at
// once: a message to its user is acked 10001 and queued.
func TestSection4_2_ClosingConnectionIsOffline(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	rc := ts.rawLogin(tb)
	rc.write(text(`{"cmd":14}`))
	if op, p := rc.readFrame(); op != 1 || !strings.Contains(string(p), `"code":10021`) {
		t.Fatalf("close reply: op %d %s", op, p)
	}
	if op, _ := rc.readFrame(); op != 8 {
		t.Fatalf("want the CLOSE, got op %d", op)
	}
	if onCluster() {
		// On its own node the closing connection is offline before its
		// CLOSE is written; the other nodes hear of it over the bus, after
		// it (PROTOCOL §8 makes only going online cluster-wide before the
		// client sees it). A message sent meanwhile from another node may
		// be acked 10000; no connection writes it, so it is queued all
		// the same (the pull below).
		waitFor(t, "agent_b offline on every node", func() bool { return !ts.online(uidOf(t, ts, "agent_b")) })
	}
	// The client does not answer the CLOSE: its socket is still open.
	ids := sendAll(t, a, "agent_b", 1, 10, "10001")
	b := ts.login(tb)
	if got := pullAll(t, b, "visitor_a", 0); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("queued %v, want %v", got, ids)
	}
}

// PROTOCOL §4.4: a pull capped by the page cap marks read only what it
// carried; the rest stays unread and queued.
func TestSection4_4_PartialPullLeavesTheRestUnread(t *testing.T) {
	t.Run("page cap 2", func(t *testing.T) {
		ts := newTestServer(t, func(c *config) { c.PageCap = 2 })
		ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
		a := ts.login(ta)
		sendAll(t, a, "agent_b", 3, 10, "10001")
		b := ts.login(tb)
		b.send(`{"cmd":19,"type":0,"fromUserId":"visitor_a"}`)
		if p := decodePull(t, b.read()); len(p.Data.Friends["visitor_a"]) != 2 || !p.Data.More {
			t.Fatalf("first pull %+v", p)
		}
		settled(t, ts, b)
		if n := unreadOf(t, ts, "agent_b", "visitor_a"); n != 1 {
			t.Fatalf("unread %d, want 1", n)
		}
		if got := pullAll(t, b, "visitor_a", 0); len(got) != 1 {
			t.Fatalf("left %d, want 1", len(got))
		}
		settled(t, ts, b)
		if n := unreadOf(t, ts, "agent_b", "visitor_a"); n != 0 {
			t.Fatalf("unread %d, want 0", n)
		}
	})
	t.Run("default cap, 520 queued", func(t *testing.T) {
		ts := newTestServer(t, func(c *config) { c.RateLimit = -1 })
		ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
		a := ts.login(ta)
		sendAll(t, a, "agent_b", 520, 10, "10001")
		b := ts.login(tb)
		b.send(`{"cmd":19,"type":0,"fromUserId":"visitor_a"}`)
		if p := decodePull(t, b.read()); len(p.Data.Friends["visitor_a"]) != 500 || !p.Data.More {
			t.Fatalf("first pull: %d, more %v", len(p.Data.Friends["visitor_a"]), p.Data.More)
		}
		settled(t, ts, b)
		if n := unreadOf(t, ts, "agent_b", "visitor_a"); n != 20 {
			t.Fatalf("unread %d, want 20", n)
		}
	})
}

// PROTOCOL §4.5: a recalled message is no longer unread (chatInfo and the
// chat list), and pending reply follows the newest message left.
func TestSection4_5_RecallUpdatesCounts(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	ids := sendAll(t, a, "agent_b", 2, 10, "10001")
	a.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, ids[1]))
	a.expect(`{"code":10025,"command":16,"msg":"recall ok 撤回成功"}`)
	_ = a.read() // the recall notice to the sender's own connections
	var info struct {
		Data struct{ UnReadNum, PendingReplyNum int }
	}
	_ = json.Unmarshal([]byte(ts.chatInfo(`{"from":"agent_b","to":"visitor_a"}`)), &info)
	if info.Data.UnReadNum != 1 || info.Data.PendingReplyNum != 1 {
		t.Fatalf("chatInfo after one recall %+v, want 1 unread, 1 pending", info.Data)
	}
	b := ts.login(tb)
	if l := readList(t, b, `{"cmd":17,"type":2,"extras":{"pullType":1}}`); len(l.Data.Friends) != 1 || l.Data.Friends[0].UnReadNum != 1 {
		t.Fatalf("chat list %+v", l.Data)
	}
	a.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, ids[0]))
	a.expect(`{"code":10025,"command":16,"msg":"recall ok 撤回成功"}`)
	_ = json.Unmarshal([]byte(ts.chatInfo(`{"from":"agent_b","to":"visitor_a"}`)), &info)
	if info.Data.UnReadNum != 0 || info.Data.PendingReplyNum != 0 {
		t.Fatalf("chatInfo after both recalls %+v, want nothing unread or pending", info.Data)
	}
}

// PROTOCOL §4.4: a type 0 pull marks the conversation read even when the
// queue is empty, so a client that got everything as pushes can clear
// its unread count.
func TestSection4_4_EmptyPullMarksRead(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a, b := ts.login(ta), ts.login(tb)
	sendAll(t, a, "agent_b", 2, 10, "10000")
	for range 2 {
		if !strings.HasPrefix(b.read(), `{"command":11,`) {
			t.Fatal("want the push")
		}
	}
	if n := unreadOf(t, ts, "agent_b", "visitor_a"); n != 2 {
		t.Fatalf("unread %d before the pull, want 2", n)
	}
	pullAll(t, b, "visitor_a", 0) // whatever is still queued, then empty
	settled(t, ts, b)
	if n := unreadOf(t, ts, "agent_b", "visitor_a"); n != 0 {
		t.Fatalf("unread %d after the pull, want 0", n)
	}
}

// PROTOCOL §4.6: a message to oneself makes no self-contact.
func TestSection4_6_MessageToSelfMakesNoContact(t *testing.T) {
	ts := newTestServer(t)
	ta := ts.register("visitor_a", 0)
	a1, a2 := ts.login(ta), ts.login(ta)
	a1.send(`{"cmd":11,"to":"visitor_a","chatType":2,"content":"note"}`)
	if m := ackRE.FindStringSubmatch(a1.read()); m == nil || m[1] != "10000" {
		t.Fatalf("ack %v", m)
	}
	if !strings.Contains(a2.read(), `"content":"note"`) {
		t.Fatal("the other terminal did not get the note")
	}
	l := readList(t, a1, `{"cmd":17,"type":2,"extras":{"pullType":1}}`)
	if len(l.Data.Friends) != 0 || l.Data.AllContactsNum != 0 {
		t.Fatalf("chat list after a note to self: %+v", l.Data)
	}
}

// PROTOCOL §6 10028: replies keep request order, and a refused chat's
// 10028 carries its id.
func TestSection6_RefusalsKeepRequestOrder(t *testing.T) {
	ts := newTestServer(t)
	ta, _ := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	rc := ts.rawLogin(ta)
	var burst bytes.Buffer
	ids := make([]string, 450)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i+1)
		burst.Write(text(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"m%d","id":%q}`, i, ids[i])))
	}
	rc.write(burst.Bytes())
	// Which ones are refused depends on how fast the bucket refills while
	// the burst is read; that replies come in request order does not.
	refused := 0
	for i, id := range ids {
		op, p := rc.readFrame()
		s := string(p)
		if op != 1 {
			t.Fatalf("reply %d: op %d", i, op)
		}
		switch {
		case strings.HasPrefix(s, `{"code":10028,"command":12,`):
			refused++
			if want := fmt.Sprintf(`{"code":10028,"command":12,"data":{"id":%q},"msg":"too many requests 请求过于频繁"}`, id); s != want {
				t.Fatalf("reply %d: %s\nwant %s", i, s, want)
			}
		case ackRE.MatchString(s):
			if m := ackRE.FindStringSubmatch(s); m[3] != id {
				t.Fatalf("reply %d acks %s, want %s: replies out of request order", i, m[3], id)
			}
		default:
			t.Fatalf("reply %d: %s", i, s)
		}
	}
	if refused == 0 {
		t.Fatal("nothing refused: the burst did not pass the limit")
	}
}

// PROTOCOL §2 with §8: one user's connections are capped; the next login
// is refused with 10008 and close 1008.
func TestSection2_ConnectionsPerUserCapped(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxConnsUser = 3 })
	tok := ts.register("visitor_a", 0)
	for range 3 {
		ts.login(tok)
	}
	c := ts.dial(tok)
	c.expect(`{"code":10008,"command":6,"msg":"login failed ! 登录失败!"}`)
	c.expectClose(websocket.ClosePolicyViolation)
	if def, _ := parseFlags(nil, func(string) string { return "" }); def.MaxConnsUser != 64 || def.MaxOutputTotal != 1<<30 {
		t.Fatalf("defaults: %d connections per user, %d bytes of output", def.MaxConnsUser, def.MaxOutputTotal)
	}
}

// PROTOCOL §2 and §4.3: unsent output of all connections is bounded: past
// -max-output-total the connections holding the most are closed as slow
// consumers, and what they did not write stays queued.
func TestSection2_OutputBudgetSheds(t *testing.T) {
	const budget = 1 << 20
	ts := newTestServer(t, func(c *config) { c.MaxPending = 512 << 10; c.MaxOutputTotal = budget; c.RateLimit = -1 })
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	var readers []*rawConn
	for range 12 {
		rc := ts.rawLogin(tb)
		if tc, ok := rc.nc.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		readers = append(readers, rc) // never read
	}
	// Without the budget the readers could hold 12 × 512 KiB; watch the
	// total while the pushes pile up.
	var peak atomic.Int64
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			for _, s := range ts.servers() { // the budget is each gateway's
				if n := s.engine.Stats().Unsent; n > peak.Load() {
					peak.Store(n)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	var once sync.Once
	stopWatch := func() { once.Do(func() { close(stop); <-watched }) }
	defer stopWatch() // before the server stops, also on a failure
	// Enough for the kernels' buffers and then some, on every connection.
	ids := sendAll(t, a, "agent_b", 120, 60000, "") // 10001 once all are shed
	stopWatch()
	if p := peak.Load(); p > 2*budget {
		t.Fatalf("unsent output peaked at %d bytes, over twice the %d budget", p, budget)
	}
	waitFor(t, "slow consumers shed", func() bool { return ts.stats().SlowConsumers > 0 })
	waitFor(t, "unsent output back within the budget", func() bool {
		for _, s := range ts.servers() {
			if s.engine.Stats().Unsent > budget {
				return false
			}
		}
		return true
	})
	for _, rc := range readers {
		rc.nc.Close()
	}
	waitFor(t, "the readers to go", func() bool { return ts.stats().Conns == 1 })
	// Each connection wrote a prefix of the messages before it was shed
	// (its kernel took them); a message leaves the queue once any
	// connection wrote it. So the queue holds exactly the messages after
	// the longest prefix written: the end of what was sent, in order.
	b := ts.login(tb)
	got := pullAll(t, b, "visitor_a", 0)
	if len(got) == 0 || fmt.Sprint(got) != fmt.Sprint(ids[len(ids)-len(got):]) {
		t.Fatalf("queue after the shed holds %d messages, not the last %d sent", len(got), len(got))
	}
}

// PROTOCOL §4.4 and §4.3: SIGTERM while a pull's reply waits for a client
// that does not read removes nothing it did not write.
func TestProcess_SigtermKeepsUnwrittenPulls(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "-rate-limit", "-1", "-max-pending", "33554432")
	ts := p.testServer()
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	sent := sendAll(t, a, "agent_b", 300, 60000, "10001")
	rc := ts.rawLogin(tb)
	if tc, ok := rc.nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	rc.write(text(`{"cmd":19,"type":0,"fromUserId":"visitor_a"}`))
	if op, _ := rc.readFrameHead(); op != 1 {
		t.Fatalf("reply op %d", op)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b := startProc(t, dir).testServer().login(tb)
	if got := pullAll(t, b, "visitor_a", 0); fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("after SIGTERM: %d of %d messages left", len(got), len(sent))
	}
}

// PROTOCOL §4.4: the pull of every queue (type 0 without ids) pages within
// the output cap too, across private and group queues, and removes only
// what each reply carried.
func TestSection4_4_PullOfAllQueuesFitsTheOutputCap(t *testing.T) {
	ts := newTestServer(t)
	ta, tb, tc := ts.register("visitor_a", 0), ts.register("agent_b", 1), ts.register("visitor_c", 0)
	b := ts.login(tb)
	b.send(`{"cmd":7,"groupId":"g1"}`)
	_ = b.read()
	b.c.Close()
	// The gateway learns of the closed socket when it reads its end: the
	// messages below must find agent_b offline (10001, queued).
	waitFor(t, "agent_b offline", func() bool { return !ts.online(uidOf(t, ts, "agent_b")) })
	a, c := ts.login(ta), ts.login(tc)
	a.send(`{"cmd":7,"groupId":"g1"}`)
	_ = a.read()
	want := map[string]bool{}
	for _, id := range sendAll(t, a, "agent_b", 40, 60000, "10001") {
		want[id] = true
	}
	for _, id := range sendAll(t, c, "agent_b", 40, 60000, "10001") {
		want[id] = true
	}
	pad := strings.Repeat("g", 60000)
	for i := range 10 {
		a.send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":"g1","content":"%d %s"}`, i, pad))
	}
	for i := 0; i < 10; {
		s := a.read()
		if m := ackRE.FindStringSubmatch(s); m != nil {
			want[m[3]] = true
			i++
		} // the group's pushes to the sender itself go by
	}
	b = ts.login(tb)
	got := map[string]int{}
	for round := 0; ; round++ {
		b.send(`{"cmd":19,"type":0}`)
		raw := b.read()
		if len(raw) > 4<<20 {
			t.Fatalf("reply of %d bytes over the cap", len(raw))
		}
		p := decodePull(t, raw)
		n := 0
		for _, page := range p.Data.Friends {
			for _, m := range page {
				got[m.ID]++
				n++
			}
		}
		for _, page := range p.Data.Groups {
			for _, m := range page {
				got[m.ID]++
				n++
			}
		}
		if n == 0 {
			break
		}
		if round == 0 && !p.Data.More {
			t.Fatal(`a first page of ~5 MB does not say "more"`)
		}
		if round > 100 {
			t.Fatal("the queues never empty")
		}
	}
	for id := range want {
		if got[id] != 1 {
			t.Fatalf("message %s pulled %d times, want once", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("pulled %d messages, %d were sent", len(got), len(want))
	}
}

// PROTOCOL §4.6: the chat list fits the connection's output cap: a
// conversation's newest messages are cut to what fits, and a list that
// would not fit stops early with "more":true; offset pages on.
func TestSection4_6_ChatListFitsTheOutputCap(t *testing.T) {
	const limit = 256 << 10
	ts := newTestServer(t, func(c *config) { c.MaxPending, c.RateLimit = limit, -1 })
	tb := ts.register("agent_b", 1)
	ta := ts.register("visitor_a", 0)
	sendAll(t, ts.login(ta), "agent_b", 10, 60000, "10001")
	b := ts.login(tb)
	b.send(`{"cmd":17,"type":2,"extras":{"pullType":1}}`)
	raw := b.read()
	var l struct {
		Data struct {
			More    bool
			Friends []struct {
				UserID         string `json:"userId"`
				HistoryMessage []struct{ Content string }
			}
		}
	}
	if err := json.Unmarshal([]byte(raw), &l); err != nil {
		t.Fatal(err)
	}
	if len(raw) > limit || len(l.Data.Friends) != 1 {
		t.Fatalf("list of %d bytes with %d friends", len(raw), len(l.Data.Friends))
	}
	if h := l.Data.Friends[0].HistoryMessage; len(h) == 0 || len(h) >= 10 || !strings.HasPrefix(h[len(h)-1].Content, "9 ") {
		t.Fatalf("history of %d messages; want the newest that fit, newest last", len(h))
	}
	// Many conversations: the list stops early and pages on by offset.
	for i := range 30 {
		tok := ts.register(fmt.Sprintf("visitor_%d", i), 0)
		sendAll(t, ts.login(tok), "agent_b", 3, 20000, "10000")
	}
	seen, pages := map[string]bool{}, 0
	for offset := 0; ; pages++ {
		b.send(fmt.Sprintf(`{"cmd":17,"type":2,"extras":{"pullType":1,"offset":%d}}`, offset))
		var raw string
		for raw = b.read(); strings.HasPrefix(raw, `{"command":11,`); raw = b.read() {
		} // pushes of the new conversations
		if len(raw) > limit {
			t.Fatalf("list page of %d bytes", len(raw))
		}
		l.Data.More, l.Data.Friends = false, nil
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatal(err)
		}
		for _, f := range l.Data.Friends {
			seen[f.UserID] = true
		}
		offset += len(l.Data.Friends)
		if !l.Data.More {
			break
		}
		if len(l.Data.Friends) == 0 {
			t.Fatal(`an empty page says "more"`)
		}
	}
	if len(seen) != 31 || pages < 2 {
		t.Fatalf("paged through %d conversations in %d pages, want 31 in several", len(seen), pages+1)
	}
	b.send(`{"cmd":13}`)
	b.expect(heartbeatReply(ts))
}

// PROTOCOL §4.3 and §5: no receiver waits on another's slow connection. A
// receiver whose connection dropped its pushes finds them in its offline
// queue while another receiver of the same batch (private) or of the same
// group message holds its own pushes unsent.
func TestSection4_3_NoReceiverWaitsOnAnother(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxPending, c.RateLimit = 64<<20, -1 })
	ts0, tx, ty := ts.register("sender", 1), ts.register("visitor_x", 0), ts.register("visitor_y", 0)
	s := ts.login(ts0)
	for _, tok := range []string{tx, ty} {
		c := ts.login(tok)
		c.send(`{"cmd":7,"groupId":"g1"}`)
		if f := c.read(); !strings.Contains(f, `"code":10011`) {
			t.Fatalf("join: %s", f)
		}
		c.c.Close()
	}
	s.send(`{"cmd":7,"groupId":"g1"}`)
	_ = s.read()
	waitFor(t, "the joiners to go", func() bool { return ts.stats().Conns == 1 })
	x, err := dialReceiver(ts.ws, tx, 4096)
	if err != nil {
		t.Fatal(err)
	}
	y, err := dialReceiver(ts.ws, ty, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer y.nc.Close()
	pad := strings.Repeat("p", 60000)
	toX := map[string]bool{}
	// 80 private and 80 group messages, at most 16 (~1 MB) unacknowledged:
	// more could meet the connection's request queue cap (10028).
	sent := 0
	send := func() {
		i := sent / 2
		if sent%2 == 0 {
			to := "visitor_x"
			if i%2 == 1 {
				to = "visitor_y"
			}
			s.send(fmt.Sprintf(`{"cmd":11,"to":%q,"chatType":2,"content":"%d %s"}`, to, i, pad))
		} else {
			s.send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":"g1","content":"%d %s"}`, i, pad))
		}
		sent++
	}
	for n := 0; n < 160; {
		for sent < 160 && sent-n < 16 {
			send()
		}
		f := s.read()
		m := ackRE.FindStringSubmatch(f)
		if m == nil {
			if !strings.HasPrefix(f, `{"command":11,`) {
				t.Fatalf("the sender got %.200s", f)
			}
			continue // the group's pushes to the sender
		}
		if m[1] != "10000" {
			t.Fatalf("ack %s with both receivers online", m[1])
		}
		if n%2 == 0 && n/2%2 == 0 {
			toX[m[3]] = true // a private message to x
		} else if n%2 == 1 {
			toX[m[3]] = true // a group message
		}
		n++
	}
	// x's connection goes, having read nothing; y's stays, unread.
	x.nc.Close()
	xc := ts.login(tx)
	got := map[string]bool{}
	for _, m := range pullOffline(t, xc, "") {
		got[m.ID] = true
	}
	for id := range toX {
		if !got[id] {
			t.Fatalf("message %s to x is not in x's offline queue while y's connection holds its own pushes (%d of %d there)", id, len(got), len(toX))
		}
	}
}

// PROTOCOL §4.3: a push counts as written once the client's TCP has
// acknowledged it, not once this side's kernel took it: killed while a
// client's requests sit unread in its socket (its kernel then resets the
// connection and drops what it still had to send), the gateway leaves no
// acked message neither read nor queued.
func TestSection4_3_KillWithUnreadInputLosesNothing(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "-rate-limit", "-1")
	ts := p.testServer()
	tokS, tokR := ts.register("sender", 1), ts.register("reader", 0)
	s := ts.login(tokS)
	r, err := dialReceiver(p.ws, tokR, 4096)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	pad := strings.Repeat("k", 2000)
	for i := range 40 {
		s.send(fmt.Sprintf(`{"cmd":11,"to":"reader","chatType":2,"content":"%d %s"}`, i, pad))
		m := ackRE.FindStringSubmatch(s.read())
		if m == nil || m[1] != "10000" {
			t.Fatalf("ack %d: %v", i, m)
		}
		ids = append(ids, m[3])
	}
	// Stop the gateway, let the reader's requests reach its socket
	// unread, and kill it: its kernel answers with a reset.
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := r.nc.Write(bytes.Repeat(text(`{"cmd":13}`), 50)); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()
	got := map[string]bool{}
	for {
		op, payload, err := r.next(time.Now().Add(waitBound()))
		if err != nil {
			break // the reset, or EOF
		}
		if m, ok, _ := parsePush(payload); op == 1 && ok {
			got[m.ID] = true
		}
	}
	read := len(got)
	rc := startProc(t, dir, "-rate-limit", "-1").testServer().login(tokR)
	for _, m := range pullOffline(t, rc, `"fromUserId":"sender"`) {
		got[m.ID] = true
	}
	for i, id := range ids {
		if !got[id] {
			t.Fatalf("message #%d %s acked 10000 is neither read (%d were) nor queued", i, id, read)
		}
	}
}

// PROTOCOL §2 and §4.4: a pull reply sized to the connection's room is
// never what closes a connection that reads, though pushes keep coming
// meanwhile.
func TestSection4_4_PullsAmidPushesKeepTheConnection(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxPending, c.RateLimit = 256<<10, -1 })
	ta, tb, tr := ts.register("visitor_a", 0), ts.register("visitor_b", 0), ts.register("agent_r", 1)
	sendAll(t, ts.login(ta), "agent_r", 1500, 1000, "10001")
	r := ts.login(tr)
	b := ts.login(tb)
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		pad := strings.Repeat("f", 600)
		tick := time.NewTicker(5 * time.Millisecond) // ~400 pushes/s: r keeps up, even under -race
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for range 2 {
				if b.c.WriteMessage(1, []byte(`{"cmd":11,"to":"agent_r","chatType":2,"content":"`+pad+`"}`)) != nil {
					return
				}
			}
		}
	}()
	go func() {
		for {
			if _, _, err := b.c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-flooded }()
	pulled := 0
	for round := 0; ; round++ {
		r.send(`{"cmd":19,"type":0,"fromUserId":"visitor_a"}`)
		var raw string
		for raw = r.read(); strings.HasPrefix(raw, `{"command":11,`); raw = r.read() {
		}
		p := decodePull(t, raw)
		n := len(p.Data.Friends["visitor_a"])
		pulled += n
		if n == 0 {
			break
		}
		if round > 2000 {
			t.Fatal("the queue never empties")
		}
	}
	if pulled != 1500 {
		t.Fatalf("pulled %d of 1500", pulled)
	}
	if n := ts.stats().SlowConsumers; n != 0 {
		t.Fatalf("%d connections closed as slow consumers", n)
	}
}

// PROTOCOL §2: with an output cap as small as the largest message, a
// message of that size still reaches its receiver (pull or push).
func TestSection2_LargestMessageWithTheSmallestCap(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxMessageSize, c.MaxPending = 65536, 65536 })
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	big := strings.Repeat("z", 65300)
	ids := sendAll(t, a, "agent_b", 1, 65300-3, "10001")
	b := ts.login(tb)
	if got := pullAll(t, b, "visitor_a", 0); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("pulled %v, want %v", got, ids)
	}
	a.send(`{"cmd":11,"to":"agent_b","chatType":2,"content":"` + big + `"}`)
	_ = a.read()
	if f := b.read(); !strings.Contains(f, big) {
		t.Fatalf("push of %d bytes", len(f))
	}
}

// PROTOCOL §4.2: pushes from several senders pile up on a receiver that
// does not read (gnet's EAGAIN, partial-write and buffered paths), while
// acks and pushes are encoded in reused buffers and connections copy
// them; every push arrives intact and in each sender's order.
func TestSection4_2_SlowReaderPushesIntact(t *testing.T) {
	ts := newTestServer(t, func(c *config) {
		c.MaxPending = 64 << 20
		c.RateLimit = -1
	})
	bTok := ts.register("rvb", 0)
	const senders, per, size = 4, 40, 30000
	toks := make([]string, senders)
	for i := range toks {
		toks[i] = ts.register(fmt.Sprintf("rva%d", i), 0)
	}
	rb := ts.rawLogin(bTok)
	_ = rb.nc.(*net.TCPConn).SetReadBuffer(64 << 10)
	content := func(s, i int) string {
		return fmt.Sprintf("rva%d-%04d-", s, i) + strings.Repeat(string(rune('a'+(s*per+i)%26)), size)
	}
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		c := ts.login(toks[s])
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				c.send(fmt.Sprintf(`{"cmd":11,"to":"rvb","chatType":2,"content":%q}`, content(s, i)))
			}
			var last float64
			for i := 0; i < per; i++ {
				var ack struct {
					Code    int
					Command int
					Data    struct{ Seq float64 }
				}
				if err := json.Unmarshal([]byte(c.read()), &ack); err != nil || ack.Command != 12 || ack.Data.Seq <= last {
					t.Errorf("sender %d ack %d: %+v %v", s, i, ack, err)
					return
				}
				last = ack.Data.Seq
			}
		}(s)
	}
	wg.Wait() // every push was queued with its ack
	t.Logf("unsent while the receiver does not read: %d", ts.stats().Unsent)
	next := make([]int, senders)
	for n := 0; n < senders*per; n++ {
		op, p := rb.readFrame()
		if op != 1 {
			t.Fatalf("frame %d: op %d", n, op)
		}
		var env struct {
			Command int
			Data    struct {
				From    string
				Content string
			}
		}
		err := json.Unmarshal(p, &env)
		push := env.Data
		if err != nil || env.Command != 11 {
			t.Fatalf("push %d: %v %.200s", n, err, p)
		}
		var s int
		fmt.Sscanf(push.From, "rva%d", &s)
		if want := content(s, next[s]); push.Content != want {
			t.Fatalf("push %d from %s: content %.40q…, want %.40q…", n, push.From, push.Content, want)
		}
		next[s]++
	}
}
