package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const badMessage = `{"code":10002,"command":12,"msg":"send failed 消息发送失败,数据格式不正确,请参考:{'from':来源ID,'to':目标ID,'cmd':'消息命令码','createTime':消息创建时间(Long型),'msgType':Integer消息类型,'content':内容}"}`

var ackRE = regexp.MustCompile(`^\{"code":(10000|10001),"command":12,"data":\{"createTime":(\d+),"id":"([0-9a-f]{32})","seq":(\d+)\},"msg":"(ok 发送成功|offline 用户不在线)"\}$`)

// PROTOCOL §4.1-4.2: online A→B is acked 10000 with {id, seq, createTime};
// both of B's connections and A's other connection get the push; object
// content arrives as its compact JSON text; createTime is the server's.
func TestSection4_2_OnlinePrivateChat(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a1, a2 := ts.login(ta), ts.login(ta)
	b1, b2 := ts.login(tb), ts.login(tb)
	a1.send(`{"cmd":11,"from":"visitor_a","to":"agent_b","chatType":2,"msgType":0,"createTime":1568012384,"content":{"asd": "hell,你2好"},"extras":{"k":[1, 2]}}`)
	ack := a1.read()
	m := ackRE.FindStringSubmatch(ack)
	now := fmt.Sprint(ts.clock.Now().UnixMilli())
	if m == nil || m[1] != "10000" || m[2] != now || m[4] != "1" {
		t.Fatalf("ack %s", ack)
	}
	want := `{"command":11,"data":{"chatType":2,"cmd":11,"content":"{\"asd\":\"hell,你2好\"}","createTime":` + now +
		`,"extras":{"k":[1, 2]},"from":"visitor_a","id":"` + m[3] + `","msgType":0,"seq":1,"to":"agent_b"}}`
	for _, c := range []*wsClient{b1, b2, a2} {
		c.expect(want)
	}
	// The reply is seq 2 of the same conversation.
	b1.send(`{"cmd":"11","to":"visitor_a","chatType":"2","content":"hi"}`)
	if m := ackRE.FindStringSubmatch(b1.read()); m == nil || m[4] != "2" {
		t.Fatalf("reply ack %v", m)
	}
}

