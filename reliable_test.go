package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
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
