package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// readUntil reads c until a frame containing want and returns it, skipping
// pushes and events in between.
func (c *wsClient) readUntil(want string) string {
	c.t.Helper()
	for {
		if m := c.read(); strings.Contains(m, want) {
			return m
		}
	}
}

// assignTo calls getReceiver for a visitor with no receiver and returns
// the agent given ("" for busy).
func (ts *testServer) assignTo(visitor string) string {
	ts.t.Helper()
	code, r := ts.getReceiver(fmt.Sprintf(`{"senderId":%q,"type":0,"token":%q}`, visitor, visitorToken(visitor)))
	switch {
	case code == 200 && r.Code == 200 && r.Data != nil:
		if r.Data.Status != "online" {
			ts.t.Fatalf("%s assigned %s with status %s", visitor, r.Data.ID, r.Data.Status)
		}
		return r.Data.ID
	case code == 200 && r.Code == 500 && r.Msg == busy:
		return ""
	}
	ts.t.Fatalf("getReceiver for %s: HTTP %d %+v", visitor, code, r)
	return ""
}

func visitorToken(visitor string) string { return "token-of-" + visitor + "-000000" }

// PROTOCOL §1.2 (2): a tie goes to the least recently assigned agent, and
// the last-assigned time survives the agent's reconnects and a restart.
func TestSection1_2_TieBreakSurvivesReconnectAndRestart(t *testing.T) {
	ts := newTestServer(t)
	tokX, tokY := ts.register("agent_x", 1), ts.register("agent_y", 1)
	x, y := ts.login(tokX), ts.login(tokY)
	answer := func(agent *wsClient, visitor string) {
		t.Helper()
		agent.send(`{"cmd":11,"to":"` + visitor + `","chatType":2,"content":"how can I help?"}`)
		agent.readUntil(`"command":12`)
	}
	if got := ts.assignTo("v1"); got != "agent_x" {
		t.Fatalf("v1 → %s, want agent_x (both idle, never assigned: lowest id first)", got)
	}
	answer(x, "v1") // x has nobody waiting again: x and y are idle-equal
	// x's page reloads.
	x.c.Close()
	waitFor(t, "x offline", func() bool { return !ts.online(uidOf(t, ts, "agent_x")) })
	x = ts.login(tokX)
	ts.clock.Advance(time.Second)
	if got := ts.assignTo("v2"); got != "agent_y" {
		t.Fatalf("v2 → %s, want agent_y: x was assigned more recently, before its reload", got)
	}
	answer(y, "v2")
	ts.restart()
	x, y = ts.login(tokX), ts.login(tokY)
	ts.clock.Advance(time.Second)
	if got := ts.assignTo("v3"); got != "agent_x" {
		t.Fatalf("after a restart v3 → %s, want agent_x (y was assigned last)", got)
	}
	answer(x, "v3")
	ts.clock.Advance(time.Second)
	if got := ts.assignTo("v4"); got != "agent_y" {
		t.Fatalf("v4 → %s, want agent_y", got)
	}
}

// PROTOCOL §1.2 (2): load counts visitors waiting for a reply — one
// assigned who has not written yet included — and never a colleague's or a
// consultant's message.
func TestSection1_2_LoadCountsWaitingVisitorsOnly(t *testing.T) {
	ts := newTestServer(t)
	x := ts.login(ts.register("agent_x", 1))
	ts.login(ts.register("agent_y", 1))
	c := ts.login(ts.register("consultant_c", 2))
	if got := ts.assignTo("v0"); got != "agent_x" {
		t.Fatalf("v0 → %s, want agent_x", got)
	}
	// v0 writes nothing. A consultant asks y a question.
	c.send(`{"cmd":11,"to":"agent_y","chatType":2,"content":"a colleague's question"}`)
	c.readUntil(`"command":12`)
	if got := ts.assignTo("v1"); got != "agent_y" {
		t.Fatalf("v1 → %s, want agent_y: x has v0 waiting, y only a consultant's message", got)
	}
	// Both have one visitor waiting; x answers v0 and has none.
	x.send(`{"cmd":11,"to":"v0","chatType":2,"content":"hello"}`)
	x.readUntil(`"command":12`)
	if got := ts.assignTo("v2"); got != "agent_x" {
		t.Fatalf("v2 → %s, want agent_x", got)
	}
	// pendingReplyNum still counts the consultant: it is every contact who
	// wrote last (PROTOCOL §1.3), not the load.
	var info struct{ Data struct{ PendingReplyNum int } }
	if err := json.Unmarshal([]byte(ts.chatInfo(`{"from":"agent_y","to":"consultant_c"}`)), &info); err != nil || info.Data.PendingReplyNum != 1 {
		t.Fatalf("y pendingReplyNum %d %v, want 1", info.Data.PendingReplyNum, err)
	}
}