// PROTOCOL §4.2-4.4: offline B gets 10001; later B pulls type 2 (kept),
// type 0 (taken), and type 2 again finds nothing; order preserved.
func TestSection4_4_OfflineQueue(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	for i := 1; i <= 3; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"m%d"}`, i))
		if m := ackRE.FindStringSubmatch(a.read()); m == nil || m[1] != "10001" || m[4] != fmt.Sprint(i) {
			t.Fatalf("ack %d %v", i, m)
		}
	}
	b := ts.login(tb)
	contents := func(body string, code int) []string {
		t.Helper()
		var r struct {
			Code int
			Data struct {
				Friends map[string][]struct{ Content string }
				Groups  map[string]any
				Userid  string
			}
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil || r.Code != code || r.Data.Userid != "agent_b" || r.Data.Groups == nil {
			t.Fatalf("reply %s (%v)", body, err)
		}
		var out []string
		for _, m := range r.Data.Friends["visitor_a"] {
			out = append(out, m.Content)
		}
		return out
	}
	b.send(`{"cmd":19,"type":2,"userId":"agent_b","fromUserId":"visitor_a"}`)
	if got := contents(b.read(), 10022); strings.Join(got, ",") != "m1,m2,m3" {
		t.Fatalf("type 2: %v", got)
	}
	b.send(`{"cmd":19,"type":0,"userId":"agent_b"}`)
	if got := contents(b.read(), 10016); strings.Join(got, ",") != "m1,m2,m3" {
		t.Fatalf("type 0: %v", got)
	}
	b.send(`{"cmd":19,"type":"2","userid":"agent_b","fromUserId":"visitor_a"}`)
	b.expect(`{"code":10022,"command":20,"data":{"friends":{},"groups":{},"userid":"agent_b"},"msg":"ok! 拉取离线消息成功!"}`)
	// History keeps everything: offset 1, count 2 is the 2nd and 3rd.
	b.send(`{"cmd":19,"type":1,"fromUserId":"visitor_a","offset":1,"count":2}`)
	if got := contents(b.read(), 10018); strings.Join(got, ",") != "m2,m3" {
		t.Fatalf("history: %v", got)
	}
}

// PROTOCOL §4.1, §4.4 fixes: no sending as someone else, no reading
// someone else's messages; unknown receivers and malformed messages.
func TestSection4_1_Refusals(t *testing.T) {
	ts := newTestServer(t)
	ta := ts.register("visitor_a", 0)
	ts.register("agent_b", 1)
	a := ts.login(ta)
	for _, tc := range []struct{ send, want string }{
		{`{"cmd":11,"from":"agent_b","to":"visitor_a","chatType":2,"content":"x"}`, `{"code":10024,"command":12,"msg":"forbidden 无权操作"}`},
		{`{"cmd":11,"to":"nobody","chatType":2,"content":"x"}`, `{"code":10023,"command":12,"msg":"receiver not found 接收者不存在"}`},
		{`{"cmd":11,"to":"agent_b","content":"x"}`, badMessage},
		{`{"cmd":11,"to":"agent_b","chatType":2}`, badMessage},
		{`{"cmd":11,"to":"agent_b","chatType":2,"content":""}`, badMessage},
		{`{"cmd":11,"to":"agent_b","chatType":3,"content":"x"}`, badMessage},
		{`{"cmd":11,"to":"agent_b","chatType":2,"content":"x","id":"NOT-HEX"}`, badMessage},
		{`{"cmd":19,"type":1,"userId":"agent_b","fromUserId":"visitor_a"}`, `{"code":10024,"command":20,"msg":"forbidden 无权操作"}`},
		{`{"cmd":19,"type":1}`, `{"code":10015,"command":20,"msg":"get user message failed! 获取用户消息失败!"}`},
	} {
		a.send(tc.send)
		if got := a.read(); got != tc.want {
			t.Fatalf("%s\ngot  %s\nwant %s", tc.send, got, tc.want)
		}
	}
	// Nothing refused was stored.
	a.send(`{"cmd":19,"type":1,"fromUserId":"agent_b"}`)
	a.expect(`{"code":10018,"command":20,"data":{"friends":{},"groups":{},"userid":"visitor_a"},"msg":"get user message ok! 获取历史消息成功!"}`)
}

// PROTOCOL §4.1 ext: a resend of the same id is stored once and acked the
// same way.
func TestSection4_1_Idempotent(t *testing.T) {
	ts := newTestServer(t)
	ta := ts.register("visitor_a", 0)
	ts.register("agent_b", 1)
	a := ts.login(ta)
	req := `{"cmd":11,"to":"agent_b","chatType":2,"content":"once","id":"0123456789abcdef0123456789abcdef"}`
	a.send(req)
	first := a.read()
	ts.clock.Advance(5 * time.Second)
	a.send(req)
	if again := a.read(); again != first || !ackRE.MatchString(first) {
		t.Fatalf("first %s\nagain %s", first, again)
	}
	a.send(`{"cmd":19,"type":1,"fromUserId":"agent_b"}`)
	if got := a.read(); strings.Count(got, `"content":"once"`) != 1 {
		t.Fatalf("history %s", got)
	}
}

// PROTOCOL §4.4: type 0 without fromUserId returns every peer's queue
// grouped by peer id and empties them all; history windows by time and
// pages back from the newest.
func TestSection4_4_TakeAllAndHistoryWindows(t *testing.T) {
	ts := newTestServer(t)
	tb := ts.register("agent_b", 1)
	senders := map[string]*wsClient{}
	for _, id := range []string{"v1", "v2", "v3"} {
		senders[id] = ts.login(ts.register(id, 0))
	}
	var times []int64
	for i := 0; i < 2; i++ {
		for _, id := range []string{"v1", "v2", "v3"} {
			times = append(times, ts.clock.Now().UnixMilli())
			senders[id].send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"%s-%d"}`, id, i))
			if m := ackRE.FindStringSubmatch(senders[id].read()); m == nil || m[1] != "10001" {
				t.Fatalf("ack %v", m)
			}
			ts.clock.Advance(time.Second)
		}
	}
	b := ts.login(tb)
	b.send(`{"cmd":19,"type":0}`)
	var r struct {
		Code int
		Data struct {
			Friends map[string][]struct{ Content string }
		}
	}
	if err := json.Unmarshal([]byte(b.read()), &r); err != nil || r.Code != 10016 || len(r.Data.Friends) != 3 {
		t.Fatalf("take all: %v %+v", err, r)
	}
	for _, id := range []string{"v1", "v2", "v3"} {
		got := r.Data.Friends[id]
		if len(got) != 2 || got[0].Content != id+"-0" || got[1].Content != id+"-1" {
			t.Fatalf("%s: %+v", id, got)
		}
	}
	b.send(`{"cmd":19,"type":0}`)
	b.expect(`{"code":10016,"command":20,"data":{"friends":{},"groups":{},"userid":"agent_b"},"msg":"get user message ok! 获取离线消息成功!"}`)

	// v1 sent at times[0] and times[3]: a window holding only the second.
	v1 := senders["v1"]
	v1.send(fmt.Sprintf(`{"cmd":19,"type":1,"fromUserId":"agent_b","beginTime":%d,"endTime":%d}`, times[0]+1, times[3]))
	if got := v1.read(); !strings.Contains(got, `"content":"v1-1"`) || strings.Contains(got, `"content":"v1-0"`) {
		t.Fatalf("window: %s", got)
	}
	v1.send(`{"cmd":19,"type":1,"fromUserId":"agent_b","order":"desc","count":1}`)
	if got := v1.read(); !strings.Contains(got, `"content":"v1-1"`) || strings.Count(got, `"content"`) != 1 {
		t.Fatalf("newest page: %s", got)
	}
	v1.send(`{"cmd":19,"type":1,"fromUserId":"agent_b","order":"desc","count":1,"beforeSeq":2}`)
	if got := v1.read(); !strings.Contains(got, `"content":"v1-0"`) || strings.Count(got, `"content"`) != 1 {
		t.Fatalf("page before: %s", got)
	}
}

