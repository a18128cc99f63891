package engine

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/router"
)

// taskLoop is a gnet.EventLoop whose Execute only records the task, so a
// test decides when (and whether) the loop runs it.
// The watch's timer (outbound.go) queues tasks from its own goroutine:
// those are kept apart and never run, since the tests drive the watch by
// hand (conn.confirm).
type taskLoop struct {
	gnet.EventLoop
	tasks   []gnet.Runnable
	mu      sync.Mutex
	watches int
}

func (l *taskLoop) Execute(_ context.Context, r gnet.Runnable) error {
	if _, ok := r.(watchTask); ok {
		l.mu.Lock()
		l.watches++
		l.mu.Unlock()
		return nil
	}
	l.tasks = append(l.tasks, r)
	return nil
}

// run runs the recorded tasks, as the loop would, and forgets them.
func (l *taskLoop) run() int {
	n := len(l.tasks)
	for len(l.tasks) > 0 {
		r := l.tasks[0]
		l.tasks = l.tasks[1:]
		_ = r.Run(context.Background())
	}
	return n
}

// iovMax is Linux's IOV_MAX: a writev of more buffers fails with EINVAL.
const iovMax = 1024

// scheduleConn is a gnet.Conn that records what it writes. The last
// buffered bytes handed to it stay "in gnet's buffer", unsent.
type scheduleConn struct {
	gnet.Conn
	written  [][]byte
	writevs  int
	cbs      []gnet.AsyncCallback
	buffered int
}

func (s *scheduleConn) Write(b []byte) (int, error) {
	s.written = append(s.written, bytes.Clone(b)) // gnet copies what it keeps
	return len(b), nil
}
func (s *scheduleConn) Discard(int) (int, error) { return 0, nil }
func (s *scheduleConn) RemoteAddr() net.Addr     { return nil }
func (s *scheduleConn) Fd() int                  { return -1 }

func (s *scheduleConn) Writev(bs [][]byte) (int, error) {
	if len(bs) > iovMax {
		return 0, unix.EINVAL // what writev(2) says past IOV_MAX
	}
	s.writevs++
	n := 0
	for _, b := range bs {
		s.written = append(s.written, bytes.Clone(b)) // gnet copies what it keeps
		n += len(b)
	}
	return n, nil
}
func (s *scheduleConn) OutboundBuffered() int { return s.buffered }

// AsyncWritev records the callback (a slow consumer's close) and runs nothing.
func (s *scheduleConn) AsyncWritev(_ [][]byte, cb gnet.AsyncCallback) error {
	s.cbs = append(s.cbs, cb)
	return nil
}

func newTestConn() (*conn, *scheduleConn, *taskLoop) {
	gc := &scheduleConn{}
	loop := &taskLoop{}
	e := &Engine{opts: Options{MaxPending: 1 << 20}.withDefaults()}
	e.log = e.opts.Logger
	c := &conn{e: e, gc: gc, lf: e.flushers.of(loop)}
	c.phase.Store(int32(phaseOpen))
	return c, gc, loop
}

