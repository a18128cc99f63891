package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var joinNotifyRE = regexp.MustCompile(`^\{"command":(9|10),"data":\{"createTime":\d+,"group":"(\w+)","user":\{"avatar":"","id":"(\w+)","nick":""\}\}\}$`)

// PROTOCOL §5: join, notify, exit envelopes; the cap; membership kept
// across reconnects and restarts.
func TestSection5_JoinExit(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxGroup = 2 })
	ta, tb, tc := ts.register("a", 0), ts.register("b", 1), ts.register("c", 1)
	a, b, c := ts.login(ta), ts.login(tb), ts.login(tc)
	a.send(`{"cmd":7,"groupId":"g1"}`)
	a.expect(`{"code":10011,"command":8,"data":{"group":"g1","result":1},"msg":"join group ok! 加入群组成功!"}`)
	b.send(`{"cmd":"7","group_id":"g1"}`)
	b.expect(`{"code":10011,"command":8,"data":{"group":"g1","result":1},"msg":"join group ok! 加入群组成功!"}`)
	if m := joinNotifyRE.FindStringSubmatch(a.read()); m == nil || m[1] != "9" || m[3] != "b" {
		t.Fatalf("join notice %v", m)
	}
	c.send(`{"cmd":7,"groupId":"g1"}`)
	c.expect(`{"code":10012,"command":8,"data":{"group":"g1","result":3},"msg":"join group failed! 加入群组失败!"}`)
	c.send(`{"cmd":7,"groupId":""}`)
	c.expect(`{"code":10012,"command":8,"msg":"join group failed! 加入群组失败!"}`)
	c.send(`{"cmd":7}`)
	c.expect(`{"code":10012,"command":8,"msg":"join group failed! 加入群组失败!"}`)

	// Membership survives a restart: b can still post to g1.
	ts.restart()
	b = ts.login(tb)
	b.send(`{"cmd":11,"chatType":1,"groupId":"g1","content":"still here"}`)
	if m := ackRE.FindStringSubmatch(b.read()); m == nil || m[1] != "10000" {
		t.Fatalf("member after restart: %v", m)
	}
	b.read() // b's own push
	a = ts.login(ta)
	// Leave is cmd 29 now: 21 is the receipt ack of §7.2.
	b.send(`{"cmd":29,"groupId":"g1"}`)
	b.expect(`{"code":10027,"command":30,"msg":"exit group ok 退出群组成功"}`)
	if m := joinNotifyRE.FindStringSubmatch(a.read()); m == nil || m[1] != "10" || m[3] != "b" {
		t.Fatalf("exit notice %v", m)
	}
	// A leave by a non-member is answered and tells nobody: a's next
	// frame is its own join's answer, not a notice.
	c = ts.login(tc)
	c.send(`{"cmd":29,"groupId":"g1"}`)
	c.expect(`{"code":10027,"command":30,"msg":"exit group ok 退出群组成功"}`)
	c.send(`{"cmd":29,"groupId":""}`)
	c.expect(`{"code":10012,"command":30,"msg":"join group failed! 加入群组失败!"}`)
	a.send(`{"cmd":7,"groupId":"g1"}`)
	a.expect(`{"code":10011,"command":8,"data":{"group":"g1","result":1},"msg":"join group ok! 加入群组成功!"}`)
	b.send(`{"cmd":11,"chatType":1,"groupId":"g1","content":"gone"}`)
	b.expect(`{"code":10024,"command":12,"msg":"forbidden 无权操作"}`)
	// The freed place lets c in.
	c.send(`{"cmd":7,"groupId":"g1"}`)
	c.expect(`{"code":10011,"command":8,"data":{"group":"g1","result":1},"msg":"join group ok! 加入群组成功!"}`)
}

