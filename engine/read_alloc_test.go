//go:build !race

package engine

import (
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/imgate/imgate/router"
)

// readConn is a gnet.Conn whose inbound buffer is in, refilled from a
// template before each read, and whose socket takes everything.
type readConn struct {
	gnet.Conn
	in      []byte
	off     int
	written int
}

func (r *readConn) Peek(int) ([]byte, error) { return r.in[r.off:], nil }
func (r *readConn) Discard(n int) (int, error) {
	r.off += n
	return n, nil
}
func (r *readConn) Write(b []byte) (int, error) {
	r.written += len(b)
	return len(b), nil
}
func (r *readConn) OutboundBuffered() int { return 0 }
func (r *readConn) InboundBuffered() int  { return len(r.in) - r.off }

// newHeartbeatConn returns an open conn on a real router (heartbeats never
// reach storage) and a masked heartbeat frame.
func newHeartbeatConn(tb testing.TB) (*conn, *readConn, []byte) {
	tb.Helper()
	r, err := router.New(nil, router.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Close(ctx)
	})
	e, err := New(r, Options{Addr: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	gc := &readConn{}
	c := &conn{id: 1, e: e, gc: gc, lf: e.flushers.of(&taskLoop{})}
	c.phase.Store(int32(phaseOpen))
	id := router.Identity{UID: 1, ID: "u1"}
	c.ident.Store(&id)
	frame := ws.MustCompileFrame(ws.MaskFrameWith(ws.NewTextFrame([]byte(`{"cmd":13}`)), [4]byte{1, 2, 3, 4}))
	return c, gc, frame
}

// TestReadHeartbeatNoAlloc: in steady state a heartbeat costs no
// allocation on the whole engine read path: frame read and unmask,
// rate limit, router.Handle, reply write (issue 6).
func TestReadHeartbeatNoAlloc(t *testing.T) {
	c, gc, frame := newHeartbeatConn(t)
	c.e.opts.RateLimit, c.e.opts.RateBurst = 1e9, 1e9 // admitted, through the bucket
	for _, n := range []int{1, 8} {
		template := make([]byte, 0, n*len(frame))
		for range n {
			template = append(template, frame...)
		}
		gc.in = make([]byte, len(template))
		read := func() {
			copy(gc.in, template) // readFrames unmasks in place
			gc.off, gc.written = 0, 0
			c.readFrames(gc)
			if gc.off != len(template) || gc.written == 0 {
				t.Fatalf("read %d of %d bytes, wrote %d", gc.off, len(template), gc.written)
			}
		}
		read() // warm-up: pools, sonic, the rate bucket
		if allocs := testing.AllocsPerRun(1000, read); allocs != 0 {
			t.Errorf("%d heartbeats per read: %v allocs/op, want 0", n, allocs)
		}
	}
}

func BenchmarkReadHeartbeat(b *testing.B) {
	c, gc, frame := newHeartbeatConn(b)
	c.e.opts.RateLimit = -1 // a benchmark loop would be refused
	gc.in = make([]byte, len(frame))
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(gc.in, frame)
		gc.off = 0
		c.readFrames(gc)
	}
}
