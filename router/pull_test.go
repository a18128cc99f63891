package router

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
	"github.com/imgate/imgate/storage/pebble"
)

// holdSession keeps the Tracker of a followed reply, so the test decides
// when its bytes "left".
type holdSession struct {
	id   Identity
	st   ConnState
	sent chan []byte
	trk  chan *Tracker
}

func (s *holdSession) Identity() Identity     { return s.id }
func (s *holdSession) Send(frame []byte) bool { s.sent <- bytes.Clone(frame); return true }
func (s *holdSession) SendTracked(f []byte, t *Tracker) bool {
	t.Acquire()
	s.sent <- bytes.Clone(f)
	s.trk <- t
	return true
}
func (s *holdSession) Close(uint16, string)                               {}
func (s *holdSession) Room() int                                          { return 4 << 20 }
func (s *holdSession) State() *ConnState                                  { return &s.st }
func (s *holdSession) SendReply(f []byte, _ int64) bool                   { return s.Send(f) }
func (s *holdSession) SetAcking()                                         {}
func (s *holdSession) Acking() bool                                       { return false }
func (s *holdSession) AckLocal(string, bool, uint64) (uint64, bool, bool) { return 0, false, false }
func (s *holdSession) Exempt()                                            {}

// PROTOCOL §4.4: a type 0 pull removes what its reply carried once the
// reply was written, and that removal takes effect before the
// connection's next request is answered: a heartbeat sent right after the
// pull waits for it, though heartbeats are answered on the loop.
func TestSection4_4_NextRequestWaitsForThePullsRemoval(t *testing.T) {
	db, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close(context.Background()); _ = db.Close() }()
	r.SetHub(offlineHub{})
	a, _ := db.Register(storage.Registration{User: storage.User{ID: "a"}, Now: 1})
	b, _ := db.Register(storage.Registration{User: storage.User{ID: "b"}, Now: 1})
	ch := make(chan storage.AppendResult, 1)
	_ = db.AppendPrivate(storage.Message{From: a.UID, To: b.UID, FromID: "a", ToID: "b", ChatType: storage.ChatPrivate, Content: "hi"},
		storage.AppendOptions{Offline: true}, func(res storage.AppendResult) { ch <- res })
	if res := <-ch; res.Err != nil {
		t.Fatal(res.Err)
	}
	s := &holdSession{id: Identity{UID: b.UID, ID: "b"}, sent: make(chan []byte, 4), trk: make(chan *Tracker, 1)}
	if out, _, _ := r.Handle(s, []byte(`{"cmd":19,"type":0,"fromUserId":"a"}`), nil); len(out) != 0 {
		t.Fatalf("pull answered on the loop: %s", out)
	}
	var trk *Tracker
	select {
	case reply := <-s.sent:
		if !bytes.Contains(reply, []byte(`"content":"hi"`)) {
			t.Fatalf("pull reply %s", reply)
		}
		trk = <-s.trk
	case <-time.After(10 * time.Second):
		t.Fatal("no pull reply")
	}
	if out, _, _ := r.Handle(s, heartbeatPacket, nil); len(out) != 0 {
		t.Fatalf("heartbeat answered while the pull's removal is pending: %s", out)
	}
	select {
	case f := <-s.sent:
		t.Fatalf("heartbeat reply %s before the pull's reply was written", f)
	default:
	}
	if res, _ := db.ReadOffline(b.UID, storage.QueueQuery{Peer: a.UID, Limit: 10}); len(res.Friends[0].Msgs) != 1 {
		t.Fatal("removed before the reply was written")
	}
	trk.Done(true) // the reply's bytes left
	select {
	case f := <-s.sent:
		checkHeartbeatReply(t, f)
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat reply after the pull's removal")
	}
	if res, _ := db.ReadOffline(b.UID, storage.QueueQuery{Peer: a.UID, Limit: 10}); len(res.Friends[0].Msgs) != 0 {
		t.Fatal("the heartbeat was answered before the removal took effect")
	}
}

// PROTOCOL §4.1: replies leave in request order. An ack encoded in a
// buffer its encoder reuses (borrowFrame) that must wait for an earlier
// reply is kept as it was, not as the buffer later reads.
func TestSection4_1_HeldBackAckKeepsItsBytes(t *testing.T) {
	r := newTestRouter(t)
	s := &holdSession{id: Identity{UID: 1, ID: "a"}, sent: make(chan []byte, 4)}
	st := lockState(s)
	first, second := newEntry(codec.CmdChat), newEntry(codec.CmdChat)
	st.q, st.proc = append(st.q, first, second), 2 // both running: acks to come
	st.mu.Unlock()

	buf := []byte("second ack")
	r.replySent(st, second, buf)
	select {
	case f := <-s.sent:
		t.Fatalf("%q sent before the first reply", f)
	default:
	}
	copy(buf, "next frame") // the encoder's next use of its buffer
	r.replySent(st, first, []byte("first ack"))
	for _, want := range []string{"first ack", "second ack"} {
		if got := <-s.sent; string(got) != want {
			t.Fatalf("sent %q, want %q", got, want)
		}
	}
}