// PROTOCOL §5 group chat: every live connection (the sender's too) gets
// the push with groupId; the offline member finds it in data.groups and
// then it is gone; history by groupId; non-members are refused.
func TestSection5_GroupChat(t *testing.T) {
	ts := newTestServer(t)
	ta, tb, tc, tx := ts.register("a", 0), ts.register("b", 1), ts.register("c", 1), ts.register("x", 0)
	a := ts.login(ta)
	b1, b2 := ts.login(tb), ts.login(tb)
	c := ts.login(tc)
	for _, m := range []*wsClient{a, b1, c} {
		m.send(`{"cmd":7,"groupId":"team"}`)
		if got := m.read(); !strings.HasPrefix(got, `{"code":10011,`) {
			t.Fatalf("join: %s", got)
		}
	}
	// Notices go to the members already in, not to the joiner's own
	// connections: a hears of b and c, b's two connections of c.
	for _, cl := range []*wsClient{a, a, b1, b2} {
		if m := joinNotifyRE.FindStringSubmatch(cl.read()); m == nil || m[1] != "9" {
			t.Fatalf("join notice %v", m)
		}
	}
	c.c.Close() // c goes offline
	waitFor(t, "c offline", func() bool { return !ts.online(uidOf(t, ts, "c")) })

	a.send(`{"cmd":11,"chatType":1,"groupId":"team","content":"hello team","extras":{"x":1}}`)
	m := ackRE.FindStringSubmatch(a.read())
	if m == nil || m[1] != "10000" || m[4] != "1" {
		t.Fatalf("group ack %v", m)
	}
	want := `{"command":11,"data":{"chatType":1,"cmd":11,"content":"hello team","createTime":` + m[2] + `,"extras":{"x":1},"from":"a","groupId":"team","id":"` + m[3] + `","msgType":0,"seq":1}}`
	for _, cl := range []*wsClient{a, b1, b2} {
		cl.expect(want)
	}
	x := ts.login(tx)
	x.send(`{"cmd":11,"chatType":1,"groupId":"team","content":"let me in"}`)
	x.expect(`{"code":10024,"command":12,"msg":"forbidden 无权操作"}`)
	x.send(`{"cmd":19,"type":1,"groupId":"team"}`)
	x.expect(`{"code":10024,"command":20,"msg":"forbidden 无权操作"}`)

	c = ts.login(tc)
	c.send(`{"cmd":19,"type":0}`)
	var r struct {
		Code int
		Data struct {
			Groups map[string][]struct{ Content, GroupID string }
		}
	}
	if err := json.Unmarshal([]byte(c.read()), &r); err != nil || r.Code != 10016 || len(r.Data.Groups["team"]) != 1 || r.Data.Groups["team"][0].Content != "hello team" {
		t.Fatalf("offline member: %+v %v", r, err)
	}
	c.send(`{"cmd":19,"type":0,"groupId":"team"}`)
	c.expect(`{"code":10016,"command":20,"data":{"friends":{},"groups":{},"userid":"c"},"msg":"get user message ok! 获取离线消息成功!"}`)
	c.send(`{"cmd":19,"type":1,"groupId":"team"}`)
	if got := c.read(); !strings.Contains(got, `"groups":{"team":[{"chatType":1`) || !strings.Contains(got, `"content":"hello team"`) {
		t.Fatalf("group history %s", got)
	}
}

// PROTOCOL §4.5: the sender recalls within the window; both sides get
// command 16; the offline queue drops it and history keeps a marker; too
// late, or someone else's message, fails with 10026.
func TestSection4_5_Recall(t *testing.T) {
	ts := newTestServer(t)
	ta, tb := ts.register("a", 0), ts.register("b", 1)
	a, a2 := ts.login(ta), ts.login(ta)
	a.send(`{"cmd":11,"to":"b","chatType":2,"content":"oops"}`)
	m := ackRE.FindStringSubmatch(a.read())
	a2.read() // the copy for a's other connection
	a.send(`{"cmd":11,"to":"b","chatType":2,"content":"kept"}`)
	kept := ackRE.FindStringSubmatch(a.read())
	a2.read()

	b := ts.login(tb)
	b.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, m[3]))
	b.expect(`{"code":10026,"command":16,"msg":"recall failed 撤回失败"}`)

	ts.clock.Advance(time.Minute)
	a.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, m[3]))
	a.expect(`{"code":10025,"command":16,"msg":"recall ok 撤回成功"}`)
	notice := `{"command":16,"data":{"from":"a","id":"` + m[3] + `","seq":1,"to":"b"}}`
	for _, cl := range []*wsClient{a, a2, b} {
		cl.expect(notice)
	}
	a.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, m[3]))
	a.expect(`{"code":10026,"command":16,"msg":"recall failed 撤回失败"}`)

	b.send(`{"cmd":19,"type":2,"fromUserId":"a"}`)
	if got := b.read(); strings.Contains(got, m[3]) || !strings.Contains(got, kept[3]) {
		t.Fatalf("offline queue after recall: %s", got)
	}
	b.send(`{"cmd":19,"type":1,"fromUserId":"a"}`)
	if got := b.read(); !strings.Contains(got, `"content":"","createTime":`+m[2]+`,"from":"a","id":"`+m[3]+`","msgType":0,"recalled":true,"seq":1`) {
		t.Fatalf("history marker: %s", got)
	}
	ts.clock.Advance(2 * time.Minute)
	a.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, kept[3]))
	a.expect(`{"code":10026,"command":16,"msg":"recall failed 撤回失败"}`)
	a.send(`{"cmd":15,"id":"nothex"}`)
	a.expect(`{"code":10026,"command":16,"msg":"recall failed 撤回失败"}`)
}