// PROTOCOL §4.1-4.3 under concurrency: 50 senders × 200 messages to one
// online receiver. Every ack's seq is gap-free per conversation, the
// receiver gets every push, and its history equals the acked set in order.
func TestSection4_2_ConcurrentSenders(t *testing.T) {
	const senders, each = 50, 200
	ts := newTestServer(t)
	recv := ts.login(ts.register("agent_r", 1))
	pushes := make(chan int, 1)
	go func() {
		n := 0
		_ = recv.c.SetReadDeadline(time.Now().Add(4 * waitBound()))
		for n < senders*each {
			if _, b, err := recv.c.ReadMessage(); err != nil {
				break
			} else if strings.HasPrefix(string(b), `{"command":11,`) {
				n++
			}
		}
		pushes <- n
	}()

	acked := make([][]string, senders)
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		c := ts.login(ts.register(fmt.Sprintf("visitor_%d", s), 0))
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() {
				for i := 0; i < each; i++ {
					if c.c.WriteMessage(1, []byte(fmt.Sprintf(`{"cmd":11,"to":"agent_r","chatType":2,"content":"%d-%d"}`, s, i))) != nil {
						return
					}
				}
			}()
			_ = c.c.SetReadDeadline(time.Now().Add(4 * waitBound()))
			for i := 0; i < each; i++ {
				_, b, err := c.c.ReadMessage()
				if err != nil {
					t.Errorf("sender %d: %v", s, err)
					return
				}
				m := ackRE.FindStringSubmatch(string(b))
				if m == nil || m[1] != "10000" || m[4] != fmt.Sprint(i+1) {
					t.Errorf("sender %d ack %d: %s", s, i, b)
					return
				}
				acked[s] = append(acked[s], m[3])
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := <-pushes; n != senders*each {
		t.Fatalf("receiver got %d pushes of %d", n, senders*each)
	}
	for s := 0; s < senders; s++ {
		ids, seqs := history(t, recv, fmt.Sprintf("visitor_%d", s))
		if fmt.Sprint(ids) != fmt.Sprint(acked[s]) || len(seqs) != each || seqs[each-1] != each {
			t.Fatalf("sender %d: history (%d) differs from acks (%d)", s, len(ids), len(acked[s]))
		}
	}
}

// PROTOCOL §4.4: a page never exceeds the server's cap, whatever count
// asks for; the rest is reached by paging.
func TestSection4_4_PageCap(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.PageCap = 3 })
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	for i := 0; i < 5; i++ {
		a.send(fmt.Sprintf(`{"cmd":11,"to":"agent_b","chatType":2,"content":"m%d"}`, i))
		a.read()
	}
	b := ts.login(tb)
	for _, req := range []string{
		`{"cmd":19,"type":1,"fromUserId":"visitor_a","count":1000}`,
		`{"cmd":19,"type":1,"fromUserId":"visitor_a"}`,
		`{"cmd":19,"type":2,"fromUserId":"visitor_a","count":1000}`,
		`{"cmd":19,"type":0,"count":1000}`,
	} {
		b.send(req)
		if got := strings.Count(b.read(), `"content"`); got != 3 {
			t.Fatalf("%s: %d messages, cap 3", req, got)
		}
	}
	ids, _ := history(t, b, "visitor_a")
	if len(ids) != 5 {
		t.Fatalf("paging reached %d of 5", len(ids))
	}
	// type 0 took 3; the other 2 are still queued.
	b.send(`{"cmd":19,"type":0}`)
	if got := strings.Count(b.read(), `"content"`); got != 2 {
		t.Fatalf("second take: %d", got)
	}
}