// PROTOCOL §4.3: frames queued on a connection that dies before its flush
// are reported dropped; flushed ones written. One flush writes the burst.
func TestOutboxTracksDelivery(t *testing.T) {
	t.Run("flushed", func(t *testing.T) {
		c, gc, loop := newTestConn()
		var outcome []bool
		tr := router.NewTracker(func(written bool) { outcome = append(outcome, written) })
		for _, f := range []string{"a", "b", "c"} {
			if !c.send([]byte(f), tr, 0) {
				t.Fatal("send refused")
			}
		}
		tr.Release()
		if n := loop.run(); n != 1 {
			t.Fatalf("%d loop tasks for one burst, want 1", n)
		}
		if len(outcome) != 0 || fmtFrames(gc.written) != "[abc]" || gc.writevs != 1 {
			t.Fatalf("outcome %v before the watch asked the kernel; written=%q in %d writevs", outcome, gc.written, gc.writevs)
		}
		c.confirm(gc) // the watch: everything handed is acknowledged
		if fmt.Sprint(outcome) != "[true]" {
			t.Fatalf("outcome %v, want written", outcome)
		}
	})
	t.Run("more frames than one writev takes", func(t *testing.T) {
		// A burst of acks (a client pipelining thousands of messages into
		// one group commit) once failed the whole writev with EINVAL and
		// dropped the connection.
		c, gc, loop := newTestConn()
		var outcome []bool
		tr := router.NewTracker(func(written bool) { outcome = append(outcome, written) })
		const n = 2*iovMax + 5
		for i := 0; i < n; i++ {
			if !c.send([]byte{'x'}, tr, 0) {
				t.Fatal("send refused")
			}
		}
		tr.Release()
		loop.run()
		c.confirm(gc)
		if got := len(bytes.Join(gc.written, nil)); fmt.Sprint(outcome) != "[true]" || got != n || gc.writevs != 1 {
			t.Fatalf("outcome %v: %d frames written in %d writevs, want %d in 1", outcome, got, gc.writevs, n)
		}
	})
	t.Run("connection died first", func(t *testing.T) {
		c, gc, loop := newTestConn()
		lost := 0
		tr := router.NewTracker(func(written bool) {
			if !written {
				lost++
			}
		})
		c.send([]byte("a"), tr, 0)
		tr.Release()
		c.closed.Store(true)
		c.discard() // what OnClose does
		loop.run()
		if lost != 1 || len(gc.written) != 0 {
			t.Fatalf("lost=%d written=%q", lost, gc.written)
		}
		if c.send([]byte("b"), nil, 0) {
			t.Fatal("a dead connection accepted a frame")
		}
	})
	t.Run("over the cap", func(t *testing.T) {
		c, gc, loop := newTestConn()
		c.e.opts.MaxPending = 4 // the outbox takes up to 8
		lost := 0
		tr := router.NewTracker(func(written bool) {
			if !written {
				lost++
			}
		})
		c.send([]byte("abc"), tr, 0)
		if c.send([]byte("defgef"), tr, 0) {
			t.Fatal("frame over twice the cap accepted")
		}
		tr.Release()
		if len(gc.cbs) != 1 {
			t.Fatalf("%d slow-consumer closes scheduled, want 1", len(gc.cbs))
		}
		c.discard()
		loop.run()
		if lost != 1 {
			t.Fatalf("lost=%d", lost)
		}
	})
	t.Run("over the cap with what gnet holds", func(t *testing.T) {
		// The outbox fits, but gnet still holds more than the cap from
		// earlier writes: the flush writes nothing more and closes with
		// 1008.
		c, gc, loop := newTestConn()
		c.e.opts.MaxPending = 8
		gc.buffered = 9 // what earlier writes left unsent: over the cap
		var written []bool
		tr := router.NewTracker(func(w bool) { written = append(written, w) })
		if !c.send([]byte("abcd"), tr, 0) {
			t.Fatal("send refused")
		}
		tr.Release()
		loop.run()
		if len(written) != 1 || written[0] {
			t.Fatalf("outcome %v, want not written", written)
		}
		if got := fmtFrames(gc.written); got != "["+string(slowConsumerFrame)+"]" || !c.phaseIs(phaseClosing) {
			t.Fatalf("wrote %q, phase %d: want only the CLOSE 1008", got, c.phase.Load())
		}
	})
}

// PROTOCOL §2: a frame larger than the cap (a message of the largest size
// with a cap as small) is written when nothing else waits, not refused
// forever; a connection whose earlier output is drained takes a reply
// that, with it, passes the cap.
func TestSection2_CapLetsOneFrameThrough(t *testing.T) {
	c, gc, loop := newTestConn()
	c.e.opts.MaxPending = 8
	if !c.send([]byte("0123456789"), nil, 0) {
		t.Fatal("a first frame over the cap refused")
	}
	loop.run()
	if len(gc.written) != 1 || c.phaseIs(phaseClosing) {
		t.Fatalf("wrote %q, closing %v", gc.written, c.phaseIs(phaseClosing))
	}
	gc.buffered = 6 // under the cap: the client reads
	c.send([]byte("abcd"), nil, 0)
	loop.run()
	if len(gc.written) != 2 || c.phaseIs(phaseClosing) {
		t.Fatalf("wrote %q, closing %v", gc.written, c.phaseIs(phaseClosing))
	}
}

