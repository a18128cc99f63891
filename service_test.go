package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the bound passes: for state that
// changes on another goroutine with no event to wait on (a socket's close
// reaching the registry).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type partnerReply struct {
	Code int
	Msg  string
	Data *struct {
		ID     string
		Type   int
		Status string
	}
}

func (ts *testServer) getReceiver(body string) (int, partnerReply) {
	ts.t.Helper()
	code, b := ts.post("/im/vanke/getReceiver", body)
	var r partnerReply
	if err := json.Unmarshal([]byte(b), &r); err != nil {
		ts.t.Fatalf("getReceiver %s: %s", body, b)
	}
	return code, r
}

func (ts *testServer) chatInfo(body string) string {
	ts.t.Helper()
	code, b := ts.post("/im/vanke/chatInfo", body)
	if code != 200 {
		ts.t.Fatalf("chatInfo %s: %d %s", body, code, b)
	}
	return b
}

const busy = "当前客服繁忙，建议您电话咨询!"

// PROTOCOL §1.2: explicit receivers, assignment by waiting visitors,
// stickiness, the busy answer and atomic assignment.
func TestSection1_2_GetReceiver(t *testing.T) {
	ts := newTestServer(t)
	x := ts.login(ts.register("agent_x", 1))
	y := ts.login(ts.register("agent_y", 1))
	ts.register("consultant_z", 2)

	code, body := ts.post("/im/vanke/getReceiver", `{"senderId":"visitor_1","type":0,"token":"token-of-visitor-1","receiverId":"agent_x"}`)
	if code != 200 || body != `{"code":200,"msg":"success","data":{"id":"agent_x","type":1,"nick":"","avatar":"","status":"online","sign":"","terminal":"","friends":null,"groups":null,"extras":null}}` {
		t.Fatalf("explicit: %d %s", code, body)
	}
	if _, r := ts.getReceiver(`{"senderId":"visitor_1","type":0,"receiverId":"consultant_z"}`); r.Data == nil || r.Data.Status != "offline" {
		t.Fatalf("offline consultant: %+v", r)
	}
	if _, r := ts.getReceiver(`{"senderId":"visitor_1","type":0,"receiverId":"nobody"}`); r.Code != 500 || r.Msg != busy || r.Data != nil {
		t.Fatalf("unknown receiver: %+v", r)
	}
	if code, r := ts.getReceiver(`{"senderId":"agent_y","type":1}`); code != 400 || !strings.Contains(r.Msg, "receiverId") {
		t.Fatalf("agent without receiver: %d %+v", code, r)
	}

	// Two visitors wait for x's reply; y has none waiting.
	for _, v := range []string{"w1", "w2"} {
		c := ts.login(ts.register(v, 0))
		c.send(`{"cmd":11,"to":"agent_x","chatType":2,"content":"hello?"}`)
		c.read()
		x.read() // the push
	}
	if _, r := ts.getReceiver(`{"senderId":"new_1","type":0}`); r.Data == nil || r.Data.ID != "agent_y" || r.Data.Status != "online" {
		t.Fatalf("assignment: %+v", r)
	}
	// x answers both and now has no one waiting either: new_1 stays with y.
	for _, v := range []string{"w1", "w2"} {
		x.send(`{"cmd":11,"to":"` + v + `","chatType":2,"content":"hi"}`)
		x.read()
	}
	if _, r := ts.getReceiver(`{"senderId":"new_1","type":0}`); r.Data == nil || r.Data.ID != "agent_y" {
		t.Fatalf("sticky: %+v", r)
	}
	// 20 concurrent calls for a new visitor agree.
	var wg sync.WaitGroup
	got := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, r := ts.getReceiver(`{"senderId":"new_2","type":0}`)
			if r.Data == nil {
				got <- "none"
				return
			}
			got <- r.Data.ID
		}()
	}
	wg.Wait()
	close(got)
	first := ""
	for id := range got {
		if first == "" {
			first = id
		}
		if id != first || id == "none" {
			t.Fatalf("concurrent assignment gave %s and %s", first, id)
		}
	}
	// Nobody online: busy.
	x.c.Close()
	y.c.Close()
	xu, yu := uidOf(t, ts, "agent_x"), uidOf(t, ts, "agent_y")
	waitFor(t, "agents offline", func() bool { return !ts.online(xu) && !ts.online(yu) })
	if _, r := ts.getReceiver(`{"senderId":"new_3","type":0}`); r.Code != 500 || r.Msg != busy {
		t.Fatalf("no agent online: %+v", r)
	}
}

