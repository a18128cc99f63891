package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

var epochOfRE = regexp.MustCompile(`"epoch":"([0-9a-f]{32})"`)

// epochOf logs in with token and returns the login data's epoch.
func (ts *testServer) epochOf(token string) string {
	ts.t.Helper()
	c := ts.dial(token)
	got := c.read()
	m := epochOfRE.FindStringSubmatch(got)
	if m == nil {
		ts.t.Fatalf("login reply without an epoch: %s", got)
	}
	c.c.Close()
	return m[1]
}

// PROTOCOL §7.7: the epoch is fixed when the store is created: the same
// after a restart, and another store has another.
func TestSection7_7_Epoch(t *testing.T) {
	ts := newTestServer(t)
	tok := ts.register("u1", 0)
	first := ts.epochOf(tok)
	ts.restart()
	if again := ts.epochOf(tok); again != first {
		t.Fatalf("epoch %s after a restart, was %s", again, first)
	}
	other := newTestServer(t)
	if e := other.epochOf(other.register("u1", 0)); e == first {
		t.Fatalf("two stores share the epoch %s", e)
	}
	// cmd 5 carries it too.
	c := ts.login(tok)
	c.send(`{"cmd":5,"token":"` + tok + `"}`)
	if m := epochOfRE.FindStringSubmatch(c.read()); m == nil || m[1] != first {
		t.Fatalf("cmd 5 reply epoch %v, want %s", m, first)
	}
}

// PROTOCOL §7.6: typing goes to every live connection of the peer, not
// stored; a change of state always, a repeat at most once a second per
// (caller, peer); no reply; an unknown peer answers 10029 with command 34.
func TestSection7_6_Typing(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("a", 0))
	tb := ts.register("b", 1)
	b1, b2 := ts.login(tb), ts.login(tb)
	event := func(state int) string {
		return fmt.Sprintf(`{"command":34,"data":{"from":"a","state":%d,"time":%d}}`, state, ts.clock.Now().UnixMilli())
	}
	a.send(`{"cmd":33,"to":"b","state":1}`)
	want := event(1)
	b1.expect(want)
	b2.expect(want)
	a.send(`{"cmd":33,"to":"b","state":1}`) // a repeat within the second: dropped
	a.send(`{"cmd":33,"to":"b","state":0}`) // a change: forwarded at once
	want = event(0)
	b1.expect(want)
	b2.expect(want)
	ts.clock.Advance(time.Second)
	a.send(`{"cmd":"33","to":"b","state":"0"}`) // a repeat a second later
	b1.expect(event(0))
	a.send(`{"cmd":33,"to":"nobody","state":1}`)
	a.expect(`{"code":10029,"command":34,"msg":"bad request 请求参数错误"}`)
	a.send(`{"cmd":33,"to":"b","state":7}`)
	a.expect(`{"code":10029,"command":34,"msg":"bad request 请求参数错误"}`)
	// Nothing else reached a: its next frame answers its next request.
	a.send(`{"cmd":13}`)
	if got := a.read(); !strings.HasPrefix(got, `{"command":13,`) {
		t.Fatalf("a got %s, want the heartbeat", got)
	}
}

// rawAckLogin logs in over a raw connection with ack=1 (PROTOCOL §7.2)
// and checks the login data says so.
func (ts *testServer) rawAckLogin(token string) *rawConn {
	ts.t.Helper()
	rc := ts.rawDial()
	rc.write([]byte(fmt.Sprintf(upgradeRequest, token+"&ack=1", ts.ws)))
	if status := rc.readResponse(); !strings.HasPrefix(status, "HTTP/1.1 101") {
		ts.t.Fatalf("upgrade: %s", status)
	}
	if op, p := rc.readFrame(); op != 1 || !strings.HasPrefix(string(p), `{"code":10007,"command":6,"data":{"ack":1,`) {
		ts.t.Fatalf("login frame: op %d %s", op, p)
	}
	return rc
}

// readPushes reads n frames from rc that must all be pushes, and returns
// their seqs.
func (rc *rawConn) readPushes(n int) []uint64 {
	rc.t.Helper()
	seqs := make([]uint64, 0, n)
	for len(seqs) < n {
		_, p := rc.readFrame()
		m, ok, err := parsePush(p)
		if err != nil || !ok {
			rc.t.Fatalf("want a push, got %.200s (%v)", p, err)
		}
		seqs = append(seqs, m.Seq)
	}
	return seqs
}

// seqsOf returns the seqs of msgs, checking none repeats.
func seqsOf(t testing.TB, msgs []pushMsg) []uint64 {
	t.Helper()
	seen := map[string]bool{}
	var seqs []uint64
	for _, m := range msgs {
		if seen[m.ID] {
			t.Fatalf("message %s (seq %d) queued twice", m.ID, m.Seq)
		}
		seen[m.ID] = true
		seqs = append(seqs, m.Seq)
	}
	slices.Sort(seqs)
	return seqs
}

func seqRange(lo, hi uint64) []uint64 {
	var s []uint64
	for q := lo; q <= hi; q++ {
		s = append(s, q)
	}
	return s
}

