package engine

import (
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/imgate/imgate/router"
)

// scheduleConn is a gnet.Conn whose AsyncWritev only records the callback,
// so a test decides when (and whether) the loop flushes.
type scheduleConn struct {
	gnet.Conn
	cbs     []gnet.AsyncCallback
	written [][]byte
}

func (s *scheduleConn) AsyncWritev(_ [][]byte, cb gnet.AsyncCallback) error {
	s.cbs = append(s.cbs, cb)
	return nil
}
func (s *scheduleConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		s.written = append(s.written, b)
		n += len(b)
	}
	return n, nil
}
func (s *scheduleConn) OutboundBuffered() int { return 0 }

func newTestConn() (*conn, *scheduleConn) {
	gc := &scheduleConn{}
	e := &Engine{opts: Options{MaxPending: 1 << 20}.withDefaults()}
	c := &conn{e: e, gc: gc}
	c.phase.Store(int32(phaseOpen))
	c.out.init(c)
	return c, gc
}

// PROTOCOL §4.3: frames queued on a connection that dies before its flush
// are reported dropped; flushed ones written. One flush writes the burst.
func TestOutboxTracksDelivery(t *testing.T) {
	t.Run("flushed", func(t *testing.T) {
		c, gc := newTestConn()
		lost := false
		tr := router.NewTracker(func() { lost = true })
		for _, f := range []string{"a", "b", "c"} {
			if !c.out.send([]byte(f), tr) {
				t.Fatal("send refused")
			}
		}
		tr.Release()
		if len(gc.cbs) != 1 {
			t.Fatalf("%d flushes scheduled for one burst, want 1", len(gc.cbs))
		}
		_ = gc.cbs[0](gc, nil)
		if lost || len(gc.written) != 3 {
			t.Fatalf("lost=%v written=%q", lost, gc.written)
		}
	})
	t.Run("connection died first", func(t *testing.T) {
		c, gc := newTestConn()
		lost := 0
		tr := router.NewTracker(func() { lost++ })
		c.out.send([]byte("a"), tr)
		tr.Release()
		c.closed.Store(true)
		c.out.discard() // what OnClose does
		_ = gc.cbs[0](gc, nil)
		if lost != 1 || len(gc.written) != 0 {
			t.Fatalf("lost=%d written=%q", lost, gc.written)
		}
		if c.out.send([]byte("b"), nil) {
			t.Fatal("a dead connection accepted a frame")
		}
	})
	t.Run("over the cap", func(t *testing.T) {
		c, _ := newTestConn()
		c.e.opts.MaxPending = 4
		lost := 0
		tr := router.NewTracker(func() { lost++ })
		c.out.send([]byte("abc"), tr)
		if c.out.send([]byte("defg"), tr) {
			t.Fatal("frame over the cap accepted")
		}
		tr.Release()
		c.out.discard()
		if lost != 1 {
			t.Fatalf("lost=%d", lost)
		}
	})
}
