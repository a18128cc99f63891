//go:build !race

package router

import "testing"

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