// PROTOCOL §7.2: an acknowledging receiver whose TCP connection is cut
// after the server wrote 50 pushes finds in its offline queue exactly the
// ones it did not acknowledge, once each: cut after reading and
// acknowledging 10, and cut without reading anything (a client killed
// with the pushes in its socket), for a private and a group conversation.
func TestSection7_2_CutConnectionQueuesTheUnacknowledged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group bool
		read  int // pushes read and acknowledged before the cut
	}{
		{"private, 10 acknowledged", false, 10},
		{"private, none read", false, 0},
		{"group, 10 acknowledged", true, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t)
			a := ts.login(ts.register("a", 0))
			tokB := ts.register("b", 1)
			conv, pullArg := `"peer":"a"`, `"fromUserId":"a"`
			if tc.group {
				b := ts.login(tokB)
				for _, c := range []*wsClient{a, b} {
					c.send(`{"cmd":7,"groupId":"g"}`)
					c.readUntil(`"command":8`)
				}
				b.c.Close()
				waitFor(t, "b offline", func() bool { return !ts.online(uidOf(t, ts, "b")) })
				conv, pullArg = `"groupId":"g"`, `"groupId":"g"`
			}
			rc := ts.rawAckLogin(tokB)
			lost := ts.undelivered()
			for i := 0; i < 50; i++ {
				if tc.group {
					a.send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":"g","content":"m%d"}`, i))
				} else {
					a.send(fmt.Sprintf(`{"cmd":11,"chatType":2,"to":"b","content":"m%d"}`, i))
				}
				if ack := a.readUntil(`"command":12`); !strings.Contains(ack, `"code":10000`) {
					t.Fatalf("ack %d: %s", i, ack)
				}
			}
			if tc.read > 0 {
				if got := rc.readPushes(tc.read); !slices.Equal(got, seqRange(1, uint64(tc.read))) {
					t.Fatalf("pushes read %v", got)
				}
				rc.write(text(fmt.Sprintf(`{"cmd":21,%s,"seq":%d}`, conv, tc.read)))
				// The ack must arrive before the cut: a heartbeat's answer
				// comes after it, behind the 40 other pushes, which the
				// client then holds in its buffer but never acknowledges.
				rc.write(text(`{"cmd":13}`))
				for {
					if _, p := rc.readFrame(); strings.HasPrefix(string(p), `{"command":13,`) {
						break
					}
				}
			}
			rc.nc.Close() // what it holds unacknowledged is lost with it
			want := 50 - tc.read
			waitFor(t, "the unacknowledged pushes settled", func() bool { return ts.undelivered()-lost >= uint64(want) })
			if n := ts.undelivered() - lost; n != uint64(want) {
				t.Fatalf("%d pushes undelivered, want %d", n, want)
			}
			b := ts.login(tokB)
			got := seqsOf(t, pullOffline(t, b, pullArg))
			if !slices.Equal(got, seqRange(uint64(tc.read)+1, 50)) {
				t.Fatalf("queued after the cut: %v, want %d..50", got, tc.read+1)
			}
		})
	}
}

// PROTOCOL §7.2: of two terminals, one acknowledges and the other drops:
// the user has the messages, nothing is queued. A legacy terminal that
// wrote them counts the same.
func TestSection7_2_OtherTerminalAcknowledged(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			ts := newTestServer(t)
			a := ts.login(ts.register("a", 0))
			tokB := ts.register("b", 1)
			var b1 *wsClient
			if legacy {
				b1 = ts.login(tokB)
			} else {
				b1 = ts.dialAck(tokB)
			}
			b2 := ts.rawAckLogin(tokB)
			lost := ts.undelivered()
			for i := 0; i < 20; i++ {
				a.send(fmt.Sprintf(`{"cmd":11,"chatType":2,"to":"b","content":"m%d"}`, i))
				a.readUntil(`"command":12`)
			}
			for i := 0; i < 20; i++ {
				b1.readUntil(`"command":11`)
			}
			if !legacy {
				b1.send(`{"cmd":21,"peer":"a","seq":20}`)
			}
			b1.send(`{"cmd":13}`) // the ack took effect before this is answered
			b1.readUntil(`"command":13`)
			b2.nc.Close()
			waitFor(t, "b2 gone", func() bool { return ts.stats().Conns == 2 })
			waitFor(t, "pushes settled", ts.settled) // across nodes, in a cluster
			b1.send(`{"cmd":19,"type":0,"fromUserId":"a"}`)
			if p := decodePull(t, b1.readUntil(`"command":20`)); len(p.Data.Friends["a"]) != 0 {
				t.Fatalf("queued though a terminal had them: %d", len(p.Data.Friends["a"]))
			}
			if n := ts.undelivered() - lost; n != 0 {
				t.Fatalf("%d pushes counted undelivered", n)
			}
		})
	}
}

// PROTOCOL §7.2: malformed acks answer 10029 with command 22; a good one
// has no reply; acks are not rate-limited.
func TestSection7_2_AckAnswers(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.RateLimit, c.RateBurst = 5, 5 })
	a := ts.login(ts.register("a", 0))
	b := ts.login(ts.register("b", 0))
	a.send(`{"cmd":11,"chatType":2,"to":"b","content":"hi"}`)
	a.readUntil(`"command":12`)
	b.readUntil(`"command":11`)
	bad := `{"code":10029,"command":22,"msg":"bad request 请求参数错误"}`
	for _, req := range []string{
		`{"cmd":21,"peer":"a","seq":0}`,
		`{"cmd":21,"peer":"a","seq":2}`, // past the conversation's end
		`{"cmd":21,"peer":"nobody","seq":1}`,
		`{"cmd":21,"groupId":"g","seq":1}`,
		`{"cmd":21,"seq":1}`,
		`{"cmd":21,"peer":"a","groupId":"g","seq":1}`,
	} {
		b.send(req)
		b.expect(bad)
	}
	// 50 good acks at once: none refused, none answered.
	for i := 0; i < 50; i++ {
		b.send(`{"cmd":21,"peer":"a","seq":1}`)
	}
	b.send(`{"cmd":13}`)
	if got := b.read(); !strings.HasPrefix(got, `{"command":13,`) {
		t.Fatalf("after 50 acks: %s", got)
	}
}