// PROTOCOL §1.3: counts from state; op 1 never double-counts; reads; the
// 48-hour window by the injected clock.
func TestSection1_3_ChatInfo(t *testing.T) {
	ts := newTestServer(t)
	v := ts.login(ts.register("visitor_1", 0))
	a := ts.login(ts.register("agent_1", 1))
	for i := 0; i < 3; i++ {
		v.send(`{"cmd":11,"to":"agent_1","chatType":2,"content":"q"}`)
		v.read()
		a.read()
	}
	info := func(op, concurrent int) string {
		return ts.chatInfo(fmt.Sprintf(`{"from":"agent_1","to":"visitor_1","op":%d,"isNewMember":0,"isConcurrent":%d}`, op, concurrent))
	}
	want := func(pending, lasted, all, unread int) string {
		return fmt.Sprintf(`{"code":200,"msg":"success","data":{"to":"visitor_1","from":"agent_1","pendingReplyNum":%d,"lastedContactsNum":%d,"allContactsNum":%d,"unReadNum":%d}}`, pending, lasted, all, unread)
	}
	for i := 0; i < 4; i++ {
		if got := info(1, 0); got != want(1, 1, 1, 3) {
			t.Fatalf("op 1 call %d: %s", i, got)
		}
	}
	if got := info(1, 1); got != want(1, 1, 1, 0) {
		t.Fatalf("op 1 concurrent: %s", got)
	}
	v.send(`{"cmd":11,"to":"agent_1","chatType":2,"content":"q"}`)
	v.read()
	a.read()
	if got := info(2, 0); got != want(1, 1, 1, 0) {
		t.Fatalf("op 2: %s", got)
	}
	a.send(`{"cmd":11,"to":"visitor_1","chatType":2,"content":"answer"}`)
	a.read()
	v.read()
	if got := info(1, 0); got != want(0, 1, 1, 0) {
		t.Fatalf("after reply: %s", got)
	}
	ts.clock.Advance(48*time.Hour + time.Millisecond)
	if got := info(1, 0); got != want(0, 0, 1, 0) {
		t.Fatalf("after 48 h: %s", got)
	}
	code, body := ts.post("/im/vanke/chatInfo", `{"to":"visitor_1","op":1}`)
	if code != 400 || !strings.Contains(body, "from") {
		t.Fatalf("missing from: %d %s", code, body)
	}
}

