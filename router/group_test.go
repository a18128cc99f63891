package router

import (
	"context"
	"testing"
	"time"

	"github.com/imgate/imgate/storage"
	"github.com/imgate/imgate/storage/pebble"
)

// PROTOCOL §5 with §4.3: a group message pushed to members online when it
// was stored, whose connections die before writing it, is queued for
// them; members whose connection wrote it get nothing queued.
func TestSection5_UnwrittenGroupPushIsQueued(t *testing.T) {
	for _, write := range []bool{false, true} {
		db, err := pebble.Open(t.TempDir(), pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(db, Options{})
		if err != nil {
			t.Fatal(err)
		}
		hub := &fakeHub{write: write, done: make(chan struct{}, 8)}
		r.SetHub(hub)
		var uids []uint64
		for _, id := range []string{"a", "b", "c"} {
			u, err := db.Register(storage.Registration{User: storage.User{ID: id}, Now: 1})
			if err != nil {
				t.Fatal(err)
			}
			uids = append(uids, u.UID)
			if err := r.wait(func(done func(error)) error {
				return db.Join("g", u.UID, 1, 10, func(_ uint64, _ int, err error) { done(err) })
			}); err != nil {
				t.Fatal(err)
			}
		}
		gid, err := db.GroupByID("g")
		if err != nil {
			t.Fatal(err)
		}
		s := &pushSession{id: Identity{UID: uids[0], ID: "a"}, sent: make(chan []byte, 4)}
		r.Handle(s, []byte(`{"cmd":11,"chatType":1,"groupId":"g","content":"hello"}`), nil)
		select {
		case <-s.sent: // the ack
		case <-time.After(10 * time.Second):
			t.Fatal("no ack")
		}
		for range 2 { // b's and c's pushes were followed; a's own copy is not
			select {
			case <-hub.done:
			case <-time.After(10 * time.Second):
				t.Fatal("push never followed")
			}
		}
		// A later commit carries the settling (see the private case).
		if err := r.wait(func(done func(error)) error { return db.MarkRead(uids[1], uids[0], done) }); err != nil {
			t.Fatal(err)
		}
		for i, uid := range uids {
			res, err := db.ReadOffline(uid, storage.QueueQuery{Group: gid, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, pg := range res.Groups {
				n += len(pg.Msgs)
			}
			want := 1
			if write || i == 0 {
				want = 0 // written, or the sender's own message
			}
			if n != want {
				t.Fatalf("write=%v: member %d has %d queued, want %d", write, i, n, want)
			}
		}
		if want := map[bool]uint64{false: 2, true: 0}[write]; r.Undelivered() != want {
			t.Fatalf("write=%v: undelivered %d, want %d", write, r.Undelivered(), want)
		}
		_ = r.Close(context.Background())
		_ = db.Close()
	}
}