// PROTOCOL §7.2: past -max-inflight unacknowledged pushes the connection
// is closed as a slow consumer and every one of them is queued.
func TestSection7_2_MaxInflight(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxInflight = 5 })
	a := ts.login(ts.register("a", 0))
	tokB := ts.register("b", 1)
	rc := ts.rawAckLogin(tokB)
	for i := 0; i < 10; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"chatType":2,"to":"b","content":"m%d"}`, i))
		a.readUntil(`"command":12`)
	}
	rc.expectClose(1008)
	waitFor(t, "b offline", func() bool { return !ts.online(uidOf(t, ts, "b")) })
	b := ts.login(tokB)
	if got := seqsOf(t, pullOffline(t, b, `"fromUserId":"a"`)); !slices.Equal(got, seqRange(1, 10)) {
		t.Fatalf("queued %v, want 1..10", got)
	}
}

// syncReply is a decoded cmd 24 reply.
type syncReply struct {
	Code int
	Data struct {
		Friends map[string][]pushMsg
		Groups  map[string][]pushMsg
		More    []string
		Userid  string
	}
}

func (c *wsClient) sync(req string) syncReply {
	c.t.Helper()
	c.send(req)
	raw := c.readUntil(`"command":24`)
	var r syncReply
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		c.t.Fatalf("sync reply %.300s: %v", raw, err)
	}
	return r
}

// PROTOCOL §7.3: sync returns what follows a cursor, in seq order, at
// most count per conversation, names what holds more, shows recalls as
// markers, removes nothing; bad requests answer 10029 with command 24.
func TestSection7_3_Sync(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("a", 0))
	b := ts.login(ts.register("b", 0))
	tokS := ts.register("stranger", 0)
	for _, c := range []*wsClient{a, b} {
		c.send(`{"cmd":7,"groupId":"g"}`)
		c.readUntil(`"command":8`)
	}
	var recallID string
	for i := 1; i <= 5; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"chatType":2,"to":"b","content":"p%d"}`, i))
		if m := ackRE.FindStringSubmatch(a.readUntil(`"command":12`)); i == 4 {
			recallID = m[3]
		}
		a.send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":"g","content":"g%d"}`, i))
		a.readUntil(`"command":12`)
	}
	a.send(`{"cmd":15,"id":"` + recallID + `"}`)
	a.readUntil(`"command":16`)

	r := b.sync(`{"cmd":23,"convs":[{"peer":"a","afterSeq":2},{"groupId":"g","afterSeq":0}],"count":3}`)
	if r.Code != 10032 || r.Data.Userid != "b" {
		t.Fatalf("sync %+v", r)
	}
	var ps, gs []uint64
	for _, m := range r.Data.Friends["a"] {
		ps = append(ps, m.Seq)
	}
	for _, m := range r.Data.Groups["g"] {
		gs = append(gs, m.Seq)
	}
	if !slices.Equal(ps, []uint64{3, 4, 5}) || !slices.Equal(gs, []uint64{1, 2, 3}) {
		t.Fatalf("private %v, group %v", ps, gs)
	}
	if !slices.Equal(r.Data.More, []string{"g"}) {
		t.Fatalf("more %v, want [g]", r.Data.More)
	}
	// A recalled message comes as its marker.
	b.send(`{"cmd":23,"convs":[{"peer":"a","afterSeq":3}],"count":1}`)
	if raw := b.readUntil(`"command":24`); !strings.Contains(raw, `"recalled":true`) || !strings.Contains(raw, `"more":["a"]`) {
		t.Fatalf("sync of the recalled message: %s", raw)
	}
	// Nothing was removed: the offline queue is intact for a pull, and
	// sync again gives the same.
	if again := b.sync(`{"cmd":23,"convs":[{"peer":"a","afterSeq":2},{"groupId":"g","afterSeq":0}],"count":3}`); len(again.Data.Friends["a"]) != 3 {
		t.Fatalf("second sync %+v", again)
	}
	bad := `{"code":10029,"command":24,"msg":"bad request 请求参数错误"}`
	many := make([]string, 101)
	for i := range many {
		many[i] = `{"peer":"a","afterSeq":0}`
	}
	for _, req := range []string{
		`{"cmd":23}`,
		`{"cmd":23,"convs":[]}`,
		`{"cmd":23,"convs":[{"peer":"nobody","afterSeq":0}]}`,
		`{"cmd":23,"convs":[{"groupId":"other","afterSeq":0}]}`,
		`{"cmd":23,"convs":[{"peer":"a","afterSeq":-1}]}`,
		`{"cmd":23,"convs":[{"afterSeq":1}]}`,
		`{"cmd":23,"convs":"a"}`,
		`{"cmd":23,"convs":[{"peer":"a","afterSeq":0},{"peer":"a","afterSeq":2}]}`, // named twice
		`{"cmd":23,"convs":[` + strings.Join(many, ",") + `]}`,
	} {
		b.send(req)
		b.expect(bad)
	}
	// A non-member cannot read the group.
	s := ts.login(tokS)
	s.send(`{"cmd":23,"convs":[{"groupId":"g","afterSeq":0}]}`)
	s.expect(bad)
}