// PROTOCOL §2 and §1.2: a connection that is closing counts as closed: a
// closing agent is not assigned, not "online" in contact lists.
func TestSection2_ClosingAgentIsNotOffered(t *testing.T) {
	ts := newTestServer(t)
	tokX := ts.register("agent_x", 1)
	v := ts.login(ts.register("visitor_v", 0))
	ts.post("/im/vanke/initUser", `{"senderId":"visitor_v","type":0,"receiverId":"agent_x","token":"`+visitorToken("visitor_v")+`"}`)
	rc := ts.rawLogin(tokX)
	rc.write(text(`{"cmd":14,"userid":"agent_x"}`))
	if op, p := rc.readFrame(); op != 1 || !strings.Contains(string(p), `"code":10021`) {
		t.Fatalf("close reply: op %d %s", op, p)
	}
	if op, _ := rc.readFrame(); op != 8 {
		t.Fatalf("want the CLOSE, got op %d", op)
	}
	// x does not answer the CLOSE: its connection is closing, not closed.
	if got := ts.assignTo("visitor_new"); got != "" {
		t.Fatalf("a closing agent was assigned: %s", got)
	}
	v.send(`{"cmd":17,"type":1}`)
	if got := v.read(); !strings.Contains(got, `"id":"agent_x"`) || !strings.Contains(got, `"status":"offline"`) {
		t.Fatalf("contact list of the visitor: %s", got)
	}
	if code, r := ts.getReceiver(`{"senderId":"visitor_v","type":0,"receiverId":"agent_x"}`); code != 200 || r.Data == nil || r.Data.Status != "offline" {
		t.Fatalf("named closing agent: %d %+v", code, r)
	}
}

// PROTOCOL §1.1 limits: real avatars (signed CDN URLs), nicknames, signs
// and terminals fit; one byte or character more answers 400 naming the
// field, and the refused request writes nothing.
func TestSection1_1_RealWorldFieldSizes(t *testing.T) {
	ts := newTestServer(t)
	ts.login(ts.register("agent_x", 1))
	cdn := "https://cdn.example.com/avatars/9f8e7d.png?X-Amz-Signature=" + strings.Repeat("a1b2c3d4", 165) // 1 380 bytes
	// What fits, and one over.
	fields := map[string][2]string{
		"avatar":   {strings.Repeat("x", 4096), strings.Repeat("x", 4097)},
		"nick":     {strings.Repeat("顾", 256), strings.Repeat("顾", 257)},
		"sign":     {strings.Repeat("s", 1024), strings.Repeat("s", 1025)},
		"terminal": {strings.Repeat("t", 32), strings.Repeat("t", 33)},
	}
	for _, path := range []string{"/im/vanke/initUser", "/im/vanke/getReceiver"} {
		body := fmt.Sprintf(`{"senderId":"v_cdn","type":0,"token":%q,"avatar":%q}`, visitorToken("v_cdn"), cdn)
		if code, b := ts.post(path, body); code != 200 || !strings.Contains(b, `"code":200`) {
			t.Fatalf("%s with a %d-byte avatar: %d %s", path, len(cdn), code, b)
		}
		for f, v := range fields {
			body := fmt.Sprintf(`{"senderId":"v_%s","type":0,"token":%q,%q:%q}`, f, visitorToken("v_"+f), f, v[0])
			if code, b := ts.post(path, body); code != 200 || !strings.Contains(b, `"code":200`) {
				t.Fatalf("%s %s at the limit: %d %s", path, f, code, b)
			}
			body = fmt.Sprintf(`{"senderId":"v_over","type":0,"token":%q,%q:%q}`, visitorToken("v_over"), f, v[1])
			if code, b := ts.post(path, body); code != 400 || !strings.Contains(b, f) {
				t.Fatalf("%s %s over the limit: %d %s", path, f, code, b)
			}
		}
	}
	// Text only: a NUL (which SQL text refuses) is a 400 naming the field
	// on every store, never a 500.
	for _, f := range []string{"nick", "avatar", "sign", "terminal"} {
		body := fmt.Sprintf(`{"senderId":"v_over","type":0,"token":%q,%q:"a\u0000b"}`, visitorToken("v_over"), f)
		if code, b := ts.post("/im/vanke/initUser", body); code != 400 || !strings.Contains(b, f) {
			t.Fatalf("%s with a NUL: %d %s", f, code, b)
		}
	}
	if c := ts.dial(visitorToken("v_over")); !strings.Contains(c.read(), `"code":10008`) {
		t.Fatal("a refused registration bound its token")
	}
	c := ts.login(visitorToken("v_cdn"))
	c.send(`{"cmd":17,"type":1}`)
	c.read()
	if u, err := ts.s.db.UserByID("v_cdn"); err != nil || u.Avatar != cdn {
		t.Fatalf("stored avatar %q %v", u.Avatar, err)
	}
}