// PROTOCOL §4.4 type 1: history holds both directions, oldest first, and
// offset 1, count 2 over 5 messages is the 2nd and 3rd; both sides see the
// same conversation.
func TestSection4_4_HistoryBothDirections(t *testing.T) {
	ts := newTestServer(t)
	a := ts.login(ts.register("visitor_a", 0))
	b := ts.login(ts.register("agent_b", 1))
	for i := 1; i <= 5; i++ {
		from, to := a, "agent_b"
		if i%2 == 0 {
			from, to = b, "visitor_a"
		}
		from.send(fmt.Sprintf(`{"cmd":11,"to":%q,"chatType":2,"content":"m%d"}`, to, i))
		if m := ackRE.FindStringSubmatch(from.read()); m == nil || m[4] != fmt.Sprint(i) {
			t.Fatalf("ack %d: %v", i, m)
		}
		(map[bool]*wsClient{true: b, false: a}[i%2 == 1]).read() // the push
	}
	for _, tc := range []struct {
		c    *wsClient
		peer string
	}{{a, "agent_b"}, {b, "visitor_a"}} {
		tc.c.send(fmt.Sprintf(`{"cmd":19,"type":1,"fromUserId":%q}`, tc.peer))
		got := tc.c.read()
		if strings.Index(got, `"m1"`) > strings.Index(got, `"m2"`) || strings.Count(got, `"content"`) != 5 {
			t.Fatalf("%s history: %s", tc.peer, got)
		}
		tc.c.send(fmt.Sprintf(`{"cmd":19,"type":"1","fromUserId":%q,"offset":"1","count":2}`, tc.peer))
		got = tc.c.read()
		if !strings.Contains(got, `"content":"m2"`) || !strings.Contains(got, `"content":"m3"`) || strings.Count(got, `"content"`) != 2 {
			t.Fatalf("offset 1 count 2: %s", got)
		}
	}
}