// PROTOCOL §4.3: bytes gnet buffered are not written. A followed frame is
// written once the bytes handed to gnet less those it still holds pass its
// end; if the connection closes first, it was not.
func TestSection4_3_BufferedIsNotWritten(t *testing.T) {
	c, gc, loop := newTestConn()
	outcome := map[string][]bool{}
	follow := func(name string) *router.Tracker {
		return router.NewTracker(func(w bool) { outcome[name] = append(outcome[name], w) })
	}
	a, b := follow("a"), follow("b")
	c.send([]byte("aaaa"), a, 0)
	c.send([]byte("bbbb"), b, 0)
	a.Release()
	b.Release()
	gc.buffered = 6 // the socket took "aa"; gnet holds "aabbbb"
	loop.run()
	if len(outcome) != 0 {
		t.Fatalf("outcome known while gnet holds the bytes: %v", outcome)
	}
	gc.buffered = 4 // "aaaa" sent
	c.confirm(gc)
	if fmt.Sprint(outcome) != "map[a:[true]]" {
		t.Fatalf("after a's bytes left: %v", outcome)
	}
	gc.buffered = 1 // the connection closes with one byte of b unsent
	c.settle(gc)
	if fmt.Sprint(outcome) != "map[a:[true] b:[false]]" {
		t.Fatalf("after close: %v", outcome)
	}
}

// TestLoopFlusherBatches: a fan-out to many connections of one loop costs
// one loop task; each connection gets its frames in order in one writev,
// and a connection dirtied again while the task runs is flushed by it.
func TestLoopFlusherBatches(t *testing.T) {
	loop := &taskLoop{}
	e := &Engine{opts: Options{}.withDefaults()}
	f := e.flushers.of(loop)
	if e.flushers.of(loop) != f || e.flushers.of(&taskLoop{}) == f {
		t.Fatal("flushers.of: one flusher per loop")
	}
	conns := make([]*conn, 100)
	gcs := make([]*scheduleConn, len(conns))
	for i := range conns {
		gcs[i] = &scheduleConn{}
		conns[i] = &conn{e: e, gc: gcs[i], lf: f}
		conns[i].phase.Store(int32(phaseOpen))
	}
	for _, m := range []string{"m1", "m2", "m3"} {
		for _, c := range conns {
			c.send([]byte(m), nil, 0)
		}
	}
	if len(loop.tasks) != 1 {
		t.Fatalf("%d loop tasks for a fan-out, want 1", len(loop.tasks))
	}
	// A frame queued while the task runs (by a send from the loop, here
	// from a Writev) joins the same task.
	late := &lateConn{scheduleConn: gcs[1], then: func() { conns[2].send([]byte("late"), nil, 0) }}
	conns[1].gc = late
	if n := loop.run(); n != 1 {
		t.Fatalf("%d tasks ran, want 1", n)
	}
	for i, gc := range gcs {
		want := "[m1m2m3]" // one writev of the three
		if i == 2 {
			want = "[m1m2m3late]"
		}
		if got := fmtFrames(gc.written); got != want {
			t.Fatalf("conn %d wrote %s, want %s", i, got, want)
		}
	}
	if f.mu.scheduled || len(f.mu.dirty) != 0 {
		t.Fatal("flusher still scheduled after its task")
	}
}

type lateConn struct {
	*scheduleConn
	then func()
}

func (l *lateConn) Writev(bs [][]byte) (int, error) {
	n, err := l.scheduleConn.Writev(bs)
	if then := l.then; then != nil {
		l.then = nil
		then()
	}
	return n, err
}

func fmtFrames(bs [][]byte) string {
	s := "["
	for i, b := range bs {
		if i > 0 {
			s += " "
		}
		s += string(b)
	}
	return s + "]"
}

// TestOutboxTrim: a connection keeps its queue while busy and gives it
// back after a sweep interval without a send.
func TestOutboxTrim(t *testing.T) {
	c, gc, loop := newTestConn()
	c.send([]byte("a"), nil, 0)
	c.trim() // dirty: kept
	loop.run()
	if c.out.mu.q == nil {
		t.Fatal("queue released while a flush was pending")
	}
	c.trim() // flushed, but sent to since the last trim: kept
	if c.out.mu.q == nil {
		t.Fatal("queue of a busy connection released")
	}
	c.trim() // a whole interval without a send
	if c.out.mu.q != nil {
		t.Fatal("queue of an idle connection kept")
	}
	c.send([]byte("b"), nil, 0)
	loop.run()
	if got := fmtFrames(gc.written); got != "[a b]" {
		t.Fatalf("wrote %s", got)
	}
}