// PROTOCOL §7.3: a sync reply stops within the output cap and names the
// rest in "more"; following the cursor gets everything.
func TestSection7_3_SyncFitsTheOutputCap(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxPending = 64 << 10 })
	a := ts.login(ts.register("a", 0))
	b := ts.login(ts.register("b", 0))
	// One at a time, b reading each: 10 pushes of 20 KB at once would
	// pass b's 64 KiB cap.
	for i := 0; i < 10; i++ {
		sendAll(t, a, "b", 1, 20000, "10000")
		b.readUntil(`"command":11`)
	}
	var after uint64
	var got []uint64
	for round := 0; round < 20; round++ {
		b.send(fmt.Sprintf(`{"cmd":23,"convs":[{"peer":"a","afterSeq":%d}]}`, after))
		raw := b.readUntil(`"command":24`)
		if len(raw) > 64<<10 {
			t.Fatalf("sync reply of %d bytes over the 64 KiB cap", len(raw))
		}
		var r syncReply
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatal(err)
		}
		for _, m := range r.Data.Friends["a"] {
			got = append(got, m.Seq)
			after = m.Seq
		}
		if len(r.Data.More) == 0 {
			break
		}
	}
	if !slices.Equal(got, seqRange(1, 10)) {
		t.Fatalf("synced %v", got)
	}
}

// readReceiptRE matches a private read receipt (PROTOCOL §7.5).
var readReceiptRE = regexp.MustCompile(`^\{"command":28,"data":\{"from":"(\w+)","(peer|groupId)":"(\w+)","readTime":\d+,"seq":(\d+)\}\}$`)

// PROTOCOL §7.5: a read moves the cursor on every terminal, never back;
// unread follows it (recalls never count); receipts reach the peer's
// connections and the caller's others once per advance; the offline
// entries it covers go; bad reads answer 10029 with command 28.
func TestSection7_5_Read(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("a", 0))
	tokB := ts.register("b", 1)
	b1, b2 := ts.login(tokB), ts.login(tokB)
	unread := func() int {
		t.Helper()
		var r struct{ Data struct{ UnReadNum int } }
		if err := json.Unmarshal([]byte(ts.chatInfo(`{"from":"b","to":"a"}`)), &r); err != nil {
			t.Fatal(err)
		}
		return r.Data.UnReadNum
	}
	var ids []string
	for i := 1; i <= 5; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"chatType":2,"to":"b","content":"m%d"}`, i))
		ids = append(ids, ackRE.FindStringSubmatch(a.readUntil(`"command":12`))[3])
		b1.readUntil(`"command":11`)
		b2.readUntil(`"command":11`)
	}
	if n := unread(); n != 5 {
		t.Fatalf("unread %d before any read", n)
	}
	receipt := func(c *wsClient, from, peer string, seq int) {
		t.Helper()
		m := readReceiptRE.FindStringSubmatch(c.readUntil(`"command":28,"data"`))
		if m == nil || m[1] != from || m[3] != peer || m[4] != fmt.Sprint(seq) {
			t.Fatalf("receipt %v, want from %s peer %s seq %d", m, from, peer, seq)
		}
	}
	b1.send(`{"cmd":27,"peer":"a","seq":3}`)
	b1.expect(`{"code":10030,"command":28,"msg":"read ok 已读成功"}`)
	receipt(a, "b", "a", 3)
	receipt(b2, "b", "a", 3)
	if n := unread(); n != 2 {
		t.Fatalf("unread %d after reading 3 of 5", n)
	}
	// Not above the cursor: answered, nothing moves, no receipt.
	b2.send(`{"cmd":27,"peer":"a","seq":2}`)
	b2.expect(`{"code":10030,"command":28,"msg":"read ok 已读成功"}`)
	// A recall of an unread message leaves it uncounted.
	a.send(`{"cmd":15,"id":"` + ids[4] + `"}`)
	a.readUntil(`"command":16,"msg"`)
	if n := unread(); n != 1 {
		t.Fatalf("unread %d after the recall of an unread message", n)
	}
	// The other terminal reads on; the first terminal's receipt is next
	// in a's frames (no receipt for the read that did not move).
	b2.send(`{"cmd":27,"peer":"a","seq":4}`)
	b2.readUntil(`{"code":10030,"command":28,"msg":"read ok 已读成功"}`)
	receipt(a, "b", "a", 4)
	receipt(b1, "b", "a", 4)
	if n := unread(); n != 0 {
		t.Fatalf("unread %d after reading 4, 5 recalled", n)
	}
	bad := `{"code":10029,"command":28,"msg":"bad request 请求参数错误"}`
	for _, req := range []string{`{"cmd":27,"peer":"a","seq":0}`, `{"cmd":27,"peer":"a","seq":6}`, `{"cmd":27,"peer":"nobody","seq":1}`, `{"cmd":27,"seq":1}`} {
		b1.send(req)
		b1.readUntil(bad)
	}

	// Offline entries up to the read go; the rest stay.
	b1.c.Close()
	b2.c.Close()
	waitFor(t, "b offline", func() bool { return !ts.online(uidOf(t, ts, "b")) })
	for i := 6; i <= 8; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"chatType":2,"to":"b","content":"m%d"}`, i))
		if ack := a.readUntil(`"command":12`); !strings.Contains(ack, `"code":10001`) {
			t.Fatalf("ack %s", ack)
		}
	}
	b := ts.login(tokB)
	b.send(`{"cmd":27,"peer":"a","seq":7}`)
	b.expect(`{"code":10030,"command":28,"msg":"read ok 已读成功"}`)
	if got := seqsOf(t, pullOffline(t, b, `"fromUserId":"a"`)); !slices.Equal(got, []uint64{8}) {
		t.Fatalf("queued after reading to 7: %v", got)
	}

	// A group read tells only the caller's other terminals.
	for _, c := range []*wsClient{a, b} {
		c.send(`{"cmd":7,"groupId":"g"}`)
		c.readUntil(`"command":8,`)
	}
	b3 := ts.login(tokB)
	a.send(`{"cmd":11,"chatType":1,"groupId":"g","content":"hello all"}`)
	a.readUntil(`"command":12`)
	b.send(`{"cmd":27,"groupId":"g","seq":1}`)
	b.readUntil(`"code":10030`)
	receipt(b3, "b", "g", 1)
	a.send(`{"cmd":13}`)
	for {
		f := a.read()
		if strings.HasPrefix(f, `{"command":13,`) {
			break
		}
		if strings.HasPrefix(f, `{"command":28,`) {
			t.Fatalf("a group member got another's read receipt: %s", f)
		}
	}
}