// PROTOCOL §1.2: getReceiver refused for a missing receiverId writes
// nothing: no token bound, no profile changed.
func TestSection1_2_RefusedGetReceiverChangesNothing(t *testing.T) {
	ts := newTestServer(t)
	ts.post("/im/vanke/initUser", `{"senderId":"agent_x","type":1,"nick":"Ann","avatar":"a.png","token":"first-token-of-agent-x"}`)
	code, r := ts.getReceiver(`{"senderId":"agent_x","type":1,"nick":"","avatar":"","token":"second-token-of-agent-x"}`)
	if code != 400 || !strings.Contains(r.Msg, "receiverId") {
		t.Fatalf("agent without receiverId: %d %+v", code, r)
	}
	if c := ts.dial("second-token-of-agent-x"); !strings.Contains(c.read(), `"code":10008`) {
		t.Fatal("the refused call bound its token")
	}
	if u, _ := ts.s.db.UserByID("agent_x"); u.Nick != "Ann" || u.Avatar != "a.png" {
		t.Fatalf("the refused call changed the profile: %+v", u)
	}
	// Nobody to assign: busy, and the visitor is not registered either.
	if got := ts.assignTo("v_busy"); got != "" {
		t.Fatalf("assigned %s with no agent online", got)
	}
	if c := ts.dial(visitorToken("v_busy")); !strings.Contains(c.read(), `"code":10008`) {
		t.Fatal("a busy answer bound the visitor's token")
	}
	// An unknown receiver: the same.
	if _, r := ts.getReceiver(`{"senderId":"v_unknown","type":0,"token":"` + visitorToken("v_unknown") + `","receiverId":"nobody"}`); r.Code != 500 {
		t.Fatalf("unknown receiver: %+v", r)
	}
	if c := ts.dial(visitorToken("v_unknown")); !strings.Contains(c.read(), `"code":10008`) {
		t.Fatal("an unknown receiver's answer bound the visitor's token")
	}
}

// PROTOCOL §4.6: lastMessageTime is the newest message's time; calling
// getReceiver again refreshes recency (pullType 3) but is not a message.
func TestSection4_6_LastMessageTimeIsTheLastMessage(t *testing.T) {
	ts := newTestServer(t)
	x := ts.login(ts.register("agent_x", 1))
	if got := ts.assignTo("v1"); got != "agent_x" {
		t.Fatalf("v1 → %s", got)
	}
	lastTime := func() int64 {
		t.Helper()
		x.send(`{"cmd":17,"type":2,"extras":{"pullType":1}}`)
		var l struct {
			Data struct {
				Friends []struct {
					UserID          string `json:"userId"`
					LastMessageTime int64
				}
			}
		}
		if b := x.readUntil(`"command":18`); json.Unmarshal([]byte(b), &l) != nil || len(l.Data.Friends) != 1 {
			t.Fatalf("chat list %s", b)
		}
		return l.Data.Friends[0].LastMessageTime
	}
	if got := lastTime(); got != 0 {
		t.Fatalf("lastMessageTime %d before any message, want 0", got)
	}
	v := ts.login(visitorToken("v1"))
	v.send(`{"cmd":11,"to":"agent_x","chatType":2,"content":"hi"}`)
	v.readUntil(`"command":12`)
	sent := ts.clock.Now().UnixMilli()
	ts.clock.Advance(time.Hour)
	if got := ts.assignTo("v1"); got != "agent_x" {
		t.Fatalf("v1 again → %s", got)
	}
	if got := lastTime(); got != sent {
		t.Fatalf("lastMessageTime %d after a second getReceiver, want %d (the message)", got, sent)
	}
}