// TestLoopFlusherYields: pushes that keep coming while the task runs do
// not hold the loop: after maxFlushPasses passes the rest goes to a new
// task, and nothing is lost.
func TestLoopFlusherYields(t *testing.T) {
	c, gc, loop := newTestConn()
	n := 0
	c.gc = &lateConn{scheduleConn: gc}
	var again func()
	again = func() {
		n++
		c.send([]byte("x"), nil, 0) // from "the loop", while flushing
		c.gc.(*lateConn).then = again
	}
	c.gc.(*lateConn).then = again
	c.send([]byte("x"), nil, 0)
	_ = loop.tasks[0].Run(context.Background())
	loop.tasks = loop.tasks[1:]
	if len(loop.tasks) != 1 {
		t.Fatalf("%d tasks queued after a busy run, want 1", len(loop.tasks))
	}
	if len(gc.written) != maxFlushPasses {
		t.Fatalf("%d writes in one run, want %d", len(gc.written), maxFlushPasses)
	}
	c.gc.(*lateConn).then = nil
	loop.run()
	if len(gc.written) != n+1 {
		t.Fatalf("%d frames written, %d sent", len(gc.written), n+1)
	}
}

// PROTOCOL §1.5 and §4.3: a login refused because its user logged out
// while it was checked joined the registry for a moment; a push that
// reached it then is neither written before the 101 nor lost: it is
// reported not written, which queues it.
func TestSection1_5_RefusedLoginWritesNoPush(t *testing.T) {
	c, gc, loop := newTestConn()
	c.e.reg.init()
	c.phase.Store(int32(phaseLogin))
	const upgrade = "HTTP/1.1 101 Switching Protocols\r\n\r\n"
	c.pend = []byte(upgrade)
	var outcome []bool
	c.e.admit = func(router.LoginResult) bool {
		tr := router.NewTracker(func(w bool) { outcome = append(outcome, w) })
		if n := c.e.reg.deliver(7, []byte("push"), nil, tr); n != 1 {
			t.Errorf("push taken by %d connections, want the one logging in", n)
		}
		tr.Release()
		return false // a logout came after the token was checked
	}
	id := router.Identity{UID: 7, ID: "u7"}
	c.ident.Store(&id)
	c.activate(gc, nil, router.LoginResult{OK: true, Identity: id, Frame: []byte("login")})
	loop.run()
	var all []byte
	for _, b := range gc.written {
		all = append(all, b...)
	}
	if !bytes.HasPrefix(all, []byte(upgrade)) || bytes.Contains(all, []byte("push")) {
		t.Fatalf("written %q: want the 101 first and no push", all)
	}
	if fmt.Sprint(outcome) != "[false]" {
		t.Fatalf("push outcome %v, want [false] (queued)", outcome)
	}
	if c.e.reg.online(7) {
		t.Fatal("a refused login left its user online")
	}
}

// PROTOCOL §4.2: a connection queues a copy of what it is sent, so a
// sender may reuse its buffer (the router encodes acks and pushes in
// pooled buffers) once send returns.
func TestSection4_2_SendCopiesTheFrame(t *testing.T) {
	c, gc, loop := newTestConn()
	buf := []byte("push one")
	if !c.send(buf, nil, 0) {
		t.Fatal("send refused")
	}
	copy(buf, "XXXXXXXX") // the sender's next frame, before the flush
	if !c.send([]byte(" two"), nil, 0) {
		t.Fatal("send refused")
	}
	loop.run()
	if got := fmtFrames(gc.written); got != "[push one two]" {
		t.Fatalf("wrote %s, want [push one two]", got)
	}
}