// recentReply is a decoded cmd 26 reply.
type recentReply struct {
	Code int
	Data struct {
		Convs []struct {
			GroupID         string `json:"groupId"`
			PeerID          string `json:"peer"`
			LastSeq         uint64
			ReadSeq         uint64
			UnReadNum       int
			PendingReply    *bool
			LastMessageTime int64
			LastMessage     pushMsg
		}
		More   bool
		Userid string
	}
}

func (c *wsClient) recent(req string) recentReply {
	c.t.Helper()
	c.send(req)
	raw := c.readUntil(`"command":26`)
	var r recentReply
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.Code != 10033 {
		c.t.Fatalf("recent %.300s: %v", raw, err)
	}
	return r
}

func (r recentReply) names() string {
	var s []string
	for _, cv := range r.Data.Convs {
		s = append(s, cv.PeerID+cv.GroupID)
	}
	return strings.Join(s, ",")
}

// PROTOCOL §7.4: conversations with a message, newest first, with their
// cursors and last message; count and beforeTime page; a page never splits
// a time; a contact without messages is not a conversation.
func TestSection7_4_Recent(t *testing.T) {
	ts := newTestServer(t)
	b := ts.login(ts.register("b", 1))
	a := ts.login(ts.register("a", 0))
	c := ts.login(ts.register("c", 0))
	ts.login(ts.register("d", 0))
	ts.post("/im/vanke/initUser", `{"senderId":"d","type":0,"receiverId":"b","token":"token-of-d-000000000"}`) // a contact, no message
	for _, x := range []*wsClient{a, b} {
		x.send(`{"cmd":7,"groupId":"g"}`)
		x.readUntil(`"command":8,`)
	}
	say := func(from *wsClient, body string) {
		t.Helper()
		ts.clock.Advance(time.Second)
		from.send(body)
		from.readUntil(`"command":12`)
	}
	say(a, `{"cmd":11,"chatType":2,"to":"b","content":"from a"}`)
	say(a, `{"cmd":11,"chatType":2,"to":"b","content":"from a again"}`)
	say(c, `{"cmd":11,"chatType":2,"to":"b","content":"from c"}`)
	say(b, `{"cmd":11,"chatType":2,"to":"c","content":"to c"}`)
	say(a, `{"cmd":11,"chatType":1,"groupId":"g","content":"to the group"}`)
	b.send(`{"cmd":27,"peer":"a","seq":1}`)
	b.readUntil(`"code":10030`)

	r := b.recent(`{"cmd":25}`)
	if got := r.names(); got != "g,c,a" || r.Data.More || r.Data.Userid != "b" {
		t.Fatalf("recent %s more=%v", got, r.Data.More)
	}
	g, cc, aa := r.Data.Convs[0], r.Data.Convs[1], r.Data.Convs[2]
	if g.LastSeq != 1 || g.UnReadNum != 1 || g.PendingReply != nil || g.LastMessage.Content != "to the group" {
		t.Fatalf("group entry %+v", g)
	}
	if cc.LastSeq != 2 || cc.UnReadNum != 1 || cc.PendingReply == nil || *cc.PendingReply || cc.LastMessage.Content != "to c" {
		t.Fatalf("c entry %+v", cc)
	}
	if aa.LastSeq != 2 || aa.ReadSeq != 1 || aa.UnReadNum != 1 || aa.PendingReply == nil || !*aa.PendingReply || aa.LastMessageTime != aa.LastMessage.CreateTime {
		t.Fatalf("a entry %+v", aa)
	}
	// Paging.
	p1 := b.recent(`{"cmd":25,"count":2}`)
	if p1.names() != "g,c" || !p1.Data.More {
		t.Fatalf("first page %s more=%v", p1.names(), p1.Data.More)
	}
	p2 := b.recent(fmt.Sprintf(`{"cmd":25,"count":2,"beforeTime":%d}`, p1.Data.Convs[1].LastMessageTime))
	if p2.names() != "a" || p2.Data.More {
		t.Fatalf("second page %s more=%v", p2.names(), p2.Data.More)
	}
	// Exactly count conversations left: nothing more.
	if p := b.recent(fmt.Sprintf(`{"cmd":25,"count":2,"beforeTime":%d}`, p1.Data.Convs[0].LastMessageTime)); p.names() != "c,a" || p.Data.More {
		t.Fatalf("the last two: %s more=%v", p.names(), p.Data.More)
	}
	// Two conversations at one time are never split by count.
	ts.clock.Advance(time.Second)
	a.send(`{"cmd":11,"chatType":2,"to":"b","content":"same time"}`)
	a.readUntil(`"command":12`)
	c.send(`{"cmd":11,"chatType":2,"to":"b","content":"same time"}`)
	c.readUntil(`"command":12`)
	if got := b.recent(`{"cmd":25,"count":1}`); len(got.Data.Convs) != 2 || got.Data.Convs[0].LastMessageTime != got.Data.Convs[1].LastMessageTime {
		t.Fatalf("a page of 1 at a shared time: %s", got.names())
	}
	b.send(`{"cmd":25,"count":-1}`)
	b.expect(`{"code":10029,"command":26,"msg":"bad request 请求参数错误"}`)
}

