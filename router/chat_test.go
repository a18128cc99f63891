package router

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/imgate/imgate/storage"
	"github.com/imgate/imgate/storage/pebble"
)

func TestTracker(t *testing.T) {
	for _, tc := range []struct {
		name string
		done []bool // one Done per accepting connection
		lost bool
	}{
		{"no connection", nil, true},
		{"written", []bool{true}, false},
		{"one of two written", []bool{false, true}, false},
		{"all dropped", []bool{false, false, false}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lost := 0
			tr := NewTracker(func(written bool) {
				if !written {
					lost++
				}
			})
			for range tc.done {
				tr.Acquire()
			}
			for _, w := range tc.done[:len(tc.done)/2] {
				tr.Done(w)
			}
			tr.Release()
			for _, w := range tc.done[len(tc.done)/2:] {
				tr.Done(w)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.lost]; lost != want {
				t.Fatalf("onLost ran %d times, want %d", lost, want)
			}
		})
	}
}

// countLost counts outcomes.
type countLost struct{ lost, recycled int }

func (c *countLost) Followed(_ *Tracker, written bool) {
	if !written {
		c.lost++
	}
	c.recycled++
}

// PROTOCOL §4.3: a recycled push tracker starts afresh, so a push that
// was written does not hide the loss of the next one.
func TestTrackerReuse(t *testing.T) {
	var tr Tracker
	owner := &countLost{}
	for i, written := range []bool{true, false, true, false} {
		tr.Init(owner)
		tr.Acquire()
		tr.Release()
		tr.Done(written)
		wantLost := (i + 1) / 2
		if owner.lost != wantLost || owner.recycled != i+1 {
			t.Fatalf("use %d (written %v): lost %d recycled %d, want %d and %d", i, written, owner.lost, owner.recycled, wantLost, i+1)
		}
	}
}

// fakeHub is online for everyone; its connections accept the push and
// then die before writing it (or write it, if write is set).
type fakeHub struct {
	write bool
	done  chan struct{} // told when a followed push was reported
	mu    sync.Mutex
	calls int
}

func (h *fakeHub) Online(uint64) bool                                    { return true }
func (h *fakeHub) Ack(uint64, string, bool, uint64, Session)             {}
func (h *fakeHub) Disconnect(uint64, uint16, string) int                 { return 0 }
func (h *fakeHub) DisconnectTerminal(uint64, string, uint16, string) int { return 0 }
func (h *fakeHub) Deliver(_ uint64, _ []byte, _ Session, t *Tracker) int {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	if t == nil {
		return 1
	}
	t.Acquire()
	go func() { // the connection's loop, later
		t.Done(h.write)
		h.done <- struct{}{}
	}()
	return 1
}

type pushSession struct {
	id   Identity
	st   ConnState
	sent chan []byte
}

func (s *pushSession) Identity() Identity     { return s.id }
func (s *pushSession) Send(frame []byte) bool { s.sent <- bytes.Clone(frame); return true }
func (s *pushSession) SendTracked(f []byte, t *Tracker) bool {
	t.Acquire()
	t.Done(true)
	return s.Send(f)
}
func (s *pushSession) Close(uint16, string)                               {}
func (s *pushSession) Room() int                                          { return 4 << 20 }
func (s *pushSession) State() *ConnState                                  { return &s.st }
func (s *pushSession) SendReply(f []byte, _ int64) bool                   { return s.Send(f) }
func (s *pushSession) SetAcking()                                         {}
func (s *pushSession) Acking() bool                                       { return false }
func (s *pushSession) AckLocal(string, bool, uint64) (uint64, bool, bool) { return 0, false, false }
func (s *pushSession) Exempt()                                            {}