// PROTOCOL §4.3: a follower's end offset counts the 101 written before
// the queued frames, and not the CLOSE written after them: it is told
// written once its own last byte left, not before.
func TestSection4_3_FollowerEndsAfterUpgradeBeforeClose(t *testing.T) {
	c, gc, loop := newTestConn()
	c.phase.Store(int32(phaseLogin))
	c.pend = []byte("HTTP/1.1 101\r\n\r\n") // 16 bytes
	var outcome []bool
	tr := router.NewTracker(func(w bool) { outcome = append(outcome, w) })
	c.send([]byte("abc"), nil, 0)
	c.send([]byte("defg"), tr, 0)
	c.send([]byte("hi"), nil, 0)
	tr.Release()
	closeFrame := codec.AppendCloseFrame(nil, ClosePolicy, "x")
	c.closeQueued(closeFrame, ClosePolicy)
	loop.run()
	if got, want := fmtFrames(gc.written), "[HTTP/1.1 101\r\n\r\n abcdefghi "+string(closeFrame)+"]"; got != want || gc.writevs != 1 {
		t.Fatalf("wrote %q in %d writevs, want %q", got, gc.writevs, want)
	}
	if len(c.inflight) != 1 || c.inflight[0].end != 16+7 {
		t.Fatalf("inflight %+v, want one ending at %d", c.inflight, 16+7)
	}
	if c.handed != uint64(16+9+len(closeFrame)) {
		t.Fatalf("handed %d", c.handed)
	}
	gc.buffered = 2 + len(closeFrame) + 1 // "g" not yet sent
	c.confirm(gc)
	if len(outcome) != 0 {
		t.Fatalf("outcome %v with its last byte in gnet", outcome)
	}
	gc.buffered = 2 + len(closeFrame)
	c.confirm(gc)
	if fmt.Sprint(outcome) != "[true]" {
		t.Fatalf("outcome %v once its bytes left", outcome)
	}
}

// PROTOCOL §4.3: every follower is told an outcome, even of an empty
// frame (nothing to write, so the flush has no writev).
func TestSection4_3_EmptyFollowedFrameIsTold(t *testing.T) {
	c, gc, loop := newTestConn()
	var outcome []bool
	tr := router.NewTracker(func(w bool) { outcome = append(outcome, w) })
	c.send(nil, tr, 0)
	tr.Release()
	loop.run()
	c.confirm(gc)
	c.settle(gc)
	if len(outcome) != 1 {
		t.Fatalf("follower of an empty frame told %v, want one outcome", outcome)
	}
}

// PROTOCOL §4.2: a frame larger than the pooled buffers (a page of
// history) is written whole and in order, whether it is queued alone,
// after smaller frames or before them.
func TestSection4_2_LargeFrameInOrder(t *testing.T) {
	big := bytes.Repeat([]byte("h"), maxKeptFrameBuf+1)
	for _, tc := range []struct {
		name   string
		frames [][]byte
	}{
		{"alone", [][]byte{big}},
		{"after a push", [][]byte{[]byte("push"), big}},
		{"before a push", [][]byte{big, []byte("push")}},
		{"twice", [][]byte{big, []byte("push"), big}},
	} {
		c, gc, loop := newTestConn()
		c.e.opts.MaxPending = 4 * len(big)
		for _, f := range tc.frames {
			if !c.send(f, nil, 0) {
				t.Fatalf("%s: send refused", tc.name)
			}
		}
		loop.run()
		if got, want := bytes.Join(gc.written, nil), bytes.Join(tc.frames, nil); !bytes.Equal(got, want) || gc.writevs != 1 {
			t.Errorf("%s: wrote %d bytes in %d writevs, want the %d queued in 1", tc.name, len(got), gc.writevs, len(want))
		}
	}
}

// PROTOCOL §2: a connection is counted under the status of the CLOSE it
// queued first; a Close of a connection already closing, or dropped as a
// slow consumer, queues none and records none.
func TestSection2_CloseCodeIsTheQueuedOne(t *testing.T) {
	c, _, _ := newTestConn()
	c.Close(CloseGoingAway, "idle timeout")
	c.Close(ClosePolicy, "later")
	if got := uint16(c.closeCode.Load()); got != CloseGoingAway {
		t.Fatalf("close code %d, want %d", got, CloseGoingAway)
	}
	dead, _, _ := newTestConn()
	dead.out.mu.dead = true
	dead.Close(CloseGoingAway, "shutdown")
	if got := dead.closeCode.Load(); got != 0 {
		t.Fatalf("close code %d on a dropped connection, want none", got)
	}
}