// PROTOCOL §7.2-§7.4 across kill -9: 200 pushes in flight to an
// acknowledging client that acknowledged the 20 before them. After the
// restart cmd 25 shows the conversation's lastSeq above the client's ack,
// and cmd 23 from that ack returns every one of the 200. (They are also
// in the offline queue: the journal that recorded them as awaiting their
// push queues them at the next start; storage/pebble/doc.go.)
func TestSection7_2_KillWithPushesInFlight(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "-rate-limit", "-1")
	ts := p.testServer()
	a := ts.login(ts.register("a", 0))
	tokB := ts.register("b", 1)
	b := ts.dialAck(tokB)
	sendAll(t, a, "b", 220, 10, "10000")
	for i := 0; i < 220; i++ {
		b.readUntil(`"command":11`)
	}
	b.send(`{"cmd":21,"peer":"a","seq":20}`)
	b.send(`{"cmd":13}`)
	b.readUntil(`"command":13`)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()

	ts2 := startProc(t, dir).testServer()
	ts2.t = t
	b2 := ts2.login(tokB)
	r := b2.recent(`{"cmd":25}`)
	if len(r.Data.Convs) != 1 || r.Data.Convs[0].PeerID != "a" || r.Data.Convs[0].LastSeq != 220 {
		t.Fatalf("recent after the restart: %+v", r.Data.Convs)
	}
	var got []uint64
	after := uint64(20)
	for round := 0; round < 10; round++ {
		s := b2.sync(fmt.Sprintf(`{"cmd":23,"convs":[{"peer":"a","afterSeq":%d}]}`, after))
		for _, m := range s.Data.Friends["a"] {
			got = append(got, m.Seq)
			after = m.Seq
		}
		if len(s.Data.More) == 0 {
			break
		}
	}
	if !slices.Equal(got, seqRange(21, 220)) {
		t.Fatalf("synced from the ack: %d messages, want 21..220", len(got))
	}
	queued := seqsOf(t, pullOffline(t, b2, `"fromUserId":"a"`))
	for _, q := range seqRange(21, 220) {
		if _, ok := slices.BinarySearch(queued, q); !ok {
			t.Fatalf("seq %d, in flight at the kill, not queued (queued: %d)", q, len(queued))
		}
	}
}

// dialAck opens an acknowledging gorilla connection (ack=1) with token.
func (ts *testServer) dialAck(token string) *wsClient {
	ts.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitBound()}
	c, resp, err := d.Dial("ws://"+ts.ws+"/?ack=1&token="+token, nil)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	ts.t.Cleanup(func() { c.Close() })
	w := &wsClient{t: ts.t, c: c}
	if got := w.read(); !strings.Contains(got, `"ack":1`) {
		ts.t.Fatalf("login %s", got)
	}
	return w
}

