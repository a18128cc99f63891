//go:build !race

package router

import (
	"testing"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// TestHandleHeartbeatNoAlloc: decode, dispatch and encode of a heartbeat
// allocate nothing in steady state. The race detector allocates on its
// own, hence the build tag.
func TestHandleHeartbeatNoAlloc(t *testing.T) {
	r := newTestRouter(t)
	sess := &fakeSession{id: Identity{UID: 1, ID: "u1"}}
	out, _, _ := r.Handle(sess, heartbeatPacket, nil) // warm-up: pools, sonic's decoder
	checkHeartbeatReply(t, out)
	allocs := testing.AllocsPerRun(1000, func() {
		out, _, _ = r.Handle(sess, heartbeatPacket, out[:0])
	})
	checkHeartbeatReply(t, out)
	if allocs != 0 {
		t.Fatalf("Handle(heartbeat): %v allocs/op, want 0", allocs)
	}
}

// TestSection4_1_ChatDeliveredNoAlloc: a stored chat message's ack and
// push (PROTOCOL §4.1, §4.2), encoded on the committer and copied by the
// connections they go to, allocate nothing in steady state.
func TestSection4_1_ChatDeliveredNoAlloc(t *testing.T) {
	r := newTestRouter(t)
	r.SetHub(offlineHub{})
	sess := &nullSession{fakeSession: fakeSession{id: Identity{UID: 1, ID: "u1"}}}
	st := lockState(sess)
	st.mu.Unlock()
	res := storage.AppendResult{Msg: storage.Message{
		From: 1, To: 2, FromID: "u1", ToID: "u2", ChatType: storage.ChatPrivate,
		Content: "hello", CreateTime: 1700000000000, Seq: 42,
	}}
	deliver := func() {
		e := newEntry(codec.CmdChat)
		st.mu.Lock()
		st.q, st.proc = append(st.q, e), 1
		st.mu.Unlock()
		r.delivered(sess, st, e, res, true)
	}
	deliver() // warm-up: pools
	allocs := testing.AllocsPerRun(1000, deliver)
	if sess.frames != 1002 { // AllocsPerRun runs it once more to warm up
		t.Fatalf("%d acks sent for 1002 messages", sess.frames)
	}
	if allocs != 0 {
		t.Fatalf("delivered: %v allocs/op, want 0", allocs)
	}
}