// PROTOCOL §4.6 type 1: the exact envelope with msg "success " and live
// status, as one of two tabs closes and then the other.
func TestSection4_6_ContactList(t *testing.T) {
	ts := newTestServer(t)
	tokV := ts.register("visitor_1", 0)
	a := ts.login(ts.register("agent_1", 1))
	ts.post("/im/vanke/initUser", `{"senderId":"visitor_1","type":0,"token":"`+tokV+`","nick":"Ann","avatar":"a.png","terminal":"h5","receiverId":"agent_1"}`)
	if _, r := ts.getReceiver(`{"senderId":"visitor_1","type":0,"token":"` + tokV + `","nick":"Ann","avatar":"a.png","terminal":"h5","receiverId":"agent_1"}`); r.Code != 200 {
		t.Fatalf("getReceiver %+v", r)
	}
	list := func(status string) string {
		return `{"code":200,"command":18,"data":[{"avatar":"a.png","id":"visitor_1","nick":"Ann","sign":"","status":"` + status + `","terminal":"h5","type":0}],"msg":"success "}`
	}
	a.send(`{"cmd":17,"type":1,"userId":"agent_1"}`)
	a.expect(list("offline"))
	t1, t2 := ts.login(tokV), ts.login(tokV)
	a.send(`{"cmd":"17","type":"1"}`)
	a.expect(list("online"))
	t1.c.Close()
	waitFor(t, "one tab closed", func() bool { return ts.stats().Conns == 2 })
	a.send(`{"cmd":17,"type":1}`)
	a.expect(list("online"))
	t2.c.Close()
	waitFor(t, "both tabs closed", func() bool { return !ts.online(uidOf(t, ts, "visitor_1")) })
	a.send(`{"cmd":17,"type":1}`)
	a.expect(list("offline"))
	a.send(`{"cmd":17,"type":1,"userid":"visitor_1"}`)
	a.expect(`{"code":10024,"command":18,"msg":"forbidden 无权操作"}`)
}

type chatList struct {
	Code int
	Data struct {
		AllContactsNum, PendingReplyNum, LastedContactsNum, PullType int
		UserID                                                       string `json:"userId"`
		Friends                                                      []struct {
			UserID         string `json:"userId"`
			UnReadNum      int
			Status         string
			HistoryMessage []struct{ Content string }
		}
	}
}

func readList(t testing.TB, c *wsClient, req string) chatList {
	t.Helper()
	c.send(req)
	body := c.read()
	var l chatList
	if err := json.Unmarshal([]byte(body), &l); err != nil || l.Code != 200 {
		t.Fatalf("%s → %s", req, body)
	}
	return l
}

// PROTOCOL §4.6 type 2: recent messages, order, pull types, search, and
// counts that agree with chatInfo.
func TestSection4_6_ChatList(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("agent_1", 1))
	ts.post("/im/vanke/initUser", `{"senderId":"old_friend","type":0,"nick":"Olga","token":"token-of-old-friend"}`)
	vs := map[string]*wsClient{}
	for _, id := range []string{"old_friend", "visitor_b", "visitor_c"} {
		tok := "token-of-old-friend"
		if id != "old_friend" {
			tok = ts.register(id, 0)
		}
		vs[id] = ts.login(tok)
	}
	say := func(from, to string, n int) {
		for i := 0; i < n; i++ {
			c := vs[from]
			if from == "agent_1" {
				c = a
			}
			c.send(fmt.Sprintf(`{"cmd":11,"to":%q,"chatType":2,"content":"%s-%d"}`, to, from, i))
			c.read()
			if to == "agent_1" {
				a.read()
			} else {
				vs[to].read()
			}
		}
	}
	say("old_friend", "agent_1", 1)
	ts.clock.Advance(49 * time.Hour)
	say("visitor_b", "agent_1", 12)
	ts.clock.Advance(time.Minute)
	say("visitor_c", "agent_1", 1)
	ts.clock.Advance(time.Minute)
	say("agent_1", "visitor_c", 1) // c answered: not pending

	all := readList(t, a, `{"cmd":17,"type":2,"extras":{"pullType":1}}`)
	var order []string
	for _, f := range all.Data.Friends {
		order = append(order, f.UserID)
	}
	if strings.Join(order, ",") != "visitor_c,visitor_b,old_friend" || all.Data.AllContactsNum != 3 || all.Data.PendingReplyNum != 2 || all.Data.LastedContactsNum != 2 || all.Data.UserID != "agent_1" {
		t.Fatalf("pullType 1: %+v", all.Data)
	}
	b := all.Data.Friends[1]
	if len(b.HistoryMessage) != 10 || b.HistoryMessage[0].Content != "visitor_b-2" || b.HistoryMessage[9].Content != "visitor_b-11" || b.UnReadNum != 12 || b.Status != "online" {
		t.Fatalf("visitor_b entry: %+v", b)
	}
	info := ts.chatInfo(`{"from":"agent_1","to":"visitor_b","op":0}`)
	if !strings.Contains(info, `"unReadNum":12`) {
		t.Fatalf("chatInfo disagrees: %s", info)
	}
	pending := readList(t, a, `{"cmd":17,"extras":{"pullType":"2"}}`)
	if len(pending.Data.Friends) != 2 || pending.Data.Friends[0].UserID != "visitor_b" || pending.Data.Friends[1].UserID != "old_friend" || pending.Data.PullType != 2 {
		t.Fatalf("pullType 2: %+v", pending.Data)
	}
	recent := readList(t, a, `{"cmd":17,"type":2,"extras":{"pullType":3}}`)
	if len(recent.Data.Friends) != 2 || recent.Data.Friends[1].UserID != "visitor_b" {
		t.Fatalf("pullType 3: %+v", recent.Data)
	}
	search := readList(t, a, `{"cmd":17,"type":2,"extras":{"pullType":1,"searchKey":"OLG"}}`)
	if len(search.Data.Friends) != 1 || search.Data.Friends[0].UserID != "old_friend" {
		t.Fatalf("search by nick: %+v", search.Data)
	}
	page := readList(t, a, `{"cmd":17,"type":2,"extras":{"pullType":1,"offset":1,"count":1}}`)
	if len(page.Data.Friends) != 1 || page.Data.Friends[0].UserID != "visitor_b" {
		t.Fatalf("page: %+v", page.Data)
	}
	for _, req := range []string{`{"cmd":17,"type":2}`, `{"cmd":17,"type":2,"extras":{"pullType":4}}`, `{"cmd":17,"type":0}`, `{"cmd":17,"type":5,"extras":{"pullType":1}}`} {
		a.send(req)
		a.expect(`{"code":10004,"command":18,"msg":"get user failed ! 获取用户信息失败!"}`)
	}
}