// PROTOCOL §7.2, a property: with random sends (private and group),
// random reads, acknowledgements, connection deaths and reconnects (which
// sync from the acknowledged cursors, never from 0) of acknowledging
// receivers, from a fixed seed, every message acked to its sender is, for
// each receiver, among what it read (pushes and syncs) or in its offline
// queue at the end; and a last sync from each acknowledged cursor finds
// nothing else missing.
func TestSection7_2_AtLeastOnceProperty(t *testing.T) {
	const steps = 1000
	rng := rand.New(rand.NewPCG(712, 2026))
	ts := newTestServer(t, func(c *config) { c.RateLimit = -1 })
	senders := []*wsClient{ts.login(ts.register("s0", 0)), ts.login(ts.register("s1", 0))}
	type receiver struct {
		id, token string
		conn      *wsClient
		held      map[string]map[uint64]string // conversation → seq → id
		acked     map[string]uint64            // conversation → acknowledged seq
		want      map[string]bool              // ids acked to their senders
	}
	rcvs := make([]*receiver, 2)
	for i := range rcvs {
		id := fmt.Sprintf("r%d", i)
		rcvs[i] = &receiver{id: id, token: ts.register(id, 1), held: map[string]map[uint64]string{}, acked: map[string]uint64{}, want: map[string]bool{}}
		rcvs[i].conn = ts.dialAck(rcvs[i].token)
	}
	for _, c := range []*wsClient{senders[0], rcvs[0].conn, rcvs[1].conn} {
		c.send(`{"cmd":7,"groupId":"g"}`)
		c.readUntil(`"command":8,`)
	}
	var keep func(r *receiver, conv string, m pushMsg)
	// drain reads r's connection up to a heartbeat's answer, keeping the
	// pushes.
	drain := func(r *receiver) {
		r.conn.send(`{"cmd":13}`)
		for {
			f := r.conn.read()
			if strings.HasPrefix(f, `{"command":13,`) {
				return
			}
			m, ok, err := parsePush([]byte(f))
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			conv := "p:" + m.From
			if m.GroupID != "" {
				conv = "g:" + m.GroupID
			}
			keep(r, conv, m)
		}
	}
	keep = func(r *receiver, conv string, m pushMsg) {
		if r.held[conv] == nil {
			r.held[conv] = map[uint64]string{}
		}
		r.held[conv][m.Seq] = m.ID
	}
	// catchUp is a reconnecting client's recipe (README, Reliable
	// clients): cmd 25, then cmd 23 from the acknowledged cursor of each
	// conversation whose lastSeq is above it.
	catchUp := func(r *receiver) {
		for _, cv := range r.conn.recent(`{"cmd":25,"count":1000}`).Data.Convs {
			conv, key, name := "p:"+cv.PeerID, "peer", cv.PeerID
			if cv.GroupID != "" {
				conv, key, name = "g:"+cv.GroupID, "groupId", cv.GroupID
			}
			for after := r.acked[conv]; after < cv.LastSeq; {
				sr := r.conn.sync(fmt.Sprintf(`{"cmd":23,"convs":[{%q:%q,"afterSeq":%d}]}`, key, name, after))
				l := append(sr.Data.Friends[name], sr.Data.Groups[name]...)
				if len(l) == 0 {
					t.Fatalf("sync of %s after %d returned nothing below lastSeq %d", conv, after, cv.LastSeq)
				}
				for _, m := range l {
					keep(r, conv, m)
					after = m.Seq
				}
			}
		}
	}
	events := map[string]int{}
	for step := 0; step < steps; step++ {
		r := rcvs[rng.IntN(len(rcvs))]
		switch x := rng.IntN(100); {
		case x < 30: // a private message
			si := rng.IntN(len(senders))
			senders[si].send(fmt.Sprintf(`{"cmd":11,"chatType":2,"to":%q,"content":"step %d"}`, r.id, step))
			m := ackRE.FindStringSubmatch(senders[si].readUntil(`"command":12`))
			if m == nil {
				t.Fatalf("step %d: no ack", step)
			}
			r.want[m[3]] = true
			events["private"]++
		case x < 40: // a group message
			senders[0].send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":"g","content":"step %d"}`, step))
			m := ackRE.FindStringSubmatch(senders[0].readUntil(`"command":12,`))
			if m == nil {
				t.Fatalf("step %d: no group ack", step)
			}
			for _, rr := range rcvs {
				rr.want[m[3]] = true
			}
			events["group"]++
		case x < 60: // read what came
			if r.conn != nil {
				drain(r)
				events["read"]++
			}
		case x < 78: // acknowledge what is held without a gap
			if r.conn == nil {
				continue
			}
			for conv, seqs := range r.held {
				n := r.acked[conv]
				for seqs[n+1] != "" {
					n++
				}
				if n == r.acked[conv] {
					continue
				}
				key, name := "peer", conv[2:]
				if conv[0] == 'g' {
					key = "groupId"
				}
				r.conn.send(fmt.Sprintf(`{"cmd":21,%q:%q,"seq":%d}`, key, name, n))
				r.acked[conv] = n
				events["ack"]++
			}
		case x < 90: // the connection dies, whatever it holds unread
			if r.conn != nil {
				r.conn.c.Close()
				r.conn = nil
				events["death"]++
			}
		default: // (re)connect
			if r.conn == nil {
				r.conn = ts.dialAck(r.token)
				catchUp(r)
				events["reconnect"]++
			}
		}
	}
	t.Logf("events: %v", events)
	for _, e := range []string{"private", "group", "read", "ack", "death", "reconnect"} {
		if events[e] == 0 {
			t.Fatalf("the schedule never had %q", e)
		}
	}
	// In a cluster a push crosses the bus after its ack (PROTOCOL §4.2:
	// ack, then push): every push is settled before the last reads.
	waitFor(t, "pushes settled", ts.settled)
	for _, r := range rcvs {
		if r.conn == nil {
			r.conn = ts.dialAck(r.token)
		}
		drain(r)
		have := map[string]bool{}
		for _, seqs := range r.held {
			for _, id := range seqs {
				have[id] = true
			}
		}
		for _, m := range pullOffline(t, r.conn, "") {
			have[m.ID] = true
		}
		missing := 0
		for id := range r.want {
			if !have[id] {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("%s: %d of %d acked messages neither read nor queued", r.id, missing, len(r.want))
		}
		// Sync from the acknowledged cursors: nothing new is missing.
		for conv, n := range r.acked {
			key, name := "peer", conv[2:]
			if conv[0] == 'g' {
				key = "groupId"
			}
			s := r.conn.sync(fmt.Sprintf(`{"cmd":23,"convs":[{%q:%q,"afterSeq":%d}],"count":500}`, key, name, n))
			for _, l := range [][]pushMsg{s.Data.Friends[name], s.Data.Groups[name]} {
				for _, m := range l {
					have[m.ID] = true
				}
			}
		}
		for id := range r.want {
			if !have[id] {
				t.Fatalf("%s: message %s missing after sync", r.id, id)
			}
		}
	}
}

// PROTOCOL §7.1: a conversation is named by peer or groupId from the
// caller's side, the same for cmd 21, 23, 25 and 27; a peer that does not
// exist, a group the caller is not in, both names or none answer 10029
// with the command of the reply.
func TestSection7_1_NamingAConversation(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("a", 0))
	b := ts.login(ts.register("b", 0))
	o := ts.login(ts.register("outsider", 0))
	for _, c := range []*wsClient{a, b} {
		c.send(`{"cmd":7,"groupId":"g"}`)
		c.readUntil(`"command":8,`)
	}
	a.send(`{"cmd":11,"chatType":2,"to":"b","content":"private"}`)
	a.readUntil(`"command":12`)
	a.send(`{"cmd":11,"chatType":1,"groupId":"g","content":"group"}`)
	a.readUntil(`"command":12`)
	// Both sides name the private conversation by the other: seq 1 each.
	for _, tc := range []struct {
		c    *wsClient
		name string
	}{{a, `"peer":"b"`}, {b, `"peer":"a"`}, {a, `"groupId":"g"`}, {b, `"groupId":"g"`}} {
		s := tc.c.sync(`{"cmd":23,"convs":[{` + tc.name + `,"afterSeq":0}]}`)
		if n := len(s.Data.Friends) + len(s.Data.Groups); n != 1 {
			t.Fatalf("sync %s: %+v", tc.name, s.Data)
		}
		tc.c.send(`{"cmd":27,` + tc.name + `,"seq":1}`)
		tc.c.readUntil(`"code":10030`)
	}
	for _, tc := range []struct{ cmd, resp int }{{21, 22}, {23, 24}, {27, 28}} {
		bad := fmt.Sprintf(`{"code":10029,"command":%d,"msg":"bad request 请求参数错误"}`, tc.resp)
		for _, name := range []string{`"peer":"nobody"`, `"groupId":"nogroup"`, `"peer":"a","groupId":"g"`, `"peer":""`} {
			req := fmt.Sprintf(`{"cmd":%d,%s,"seq":1}`, tc.cmd, name)
			if tc.cmd == 23 {
				req = fmt.Sprintf(`{"cmd":23,"convs":[{%s,"afterSeq":0}]}`, name)
			}
			b.send(req)
			b.readUntil(bad)
		}
		// A group the caller is not in.
		req := fmt.Sprintf(`{"cmd":%d,"groupId":"g","seq":1}`, tc.cmd)
		if tc.cmd == 23 {
			req = `{"cmd":23,"convs":[{"groupId":"g","afterSeq":0}]}`
		}
		o.send(req)
		o.readUntil(bad)
	}
	// cmd 25 names each conversation the same way.
	if got := b.recent(`{"cmd":25}`).names(); got != "g,a" && got != "a,g" {
		t.Fatalf("recent of b: %s", got)
	}
}

