package router

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/imgate/imgate/storage/pebble"
)

// fakeSession is a Session that records what the router asks of it.
type fakeSession struct {
	id Identity
	st ConnState
	mu struct {
		sync.Mutex
		sent   [][]byte
		closed []uint16
	}
}

var _ Session = (*fakeSession)(nil)

func (s *fakeSession) Identity() Identity { return s.id }

func (s *fakeSession) Send(frame []byte) bool {
	s.mu.Lock()
	s.mu.sent = append(s.mu.sent, frame)
	s.mu.Unlock()
	return true
}

func (s *fakeSession) SendTracked(frame []byte, t *Tracker) bool {
	t.Acquire()
	defer t.Done(true)
	return s.Send(frame)
}

func (s *fakeSession) Room() int                                          { return 4 << 20 }
func (s *fakeSession) SendReply(f []byte, _ int64) bool                   { return s.Send(f) }
func (s *fakeSession) SetAcking()                                         {}
func (s *fakeSession) Acking() bool                                       { return false }
func (s *fakeSession) AckLocal(string, bool, uint64) (uint64, bool, bool) { return 0, false, false }
func (s *fakeSession) Exempt()                                            {}
func (s *fakeSession) State() *ConnState                                  { return &s.st }

func (s *fakeSession) Close(code uint16, reason string) {
	s.mu.Lock()
	s.mu.closed = append(s.mu.closed, code)
	s.mu.Unlock()
}

func (s *fakeSession) calls() (sent, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.sent), len(s.mu.closed)
}

// newTestRouter opens a real store in a temporary directory and a Router
// over it; both are closed when the test ends.
func newTestRouter(tb testing.TB) *Router {
	tb.Helper()
	db, err := pebble.Open(tb.TempDir(), pebble.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := New(db, Options{})
	if err != nil {
		_ = db.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			tb.Errorf("router close: %v", err)
		}
		if err := db.Close(); err != nil {
			tb.Errorf("db close: %v", err)
		}
	})
	return r
}

var heartbeatPacket = []byte(`{"cmd":13,"hbbyte":"-127"}`)

// checkHeartbeatReply checks that out is exactly one unmasked, final TEXT
// frame holding the heartbeat reply.
func checkHeartbeatReply(tb testing.TB, out []byte) {
	tb.Helper()
	rd := bytes.NewReader(out)
	h, err := ws.ReadHeader(rd)
	if err != nil {
		tb.Fatalf("reply is not a frame: %v (% x)", err, out)
	}
	if !h.Fin || h.OpCode != ws.OpText || h.Masked || h.Rsv != 0 {
		tb.Fatalf("reply header %+v, want a final unmasked TEXT frame", h)
	}
	payload := out[len(out)-rd.Len():]
	if int64(len(payload)) != h.Length {
		tb.Fatalf("frame length %d, %d payload bytes follow: not exactly one frame", h.Length, len(payload))
	}
	const prefix, suffix = `{"command":13,"data":{"createTime":`, `,"hbbyte":-128}}`
	if !bytes.HasPrefix(payload, []byte(prefix)) || !bytes.HasSuffix(payload, []byte(suffix)) {
		tb.Fatalf("heartbeat reply %s", payload)
	}
	ms := payload[len(prefix) : len(payload)-len(suffix)]
	if len(ms) < 13 || bytes.IndexFunc(ms, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		tb.Fatalf("createTime %q is not milliseconds since the epoch", ms)
	}
}

func TestHandleHeartbeat(t *testing.T) {
	r := newTestRouter(t)
	sess := &fakeSession{id: Identity{UID: 1, ID: "u1"}}
	for _, p := range []string{`{"cmd":13,"hbbyte":"-127"}`, `{"cmd":"13"}`, `{"cmd":13,"hbbyte":-127,"extra":[1]}`} {
		out, _, _ := r.Handle(sess, []byte(p), nil)
		checkHeartbeatReply(t, out)
	}
	// Replies are appended after what out already holds.
	out, _, _ := r.Handle(sess, heartbeatPacket, []byte("prev"))
	if !bytes.HasPrefix(out, []byte("prev")) {
		t.Fatalf("Handle dropped the prefix of out")
	}
	checkHeartbeatReply(t, out[4:])
	if sent, closed := sess.calls(); sent != 0 || closed != 0 {
		t.Fatalf("heartbeat used the session: %d sends, %d closes", sent, closed)
	}
}

func BenchmarkHandleHeartbeat(b *testing.B) {
	r := newTestRouter(b)
	sess := &fakeSession{id: Identity{UID: 1, ID: "u1"}}
	out, _, _ := r.Handle(sess, heartbeatPacket, nil) // warm-up
	checkHeartbeatReply(b, out)
	b.ReportAllocs()
	b.SetBytes(int64(len(heartbeatPacket)))
	for b.Loop() {
		out, _, _ = r.Handle(sess, heartbeatPacket, out[:0])
	}
	checkHeartbeatReply(b, out)
}