// PROTOCOL §1.2 (2), a property: agents connecting, reconnecting, leaving
// and closing; visitors arriving, writing, being answered and coming back,
// in a random order from a fixed seed. Each assignment is the one a model
// of the rule gives (never an offline or closing agent; the fewest waiting
// visitors; then the least recently assigned; then the first registered),
// and a run with a restart in the middle assigns exactly as one without.
func TestSection1_2_AssignmentProperty(t *testing.T) {
	seed := uint64(20261130)
	const steps = 160
	straight := runAssignments(t, seed, steps, -1)
	restarted := runAssignments(t, seed, steps, steps/2)
	if fmt.Sprint(straight) != fmt.Sprint(restarted) {
		t.Fatalf("a restart changed the assignments:\n%v\n%v", straight, restarted)
	}
}

// runAssignments runs the property's schedule and returns the assignments
// made, restarting the gateway before step restartAt (-1: never).
func runAssignments(t *testing.T, seed uint64, steps, restartAt int) []string {
	// The model's clock moves a second a step, a few hundred steps: no
	// connection may go idle on it (liveness is not what this proves).
	ts := newTestServer(t, func(c *config) { c.IdleTimeout, c.PingInterval = 24*time.Hour, 12*time.Hour })
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	const agents = 4
	type agent struct {
		id, token string
		conn      *wsClient
		state     string // "online", "offline", "closing"
		assigned  int64  // model: when last assigned (ms), 0 never
		waiting   map[string]bool
	}
	as := make([]*agent, agents)
	for i := range as {
		id := fmt.Sprintf("agent_%d", i)
		as[i] = &agent{id: id, token: ts.register(id, 1), state: "offline", waiting: map[string]bool{}}
	}
	byID := func(id string) *agent {
		for _, a := range as {
			if a.id == id {
				return a
			}
		}
		return nil
	}
	partner := map[string]string{} // model: visitor → partner
	var visitors []string
	vconn := map[string]*wsClient{}
	var got []string
	events := map[string]int{}
	online := func(a *agent) bool { return a.state == "online" }
	expect := func(v string) string {
		if p := partner[v]; p != "" && online(byID(p)) {
			return p
		}
		var best *agent
		for _, a := range as {
			if !online(a) {
				continue
			}
			if best == nil || len(a.waiting) < len(best.waiting) || (len(a.waiting) == len(best.waiting) && a.assigned < best.assigned) {
				best = a
			}
		}
		if best == nil {
			return ""
		}
		return best.id
	}
	goOffline := func(a *agent) {
		a.conn.c.Close()
		a.conn, a.state = nil, "offline"
		uid := uidOf(t, ts, a.id)
		waitFor(t, a.id+" offline", func() bool { return !ts.online(uid) })
	}
	for step := 0; step < steps; step++ {
		if step == restartAt {
			ts.restart()
			for _, a := range as {
				if a.state == "online" {
					a.conn = ts.login(a.token)
				} else {
					a.conn, a.state = nil, "offline"
				}
			}
			clear(vconn)
		}
		ts.clock.Advance(time.Second)
		a := as[rng.IntN(agents)]
		r := rng.IntN(100)
		switch {
		case r < 12: // an agent comes online
			if a.state != "online" {
				a.conn, a.state = ts.login(a.token), "online"
			}
		case r < 18: // an agent leaves
			if a.state == "online" {
				goOffline(a)
			}
		case r < 24: // an agent's page reloads
			if a.state == "online" {
				a.conn.c.Close()
				a.conn = ts.login(a.token)
			}
		case r < 28: // an agent closes and ignores the server's CLOSE
			if a.state == "online" {
				goOffline(a)
				rc := ts.rawLogin(a.token)
				rc.write(text(`{"cmd":14,"userid":"` + a.id + `"}`))
				rc.readFrame() // 10021
				if op, _ := rc.readFrame(); op != 8 {
					t.Fatalf("step %d: no CLOSE for %s", step, a.id)
				}
				a.state = "closing"
				events["closing"]++
			}
		case r < 55: // a new visitor
			v := fmt.Sprintf("visitor_%d", len(visitors))
			visitors = append(visitors, v)
			fallthrough
		case r < 65: // a visitor comes back
			if len(visitors) == 0 {
				continue
			}
			v := visitors[len(visitors)-1]
			if r >= 55 {
				v = visitors[rng.IntN(len(visitors))]
			}
			want, pick := expect(v), ts.assignTo(v)
			if pick != want {
				t.Fatalf("step %d (restart at %d): %s → %q, want %q (agents %s)", step, restartAt, v, pick, want, describe(as, func(a *agent) string {
					return fmt.Sprintf("%s:%s waiting=%d assigned=%d", a.id, a.state, len(a.waiting), a.assigned)
				}))
			}
			got = append(got, v+"→"+pick)
			switch {
			case pick == "":
				events["busy"]++
			case pick == partner[v]:
				events["back to the partner"]++
			case partner[v] != "":
				events["reassigned"]++
			default:
				events["assigned"]++
			}
			if pick == "" || pick == partner[v] {
				continue
			}
			if old := byID(partner[v]); old != nil {
				delete(old.waiting, v)
			}
			p := byID(pick)
			partner[v], p.waiting[v], p.assigned = pick, true, ts.clock.Now().UnixMilli()
		case r < 80: // a visitor writes to their partner
			if len(visitors) == 0 {
				continue
			}
			v := visitors[rng.IntN(len(visitors))]
			p := partner[v]
			if p == "" {
				continue
			}
			c := vconn[v]
			if c == nil {
				c = ts.login(visitorToken(v))
				vconn[v] = c
			}
			c.send(`{"cmd":11,"to":"` + p + `","chatType":2,"content":"still there?"}`)
			c.readUntil(`"command":12`)
			byID(p).waiting[v] = true
		default: // an agent answers a waiting visitor
			if a.state != "online" || len(a.waiting) == 0 {
				continue
			}
			ws := make([]string, 0, len(a.waiting))
			for v := range a.waiting {
				ws = append(ws, v)
			}
			slices.Sort(ws)
			v := ws[rng.IntN(len(ws))]
			a.conn.send(`{"cmd":11,"to":"` + v + `","chatType":2,"content":"here"}`)
			a.conn.readUntil(`"command":12`)
			delete(a.waiting, v)
		}
		// The model's loads are the store's.
		for _, a := range as {
			n, err := ts.s.db.Counts(uidOf(t, ts, a.id))
			if err != nil || n.Waiting != uint64(len(a.waiting)) {
				t.Fatalf("step %d: %s waiting %d in the store, %d in the model (%v)", step, a.id, n.Waiting, len(a.waiting), err)
			}
		}
	}
	t.Logf("restart at %d: %v", restartAt, events)
	for _, e := range []string{"closing", "busy", "back to the partner", "reassigned", "assigned"} {
		if events[e] == 0 {
			t.Errorf("the schedule never had %q: change the seed", e)
		}
	}
	return got
}