// PROTOCOL §1.4: /metrics reports the gateway's gauges, the durable
// commits behind acknowledged messages, the latency of acks, pushes and
// commits, requests by command and answer code, rate-limit refusals and
// close statuses, and the Go runtime's and the process's figures.
func TestSection1_4_Metrics(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.RateLimit, c.RateBurst = 5, 5 }).node(0) // one gateway's figures, in a cluster too
	a := ts.login(ts.register("visitor_a", 0))
	b := ts.login(ts.register("agent_b", 1))
	a.send(`{"cmd":11,"to":"agent_b","chatType":2,"content":"x"}`)
	a.readUntil(`"command":12`)
	b.readUntil(`"command":11`)
	scrape := func() string {
		resp, err := http.Get(ts.http + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	m := scrape()
	for _, want := range []string{"imgate_connections 2\n", "imgate_online_users 2\n", "imgate_storage_commits_total 1\n", "imgate_undelivered_pushes_total 0\n",
		"imgate_storage_write_stalls_total 0\n", "imgate_storage_write_stall_seconds_total 0\n", `imgate_requests_total{cmd="11",code="10000"} 1` + "\n",
		"imgate_storage_commit_seconds_count 1\n", "imgate_storage_commit_batch_ops_sum 1\n", "imgate_rate_limited_total 0\n",
		"go_goroutines ", "go_memstats_heap_alloc_bytes ", "process_resident_memory_bytes ", "process_open_fds "} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %q:\n%s", want, m)
		}
	}
	// More heartbeats than the burst: some are refused 10028.
	for range 10 {
		a.send(`{"cmd":13,"hbbyte":"-127"}`)
	}
	refused := 0
	for range 10 {
		if strings.Contains(a.read(), `"code":10028`) {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no heartbeat refused past the burst")
	}
	if err := b.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")); err != nil {
		t.Fatal(err)
	}
	b.expectClose(1000)
	// The ack's and the push's latencies, receive → written, are
	// observed once the loop's write returns, which may be just after
	// the client read them; the close is counted when the connection
	// ends.
	wants := []string{"imgate_ack_latency_seconds_count 1\n", "imgate_push_latency_seconds_count 1\n", `imgate_ws_closes_total{code="1000"} 1` + "\n",
		"imgate_rate_limited_total " + strconv.Itoa(refused) + "\n", `imgate_requests_total{cmd="13",code="10028"} ` + strconv.Itoa(refused) + "\n",
		`imgate_requests_total{cmd="13",code="none"} ` + strconv.Itoa(10-refused) + "\n"}
	deadline := time.Now().Add(5 * time.Second)
	for missing := wants; len(missing) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", missing, m)
		}
		m = scrape()
		missing = slices.DeleteFunc(slices.Clone(wants), func(w string) bool { return strings.Contains(m, w) })
	}
	for _, h := range []string{"imgate_ack_latency_seconds", "imgate_push_latency_seconds", "imgate_storage_commit_seconds"} {
		if !strings.Contains(m, h+`_bucket{le="+Inf"} 1`) || strings.Contains(m, h+"_sum 0\n") {
			t.Fatalf("%s histogram:\n%s", h, m)
		}
	}
}

// PROTOCOL §1.4: with -metrics=false nothing on the hot path is observed:
// /metrics keeps the gauges and counters kept anyway, without the latency
// histograms and the requests by command.
func TestSection1_4_MetricsOff(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.Metrics = false }).node(0)
	a := ts.login(ts.register("visitor_a", 0))
	ts.register("agent_b", 1)
	a.send(`{"cmd":11,"to":"agent_b","chatType":2,"content":"x"}`)
	a.readUntil(`"command":12`)
	resp, err := http.Get(ts.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"imgate_connections 1\n", "imgate_storage_commits_total 1\n", "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("metrics lack %q:\n%s", want, b)
		}
	}
	for _, off := range []string{"imgate_ack_latency_seconds", "imgate_push_latency_seconds", "imgate_storage_commit_seconds", "imgate_requests_total"} {
		if strings.Contains(string(b), off) {
			t.Fatalf("metrics with -metrics=false have %s:\n%s", off, b)
		}
	}
}

// PROTOCOL §4.1: content is kept as sent, whatever text it holds — a NUL,
// emoji, CJK, an object — through the offline queue, history and a push,
// on every store (SQL text refuses a NUL: PostgreSQL keeps it as bytes).
func TestSection4_1_ContentKeptAsSent(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := ts.login(ta)
	contents := []string{`"a\u0000b"`, `"顾客 😀 \"q\" \\ \t"`, `{"k":"v\u0000","n":[1,2]}`}
	want := []string{"a\x00b", "顾客 😀 \"q\" \\ \t", `{"k":"v\u0000","n":[1,2]}`}
	for _, c := range contents {
		a.send(`{"cmd":11,"to":"agent_b","chatType":2,"content":` + c + `}`)
		if m := ackRE.FindStringSubmatch(a.read()); m == nil || m[1] != "10001" {
			t.Fatalf("content %s not acked 10001", c)
		}
	}
	b := ts.login(tb)
	got := pullOffline(t, b, `"fromUserId":"visitor_a"`)
	if len(got) != len(want) {
		t.Fatalf("pulled %d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if m.Content != want[i] {
			t.Fatalf("pulled content %q, want %q", m.Content, want[i])
		}
	}
	b.send(`{"cmd":19,"type":1,"fromUserId":"visitor_a"}`)
	if h := b.read(); !strings.Contains(h, `"content":"a\u0000b"`) {
		t.Fatalf("history lost the NUL: %.300s", h)
	}
	a.send(`{"cmd":11,"to":"agent_b","chatType":2,"content":"x\u0000y"}`)
	_ = a.read()
	if p := b.read(); !strings.Contains(p, `"content":"x\u0000y"`) {
		t.Fatalf("push lost the NUL: %.300s", p)
	}
}