// PROTOCOL §7.2: an acknowledged message leaves the offline queue even
// when it is queued (a terminal died holding it) just before another
// terminal acknowledges it, and the conversation's queue was empty a
// moment before.
func TestSection7_2_AckRightAfterAnotherTerminalDied(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("a", 0))
	tokB := ts.register("b", 1)
	a.send(`{"cmd":11,"chatType":2,"to":"b","content":"m1"}`) // b offline: queued
	a.readUntil(`"command":12`)
	rcA := ts.rawAckLogin(tokB)
	rcA.write(text(`{"cmd":21,"peer":"a","seq":1}`)) // the queue is empty now
	rcA.write(text(`{"cmd":13}`))
	rcA.readFrame()
	a.send(`{"cmd":11,"chatType":2,"to":"b","content":"m2"}`)
	a.readUntil(`"command":12`)
	rcA.readPushes(1)
	c := ts.dialAck(tokB)
	rcA.nc.Close() // A dies holding seq 2 unacknowledged: it is queued
	waitFor(t, "A gone", func() bool { return ts.stats().Conns == 2 })
	waitFor(t, "pushes settled", ts.settled) // across nodes, in a cluster
	c.send(`{"cmd":21,"peer":"a","seq":2}`)  // the user has it (synced)
	c.send(`{"cmd":13}`)
	c.readUntil(`"command":13`)
	if got := pullOffline(t, c, `"fromUserId":"a"`); len(got) != 0 {
		t.Fatalf("acknowledged, yet queued: %v", seqsOf(t, got))
	}
}

// PROTOCOL §6, 10029: a §7 request with a member of the wrong type is
// answered 10029 with its own reply command, not as an unknown command.
func TestSection7_WrongTypesAnswer10029(t *testing.T) {
	ts := newTestServer(t)
	ts.register("a", 0)
	b := ts.login(ts.register("b", 0))
	for _, tc := range []struct {
		req  string
		resp int
	}{
		{`{"cmd":21,"peer":5,"seq":1}`, 22},
		{`{"cmd":21,"peer":"a","seq":{}}`, 22},
		{`{"cmd":"21","peer":"a","seq":[1]}`, 22},
		{`{"cmd":23,"convs":[],"count":[1]}`, 24},
		{`{"cmd":25,"count":"abc"}`, 26},
		{`{"cmd":27,"peer":"a","seq":"1x"}`, 28},
		{`{"cmd":33,"to":["a"],"state":1}`, 34},
	} {
		b.send(tc.req)
		b.expect(fmt.Sprintf(`{"code":10029,"command":%d,"msg":"bad request 请求参数错误"}`, tc.resp))
	}
	b.send(`{"cmd":11,"to":5}`) // other commands keep their answer
	b.expect(`{"code":10017,"command":0,"msg":"cmd failed! 未知的cmd命令!"}`)
}

// PROTOCOL §4.4 with §7.5: a group pull (cmd 19 type 0) marks the group
// read up to what it carried, as a peer's does.
func TestSection7_5_GroupPullMarksRead(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("a", 0))
	tokB := ts.register("b", 0)
	b := ts.login(tokB)
	for _, c := range []*wsClient{a, b} {
		c.send(`{"cmd":7,"groupId":"g"}`)
		c.readUntil(`"command":8,`)
	}
	b.c.Close()
	waitFor(t, "b offline", func() bool { return !ts.online(uidOf(t, ts, "b")) })
	for i := 0; i < 3; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":"g","content":"m%d"}`, i))
		a.readUntil(`"command":12`)
	}
	b = ts.login(tokB)
	if n := len(pullOffline(t, b, `"groupId":"g"`)); n != 3 {
		t.Fatalf("pulled %d", n)
	}
	r := b.recent(`{"cmd":25}`)
	if len(r.Data.Convs) != 1 || r.Data.Convs[0].ReadSeq != 3 || r.Data.Convs[0].UnReadNum != 0 {
		t.Fatalf("after the pull: %+v", r.Data.Convs)
	}
}