// PROTOCOL §4.3: a message pushed to a connection that dies before writing
// it stays in the offline queue; a written one leaves it.
func TestSection4_3_UnwrittenPushIsQueued(t *testing.T) {
	for _, write := range []bool{false, true} {
		db, err := pebble.Open(t.TempDir(), pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(db, Options{})
		if err != nil {
			t.Fatal(err)
		}
		hub := &fakeHub{write: write, done: make(chan struct{}, 1)}
		r.SetHub(hub)
		a, _ := db.Register(storage.Registration{User: storage.User{ID: "a"}, Now: 1})
		b, _ := db.Register(storage.Registration{User: storage.User{ID: "b"}, Now: 1})
		s := &pushSession{id: Identity{UID: a.UID, ID: "a"}, sent: make(chan []byte, 4)}
		out, _, _ := r.Handle(s, []byte(`{"cmd":11,"to":"b","chatType":2,"content":"hello"}`), nil)
		if len(out) != 0 {
			t.Fatalf("chat answered on the loop: %q", out)
		}
		select {
		case <-s.sent: // the ack
		case <-time.After(10 * time.Second):
			t.Fatal("no ack")
		}
		select {
		case <-hub.done: // the fake connection reported the push's outcome
		case <-time.After(10 * time.Second):
			t.Fatal("push never followed")
		}
		// The committer ran the append's completion (the creator's
		// Release) before it takes another batch, and the outcome's
		// removal rides on that batch: once a later commit is done, both
		// are settled.
		done := make(chan error, 1)
		if err := db.MarkRead(b.UID, a.UID, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		<-done
		want, lost := 1, uint64(1)
		if write {
			want, lost = 0, 0
		}
		if r.Undelivered() != lost {
			t.Fatalf("write=%v: undelivered %d", write, r.Undelivered())
		}
		res, err := db.ReadOffline(b.UID, storage.QueueQuery{Peer: a.UID, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(res.Friends[0].Msgs); n != want {
			t.Fatalf("write=%v: offline queue holds %d", write, n)
		}
		_ = r.Close(context.Background())
		_ = db.Close()
	}
}

// PROTOCOL §4.1 content: a message keeps the text of its request without
// a copy only when the text is most of the request: a short text padded
// with an unknown member must not keep the whole request alive while the
// message waits for its commit (the queues count the text).
func TestSection4_1_ContentKeepsNoLongRequest(t *testing.T) {
	inside := func(s string, payload []byte) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(payload)))
		return p >= lo && p < lo+uintptr(len(payload))
	}
	for _, tc := range []struct {
		name  string
		pad   int
		alias bool
	}{
		{"short request", 0, true},
		{"padded within the slack", maxAliasSlack - 64, true},
		{"padded past the slack", 60 << 10, false},
	} {
		payload := []byte(`{"cmd":11,"content":"hello","pad":"` + strings.Repeat("a", tc.pad) + `"}`)
		raw := payload[bytes.Index(payload, []byte(`"hello"`)):][:len(`"hello"`)]
		got, err := contentText(raw, len(payload))
		if err != nil || got != "hello" {
			t.Fatalf("%s: %q, %v", tc.name, got, err)
		}
		if inside(got, payload) != tc.alias {
			t.Errorf("%s (%d bytes): aliases the request = %v, want %v", tc.name, len(payload), !tc.alias, tc.alias)
		}
	}
}

// PROTOCOL §4.1 content: a string is stored as its text, whichever path
// decodes it; objects and arrays as compact JSON.
func TestSection4_1_ContentText(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`"hello"`, "hello"},
		{`"你好 🙂"`, "你好 🙂"},
		{`"a\"b\\c\n\u00e9"`, "a\"b\\c\né"},
		{"\"bad \xff utf8\"", "bad \ufffd utf8"},
		{`""`, ""},
		{` {"a": [1, 2]} `, `{"a":[1,2]}`},
		{`42`, "42"},
	} {
		got, err := contentText([]byte(tc.raw), len(tc.raw))
		if err != nil || got != tc.want {
			t.Errorf("contentText(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
	for _, raw := range []string{``, `null`, ` null `} {
		if _, err := contentText([]byte(raw), len(raw)); err == nil {
			t.Errorf("contentText(%q) accepted", raw)
		}
	}
}