func describe[T any](xs []T, f func(T) string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = f(x)
	}
	return strings.Join(s, ", ")
}

// PROTOCOL §1.2: an agent who calls getReceiver as a visitor is never
// assigned to themselves; with nobody else online the answer is busy and
// nothing is written.
func TestSection1_2_NoAgentIsTheirOwnAgent(t *testing.T) {
	ts := newTestServer(t)
	ts.login(ts.register("agent_x", 1))
	if got := ts.assignTo("agent_x"); got != "" {
		t.Fatalf("agent_x assigned to %s", got)
	}
	if u, _ := ts.s.db.UserByID("agent_x"); u.Type != 1 {
		t.Fatalf("a busy answer changed agent_x's type to %d", u.Type)
	}
	if c := ts.dial(visitorToken("agent_x")); !strings.Contains(c.read(), `"code":10008`) {
		t.Fatal("a busy answer bound the token")
	}
	ts.login(ts.register("agent_y", 1))
	if got := ts.assignTo("agent_x"); got != "agent_y" {
		t.Fatalf("agent_x as a visitor → %s, want agent_y", got)
	}
}

// PROTOCOL §1.3 with from = to: nobody is their own contact; op 1 answers
// the counts instead of failing.
func TestSection1_3_ChatInfoWithOneself(t *testing.T) {
	ts := newTestServer(t)
	ts.register("agent_x", 1)
	var r struct {
		Code int
		Data struct{ AllContactsNum int }
	}
	if err := json.Unmarshal([]byte(ts.chatInfo(`{"from":"agent_x","to":"agent_x","op":1}`)), &r); err != nil || r.Code != 200 || r.Data.AllContactsNum != 0 {
		t.Fatalf("chatInfo with oneself: %+v %v", r, err)
	}
}
