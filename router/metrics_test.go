package router

import (
	"testing"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// nullSession takes frames and keeps none.
type nullSession struct {
	fakeSession
	frames int
}

func (s *nullSession) Send([]byte) bool                 { s.frames++; return true }
func (s *nullSession) SendReply(f []byte, _ int64) bool { return s.Send(f) }

// deliverChat runs r.delivered for one stored chat message as a worker's
// entry (counted when Options.RequestCounts is set): its ack to sess, its
// push to nobody (offlineHub).
func deliverChat(r *Router, sess *nullSession, st *ConnState, res storage.AppendResult) {
	e := newEntry(codec.CmdChat)
	e.count = r.counts != nil
	st.mu.Lock()
	st.q, st.proc = append(st.q, e), 1
	st.mu.Unlock()
	r.delivered(sess, st, e, res, true)
}

// chatRouter is a router counting requests (counts) or not, whose pushes
// reach nobody, and a session of user 1 to deliver chats to.
func chatRouter(tb testing.TB, counts bool) (*Router, *nullSession, *ConnState) {
	r := newTestRouter(tb)
	if counts {
		r.counts = new(requestCounts)
	}
	r.SetHub(offlineHub{})
	sess := &nullSession{fakeSession: fakeSession{id: Identity{UID: 1, ID: "u1"}}}
	st := lockState(sess)
	st.mu.Unlock()
	return r, sess, st
}

func chatResult() storage.AppendResult {
	return storage.AppendResult{Msg: storage.Message{
		From: 1, To: 2, FromID: "u1", ToID: "u2", ChatType: storage.ChatPrivate,
		Content: "hello", CreateTime: 1700000000000, Seq: 42,
	}}
}

// PROTOCOL §1.4: requests are counted by command and answer code once
// their reply leaves, only with Options.RequestCounts.
func TestSection1_4_RequestCounts(t *testing.T) {
	for _, on := range []bool{false, true} {
		r, sess, st := chatRouter(t, on)
		for range 3 {
			deliverChat(r, sess, st, chatResult())
		}
		out, _, _ := r.Handle(sess, heartbeatPacket, nil)
		checkHeartbeatReply(t, out)
		got := map[[2]int]uint64{}
		r.RequestCounts(func(cmd codec.Cmd, code codec.Code, n uint64) { got[[2]int{int(cmd), int(code)}] = n })
		want := map[[2]int]uint64{{11, 10000}: 3, {13, 0}: 1}
		if !on {
			want = map[[2]int]uint64{}
		}
		if len(got) != len(want) || got[[2]int{11, 10000}] != want[[2]int{11, 10000}] || got[[2]int{13, 0}] != want[[2]int{13, 0}] {
			t.Fatalf("RequestCounts on=%v: %v, want %v", on, got, want)
		}
	}
}

// BenchmarkChatDelivered is the router's part of a chat message once it
// is durable (ack encoded and sent, push encoded, the request counted),
// without and with request counts: the difference is what counting adds
// per message (BENCHMARKS.md, issue 16).
func BenchmarkChatDelivered(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "counts=off"
		if on {
			name = "counts=on"
		}
		b.Run(name, func(b *testing.B) {
			r, sess, st := chatRouter(b, on)
			res := chatResult()
			b.ReportAllocs()
			for b.Loop() {
				deliverChat(r, sess, st, res)
			}
		})
	}
}