// PROTOCOL §4.3: counters survive kill -9 exactly.
func TestSection1_3_CountersSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	ts := p.testServer()
	v := ts.login(ts.register("visitor_1", 0))
	ts.register("agent_1", 1)
	for i := 0; i < 5; i++ {
		v.send(`{"cmd":11,"to":"agent_1","chatType":2,"content":"q"}`)
		v.read()
	}
	before := ts.chatInfo(`{"from":"agent_1","to":"visitor_1","op":0}`)
	if !strings.Contains(before, `"unReadNum":5`) || !strings.Contains(before, `"pendingReplyNum":1`) {
		t.Fatalf("before: %s", before)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()
	ts2 := startProc(t, dir).testServer()
	if after := ts2.chatInfo(`{"from":"agent_1","to":"visitor_1","op":0}`); after != before {
		t.Fatalf("after restart %s\nbefore %s", after, before)
	}
	// After a restart everyone starts offline: no agent to assign.
	if _, r := ts2.getReceiver(`{"senderId":"visitor_2","type":0}`); r.Code != 500 || r.Msg != busy {
		t.Fatalf("assignment after restart: %+v", r)
	}
}

// -pprof serves the runtime profiles on its own listener, and nothing
// serves them without it.
func TestPprofFlag(t *testing.T) {
	off := newTestServer(t)
	if off.s.pprofLn != nil {
		t.Fatal("pprof listener without -pprof")
	}
	if code, _ := httpGet(t, off.http+"/debug/pprof/"); code != 404 {
		t.Fatalf("the HTTP API served /debug/pprof/: %d", code)
	}
	on := newTestServer(t, func(c *config) { c.PprofAddr = "127.0.0.1:0" })
	code, body := httpGet(t, "http://"+on.s.pprofLn.Addr().String()+"/debug/pprof/goroutine?debug=1")
	if code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("pprof: %d %.200s", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
