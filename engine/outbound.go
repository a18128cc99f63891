package engine

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/router"
)

var slowConsumerFrame = codec.AppendCloseFrame(nil, ClosePolicy, "slow consumer")

// Output (PROTOCOL §2, §4.3).
//
// outbox queues copies of the frames sent from other goroutines (router
// workers, the storage committer, the registry's Deliver) in one pooled
// buffer and writes them on the loop, all that piled up in one writev. A
// connection with queued frames is marked dirty on its loop's flusher
// (see loopFlusher) once until its next flush: a burst of pushes
// to one connection costs one syscall, and a fan-out to many connections
// of one loop costs one loop task, not one per connection.
//
// Written means sent: a frame counts as written once all its bytes left
// the process for the socket and the client's TCP acknowledged them — not
// when gnet took it, since gnet keeps what the socket did not take in its
// own buffer and drops that buffer when the connection closes, nor when
// this side's kernel took it, since a crash of this process may reset the
// connection and drop the kernel's send queue. The loop counts the bytes
// it handed to gnet (conn.handed); handed less gnet's OutboundBuffered and
// less the kernel's unacknowledged bytes (SIOCOUTQ) is what was sent. A
// followed frame (router.Tracker) waits in conn.inflight with the offset
// of its end until the sent count passes it; when the connection closes,
// what is still waiting was not written. The count is checked at each
// flush, read and close, and while gnet holds bytes or followed frames
// wait, by the loop's watch (every watchInterval).
//
// The cap on unsent bytes per connection (Options.MaxPending) bounds what
// gnet still holds from earlier writes, checked on the loop before every
// write: a client that did not take that much since is a slow consumer.
// What waits here, not yet handed to gnet, is bounded by twice the cap (a
// send past it is refused, but a first frame always goes). What waits here is dropped (its followers learn it was not
// written), a CLOSE 1008 goes after what gnet holds, and the connection
// ends when its client reads that far or the close grace passes. A reply
// sized to the room (router) is never what closes a connection that
// reads: a connection holds at most twice the cap. Unsent bytes of all connections are bounded too
// (Options.MaxOutputTotal): past it, the connections holding the most are
// dropped at once (shed.go).
//
// The queue itself (outq) is pooled: a connection takes one at its first
// send and keeps it while it is busy; the liveness sweep gives it back
// once a whole sweep interval passed without a send (trim).
type outbox struct {
	mu struct {
		sync.Mutex
		q       *outq // nil while idle
		bytes   int
		used    bool // a send since the last trim
		dirty   bool // on the loop's dirty list; a flush will come
		closing bool // a CLOSE is queued: accept nothing more
		dead    bool // closed, or over the cap: accept nothing more
	}
	outbound atomic.Int64 // gnet's outbound buffer when the loop last looked
	stopped  atomic.Bool  // mu.dead || mu.closing, readable without the lock
}

// outq is what waits in an outbox, under the outbox's lock.
type outq struct {
	// buf holds the queued frames' bytes, copied in by send in order;
	// nil while none waits. A flush takes it whole and writes it in one
	// piece, then gives it back to framePool.
	buf     *frameBuf
	trk     []frameTracker // followers of some of the frames
	closing []byte         // CLOSE frame to write after buf, once set
	// stamps are the arrival times (router.Nanotime) of the requests
	// some of the frames answer: measured when those are written.
	stamps []int64
	// pushes are the arrival times of the messages some of the frames
	// push (Tracker.Received), likewise.
	pushes []int64
}

// frameTracker follows the frame that ends at offset end of buf.
type frameTracker struct {
	end int
	t   *router.Tracker
}

// inflight is a followed frame handed to gnet and not yet known sent:
// written once the connection's sent count reaches end.
type inflight struct {
	end uint64
	t   *router.Tracker
}

var outqPool = sync.Pool{New: func() any { return new(outq) }}

// maxKeptQueue bounds the backing arrays a pooled outq keeps.
const maxKeptQueue = 16

func acquireOutq() *outq { return outqPool.Get().(*outq) }

func releaseOutq(q *outq) {
	if q.buf != nil {
		releaseFrameBuf(q.buf)
	}
	clear(q.trk)
	q.buf, q.trk, q.closing, q.stamps, q.pushes = nil, q.trk[:0], nil, q.stamps[:0], q.pushes[:0]
	if cap(q.stamps) > maxKeptQueue {
		q.stamps = nil
	}
	if cap(q.pushes) > maxKeptQueue {
		q.pushes = nil
	}
	if cap(q.trk) > maxKeptQueue {
		q.trk = nil
	}
	outqPool.Put(q)
}

// frameBuf is the bytes of queued frames: a connection holds one only
// while frames wait, so an idle connection costs none.
type frameBuf struct{ b []byte }

// Pooled frame buffers start at minFrameBuf and are kept up to
// maxKeptFrameBuf: a burst's larger buffer goes to the collector.
const (
	minFrameBuf     = 1 << 10
	maxKeptFrameBuf = 64 << 10
)

var framePool = sync.Pool{New: func() any { return &frameBuf{b: make([]byte, 0, minFrameBuf)} }}

func acquireFrameBuf() *frameBuf { return framePool.Get().(*frameBuf) }

func releaseFrameBuf(fb *frameBuf) {
	if cap(fb.b) > maxKeptFrameBuf {
		return
	}
	fb.b = fb.b[:0]
	framePool.Put(fb)
}

// Send implements router.Session: it queues a copy of frame and reports
// false if the connection is closing or over its cap. Safe for concurrent
// use.
func (c *conn) Send(frame []byte) bool { return c.send(frame, nil, 0) }

// SendTracked implements router.Session.
func (c *conn) SendTracked(frame []byte, t *router.Tracker) bool { return c.send(frame, t, 0) }

// SendReply implements router.Session: the reply's latency since received
// goes to Options.ReplyLatency once the reply is handed to the socket.
func (c *conn) SendReply(frame []byte, received int64) bool { return c.send(frame, nil, received) }

// Room implements router.Session: the cap less what waits or is buffered.
func (c *conn) Room() int {
	o := &c.out
	o.mu.Lock()
	n := o.mu.bytes
	o.mu.Unlock()
	return c.e.opts.MaxPending - n - int(o.outbound.Load())
}

// send queues a copy of frame (the caller keeps frame); a non-nil t takes
// a reference that the flush (once sent, or dropped) or a discard gives
// back; a non-zero received is the arrival of the request frame answers
// (SendReply).
func (c *conn) send(frame []byte, t *router.Tracker, received int64) bool {
	var big *frameBuf
	if len(frame) > maxKeptFrameBuf {
		// A large frame (a page of history) is copied before the lock,
		// which the loop's flush of this connection may be waiting for:
		// it becomes the queue when nothing else waits, as it usually
		// does for a reply.
		big = &frameBuf{b: append(make([]byte, 0, len(frame)+minFrameBuf), frame...)}
	}
	o := &c.out
	o.mu.Lock()
	if o.mu.dead || o.mu.closing {
		o.mu.Unlock()
		return false
	}
	if (o.mu.bytes > 0 && o.mu.bytes+len(frame) > 2*c.e.opts.MaxPending) || c.e.overBudget(int64(o.mu.bytes)+o.outbound.Load()+int64(len(frame))) {
		// Even without what gnet holds, this is twice the cap: the loop
		// has not caught up with this connection's output at all (once
		// the cap is only a reply sized to the room and a few pushes).
		// Or the process is so far over its output budget that the shed
		// (which closes the heaviest) cannot keep up, and this
		// connection holds more than its share.
		o.mu.dead = true
		o.stopped.Store(true)
		o.mu.Unlock()
		c.slowConsumer()
		c.e.shed()
		return false
	}
	q := o.mu.q
	if q == nil {
		q = acquireOutq()
		o.mu.q = q
	}
	switch {
	case big != nil && q.buf == nil:
		q.buf = big // copied before the lock
	case q.buf == nil:
		q.buf = acquireFrameBuf()
		fallthrough
	default:
		q.buf.b = append(q.buf.b, frame...)
	}
	if t != nil {
		t.Acquire()
		q.trk = append(q.trk, frameTracker{len(q.buf.b), t})
		if t.Received != 0 && c.e.opts.PushLatency != nil {
			q.pushes = append(q.pushes, t.Received)
		}
	}
	if received != 0 && c.e.opts.ReplyLatency != nil {
		q.stamps = append(q.stamps, received)
	}
	o.mu.bytes += len(frame)
	o.mu.used = true
	mark := !o.mu.dirty
	o.mu.dirty = true
	o.mu.Unlock()
	if c.e.unsent.Add(int64(len(frame))) > c.e.opts.MaxOutputTotal {
		c.e.shed()
	}
	if mark {
		c.lf.mark(c)
	}
	return true
}

// closeQueued queues frame, a CLOSE of status code, after everything
// already queued, unless the connection is already closing or dead. The
// connection is offline from now on (PROTOCOL §2: closing counts as
// closed).
func (c *conn) closeQueued(frame []byte, code uint16) {
	o := &c.out
	o.mu.Lock()
	if o.mu.dead || o.mu.closing {
		o.mu.Unlock()
		return
	}
	c.closeCode.CompareAndSwap(0, uint32(code)) // before the flush can end the connection
	if o.mu.q == nil {
		o.mu.q = acquireOutq()
	}
	o.mu.q.closing = frame
	o.mu.closing = true
	o.stopped.Store(true)
	mark := !o.mu.dirty
	o.mu.dirty = true
	o.mu.Unlock()
	c.deregister()
	if mark {
		c.lf.mark(c)
	}
}

// deregister takes c out of the registry: no push reaches it and it no
// longer makes its user online. Safe for concurrent use; idempotent.
func (c *conn) deregister() {
	if id := c.ident.Load(); id != nil {
		c.e.reg.remove(id.UID, c)
	}
}

// maxKeptInflight bounds the inflight array an idle connection keeps.
const maxKeptInflight = 16

// write hands b to gnet on the loop and counts it as handed. gnet closes
// the connection on an error (OnClose runs inside), which sent nothing of b.
func (c *conn) write(gc gnet.Conn, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if _, err := gc.Write(b); err != nil {
		return false
	}
	c.handed += uint64(len(b))
	return true
}

// flush runs on the loop: it writes every queued frame in one writev and,
// if a CLOSE was queued, the CLOSE after them, and observes the latency
// of the replies among them (SendReply). s is the loop's reusable scratch.
func (c *conn) flush(gc gnet.Conn, s *flushScratch) {
	trk, stamps, pushes := s.trk[:0], s.stamps[:0], s.pushes[:0]
	defer func() {
		clear(trk)
		s.trk, s.stamps, s.pushes = trk[:0], stamps[:0], pushes[:0]
	}()
	o := &c.out
	o.mu.Lock()
	q := o.mu.q
	if q == nil {
		o.mu.dirty = false
		o.mu.Unlock()
		return // discarded meanwhile
	}
	var upgrade []byte
	if c.phaseIs(phaseLogin) && c.pend != nil {
		// A push cannot reach a connection still logging in, but a
		// failed login's reply and CLOSE, or a shutdown's CLOSE, can:
		// the 101 goes first.
		upgrade = c.takeUpgradeResponse()
	}
	fb := q.buf
	trk = append(trk, q.trk...)
	stamps = append(stamps, q.stamps...)
	pushes = append(pushes, q.pushes...)
	closing := q.closing
	queued := o.mu.bytes
	clear(q.trk)
	q.buf, q.trk, q.closing, q.stamps, q.pushes = nil, q.trk[:0], nil, q.stamps[:0], q.pushes[:0]
	o.mu.bytes = 0
	o.mu.dirty = false
	o.mu.Unlock()
	c.e.unsent.Add(-int64(queued))
	var frames []byte
	if fb != nil {
		frames = fb.b
		defer releaseFrameBuf(fb) // gnet copies what the socket did not take
	}

	sent := false // the frames handed to gnet
	if !c.closed.Load() && !c.phaseIs(phaseClosing) {
		if closing == nil && gc.OutboundBuffered() > c.e.opts.MaxPending {
			// What earlier writes left unsent is over the cap: the client
			// does not read. The new frames stay unsent; their followers
			// learn it.
			c.closeSlowOnLoop(gc)
		} else {
			sent = c.writeFrames(gc, s, upgrade, frames, closing, trk)
			if c.acking.Load() && len(c.inflight)+len(c.unacked) > c.e.opts.MaxInflight && !c.closed.Load() {
				// More unacknowledged pushes than a client that reads
				// and acknowledges holds: a slow consumer (PROTOCOL §7.2).
				c.closeSlowOnLoop(gc)
			}
			if closing != nil && !c.closed.Load() {
				c.beginClosing(gc)
			}
		}
	}
	if !sent {
		for _, ft := range trk {
			ft.t.Done(false)
		}
	}
	if len(stamps)+len(pushes) > 0 && sent {
		now := router.Nanotime()
		for _, t0 := range stamps {
			c.e.opts.ReplyLatency.Observe(float64(now-t0) / 1e9)
		}
		for _, t0 := range pushes {
			c.e.opts.PushLatency.Observe(float64(now-t0) / 1e9)
		}
	}
	if !c.closed.Load() {
		// Just written: the client cannot have acknowledged it yet, so
		// the watch, not this flush, asks the kernel (conn.confirm).
		c.observe(gc)
	}
}

// flushScratch is a loop's reusable slices for conn.flush.
type flushScratch struct {
	vecs   [][]byte
	trk    []frameTracker
	stamps []int64
	pushes []int64
}

// writeFrames hands the 101 (if any), the queued frames and the CLOSE (if
// any) to gnet in one writev, and moves the followers of the frames to
// the connection's inflight list. It reports whether they were handed; an
// error closed the connection and handed none.
func (c *conn) writeFrames(gc gnet.Conn, s *flushScratch, upgrade, frames, closing []byte, trk []frameTracker) bool {
	vecs := s.vecs[:0]
	for _, b := range [...][]byte{upgrade, frames, closing} {
		if len(b) > 0 {
			vecs = append(vecs, b)
		}
	}
	if len(vecs) > 0 { // else only empty frames: nothing to write
		// gnet may reslice the elements of what it is given.
		_, err := gc.Writev(vecs)
		clear(vecs)
		s.vecs = vecs[:0]
		if err != nil {
			return false
		}
	}
	base := c.handed + uint64(len(upgrade))
	c.handed += uint64(len(upgrade) + len(frames) + len(closing))
	for _, ft := range trk {
		c.inflight = append(c.inflight, inflight{base + uint64(ft.end), ft.t})
	}
	return true
}

// observe samples gnet's buffer for the caps and puts the connection on
// its loop's watch while gnet holds bytes or followed frames wait. It runs
// on the loop.
func (c *conn) observe(gc gnet.Conn) {
	buffered := gc.OutboundBuffered()
	if prev := c.out.outbound.Swap(int64(buffered)); prev != int64(buffered) {
		c.e.unsent.Add(int64(buffered) - prev)
	}
	if (buffered > 0 || len(c.inflight) > 0) && !c.watched {
		c.watched = true
		c.lf.watchConn(c)
	}
}

// confirm tells the followers of frames now acknowledged that they were
// written, then observes. It runs on the loop.
func (c *conn) confirm(gc gnet.Conn) {
	buffered := gc.OutboundBuffered()
	sent := c.sent(gc, buffered)
	n := 0
	acking := c.acking.Load()
	for n < len(c.inflight) && c.inflight[n].end <= sent {
		if f := c.inflight[n]; acking && f.t.Seq != 0 {
			// A push to an acknowledging connection is in flight until
			// its client acknowledges it (PROTOCOL §7.2).
			c.unacked = append(c.unacked, f)
		} else {
			f.t.Done(true)
		}
		n++
	}
	if n > 0 {
		rest := copy(c.inflight, c.inflight[n:])
		clear(c.inflight[rest:])
		c.inflight = c.inflight[:rest]
		if rest == 0 && cap(c.inflight) > maxKeptInflight {
			c.inflight = nil // a backlog's array is not kept
		}
	}
	c.observe(gc)
}

// sent is how many of the bytes handed to gnet the client's TCP has
// acknowledged: handed less what gnet holds (buffered) and less what the
// kernel holds unacknowledged (SIOCOUTQ), asked only while followed frames
// wait. A frame acknowledged is in the client's kernel: a crash of this
// process (whose kernel may then reset the connection and drop its own
// send queue) no longer keeps it from the client.
func (c *conn) sent(gc gnet.Conn, buffered int) uint64 {
	sent := c.handed - uint64(buffered)
	if len(c.inflight) > 0 {
		if n, err := unix.IoctlGetInt(gc.Fd(), unix.SIOCOUTQ); err == nil && n > 0 {
			sent -= min(uint64(n), sent)
		}
	}
	return sent
}

// settle runs in OnClose: frames acknowledged by now were written, the
// others never will be; and nothing is buffered any more.
func (c *conn) settle(gc gnet.Conn) {
	sent := c.sent(gc, gc.OutboundBuffered())
	acking := c.acking.Load()
	for _, f := range c.inflight {
		f.t.Done(f.end <= sent && !(acking && f.t.Seq != 0))
	}
	c.inflight = nil
	// Unacknowledged pushes were not delivered: they are queued unless
	// another connection of the user took them (PROTOCOL §7.2).
	for _, f := range c.unacked {
		f.t.Done(false)
	}
	c.unacked = nil
	c.e.unsent.Add(-c.out.outbound.Swap(0))
}

// SetAcking implements router.Session: pushes followed from now on are
// in flight until acknowledged (PROTOCOL §7.2). Safe for concurrent use.
func (c *conn) SetAcking() { c.acking.Store(true) }

// Acking implements router.Session.
func (c *conn) Acking() bool { return c.acking.Load() }

// Exempt implements router.Session: the token the request being handled
// took goes back (receipt acks are not rate-limited). It runs on the loop.
func (c *conn) Exempt() {
	if b := c.rate; b != nil {
		b.tokens = min(float64(c.e.opts.RateBurst), b.tokens+1)
	}
}

// AckLocal implements router.Session. It runs on the loop.
func (c *conn) AckLocal(conv string, group bool, seq uint64) (id uint64, known, settled bool) {
	return c.ack(conv, group, seq)
}

// Ack is the loop's part of Engine.Ack: the client holds every message of
// the conversation (a peer's id, or a group's) with seq up to seq; the
// pushes of it this connection holds are delivered, on its loop. It never
// blocks.
func (c *conn) Ack(conv string, group bool, seq uint64) {
	_ = c.gc.AsyncWritev(nil, func(gnet.Conn, error) error {
		c.ack(conv, group, seq)
		return nil
	})
}

// ack settles as written the followed pushes of the conversation with
// seq up to seq, sent or not yet known sent: the client has them. It
// reports whether one of its pushes of the conversation has a seq at or
// past seq (known), with the conversation's uid or gid, and whether it
// settled any (settled). It runs on the loop.
func (c *conn) ack(conv string, group bool, seq uint64) (id uint64, known, settled bool) {
	var acked uint64
	keep := func(l []inflight) []inflight {
		n := 0
		for _, f := range l {
			t := f.t
			if t.Seq != 0 && t.Group == group && t.Conv == conv {
				id = t.ConvID
				known = known || t.Seq >= seq
				if t.Seq <= seq {
					t.Done(true)
					acked++
					continue
				}
			}
			l[n] = f
			n++
		}
		clear(l[n:])
		return l[:n]
	}
	c.unacked = keep(c.unacked)
	c.inflight = keep(c.inflight)
	if acked > 0 {
		c.e.clientAcked.Add(acked)
	}
	return id, known, acked > 0
}

// trim gives an idle connection's queue back to the pool: one that had
// no send since the last trim and has nothing waiting. The liveness sweep
// calls it. Safe for concurrent use.
func (c *conn) trim() {
	o := &c.out
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.mu.q
	switch {
	case q == nil, o.mu.dirty, q.buf != nil, q.closing != nil:
	case o.mu.used:
		o.mu.used = false
	default:
		o.mu.q = nil
		releaseOutq(q)
	}
}

// discard drops whatever is queued: the connection is gone or too slow.
func (c *conn) discard() {
	o := &c.out
	o.mu.Lock()
	o.mu.dead = true
	o.stopped.Store(true)
	q := o.mu.q
	queued := o.mu.bytes
	o.mu.q, o.mu.bytes = nil, 0
	o.mu.Unlock()
	c.e.unsent.Add(-int64(queued))
	if q == nil {
		return
	}
	for _, ft := range q.trk {
		ft.t.Done(false) // never written: the message stays queued offline
	}
	releaseOutq(q)
}

// slowConsumer closes a connection over its output cap from any goroutine,
// a registry shard's lock held included (Deliver): the connection is
// already stopped, so it counts as offline (registry.online), and leaves
// the registry on its loop.
func (c *conn) slowConsumer() {
	_ = c.gc.AsyncWritev(nil, func(gc gnet.Conn, err error) error {
		if err == nil {
			c.closeSlowOnLoop(gc)
		}
		return nil
	})
}

// closeSlowOnLoop ends a slow consumer: what waits in the outbox is
// dropped, a CLOSE 1008 goes after what gnet holds (the client gets it if
// it reads that far within the close grace), and the connection is
// offline at once. It runs on the loop.
func (c *conn) closeSlowOnLoop(gc gnet.Conn) {
	if c.closed.Load() || c.phaseIs(phaseClosing) {
		return
	}
	c.slow(gc, "slow consumer closed")
	if c.write(gc, slowConsumerFrame) && !c.closed.Load() {
		c.beginClosing(gc)
	}
}

// slow counts and logs a slow consumer and stops its output: what waits
// in the outbox is dropped and the connection is offline. It runs on the
// loop.
func (c *conn) slow(gc gnet.Conn, msg string) {
	c.e.log.Warn(msg, "conn_id", c.id, "remote", remoteString(gc), "outbound", gc.OutboundBuffered())
	c.e.slowClosed.Add(1)
	c.discard()
	c.deregister()
	c.closeCode.Store(uint32(ClosePolicy))
}

// dropSlowOnLoop ends a slow consumer at once, to free memory: the
// process is over its output budget. The CLOSE is best effort.
func (c *conn) dropSlowOnLoop(gc gnet.Conn) {
	if c.closed.Load() {
		return
	}
	c.slow(gc, "slow consumer dropped: output budget exceeded")
	if gc.OutboundBuffered() == 0 {
		_ = c.write(gc, slowConsumerFrame)
	}
	_ = gc.Close()
}

// closingQueued reports whether a CLOSE is queued or the connection is
// dead: frames still in the inbound buffer are then not served.
func (c *conn) closingQueued() bool { return c.out.stopped.Load() }

// loopFlusher batches the flushes of one event loop: senders put dirty
// connections on its list, and one task on the loop flushes them all. A
// group message to 500 members thus costs each loop a wakeup or two, not
// one task per member (BenchmarkDeliverFanOut). gnet's EventLoop.Execute
// runs the task; it allocates a little per call, which is per batch here.
//
// It also watches the loop's connections whose bytes gnet still holds: a
// timer runs a loop task every watchInterval while there are any, which
// confirms what was sent since (conn.confirm).
type loopFlusher struct {
	el gnet.EventLoop
	mu struct {
		sync.Mutex
		dirty     []*conn
		scheduled bool
		watch     []*conn
		armed     bool
	}
	// Owned by the loop: reused by every flush.
	running []*conn
	scratch flushScratch
	watched []*conn
}

// watchInterval is how often a loop looks again at connections whose
// output gnet holds or whose followed frames wait for the client's
// acknowledgement: how late a write is confirmed (a delivery settled), and
// how stale the buffered count of a backed-up connection may be. Each look
// costs a system call per connection, so not more often.
const watchInterval = 25 * time.Millisecond

// maxKeptDirty bounds the dirty lists a flusher keeps between batches.
const maxKeptDirty = 4096

// mark puts c, which has something to write, on the dirty list and
// schedules a flush if none is pending. Safe for concurrent use.
func (f *loopFlusher) mark(c *conn) {
	f.mu.Lock()
	f.mu.dirty = append(f.mu.dirty, c)
	schedule := !f.mu.scheduled
	f.mu.scheduled = true
	f.mu.Unlock()
	if schedule {
		f.schedule()
	}
}

// schedule queues Run on the loop.
func (f *loopFlusher) schedule() {
	if err := f.el.Execute(context.Background(), f); err != nil {
		// The engine is shutting down: nothing will be written.
		f.mu.Lock()
		dirty := f.mu.dirty
		f.mu.dirty, f.mu.scheduled = nil, false
		f.mu.Unlock()
		for _, c := range dirty {
			c.discard()
		}
	}
}

// maxFlushPasses bounds the passes of one Run: connections dirtied while
// it runs join the next pass, but a steady stream of pushes must not keep
// the loop from its sockets, so past this the rest goes to a new task.
const maxFlushPasses = 4

// Run implements gnet.Runnable: on the loop, it flushes every dirty
// connection, and those that turned dirty meanwhile, until none is left.
func (f *loopFlusher) Run(context.Context) error {
	for pass := 0; ; pass++ {
		f.mu.Lock()
		dirty := f.mu.dirty
		if len(dirty) == 0 {
			f.mu.scheduled = false
			f.mu.Unlock()
			return nil
		}
		if pass == maxFlushPasses {
			f.mu.Unlock()
			f.schedule() // still scheduled: the marks wait for that task
			return nil
		}
		f.mu.dirty = f.running[:0]
		f.mu.Unlock()
		for _, c := range dirty {
			c.flush(c.gc, &f.scratch)
		}
		clear(dirty)
		if cap(dirty) > maxKeptDirty {
			dirty = nil
		}
		f.running = dirty[:0]
	}
}

// watchConn adds c to the watch and arms the timer. It runs on the loop.
func (f *loopFlusher) watchConn(c *conn) {
	f.mu.Lock()
	f.mu.watch = append(f.mu.watch, c)
	arm := !f.mu.armed
	f.mu.armed = true
	f.mu.Unlock()
	if arm {
		time.AfterFunc(watchInterval, f.fire)
	}
}

// fire runs on the timer's goroutine: it queues the watch on the loop.
func (f *loopFlusher) fire() {
	if err := f.el.Execute(context.Background(), watchTask{f}); err != nil {
		f.mu.Lock()
		f.mu.watch, f.mu.armed = nil, false // shutting down
		f.mu.Unlock()
	}
}

// watchTask runs the watch on the loop.
type watchTask struct{ f *loopFlusher }

func (w watchTask) Run(context.Context) error {
	f := w.f
	f.mu.Lock()
	list := f.mu.watch
	f.mu.watch = f.watched[:0]
	f.mu.Unlock()
	for _, c := range list {
		c.watched = false
		if c.closed.Load() {
			continue
		}
		c.confirm(c.gc) // watches c again while gnet still holds bytes
		if c.phaseIs(phaseClosing) && c.gc.OutboundBuffered() == 0 {
			// Everything before the CLOSE is out: the peer reads it and EOF.
			_ = unix.Shutdown(c.gc.Fd(), unix.SHUT_WR)
		}
	}
	clear(list)
	f.watched = list[:0]
	f.mu.Lock()
	rearm := len(f.mu.watch) > 0
	f.mu.armed = rearm
	f.mu.Unlock()
	if rearm {
		time.AfterFunc(watchInterval, f.fire)
	}
	return nil
}

// flushers maps each event loop to its flusher. Loops are few and known
// only once their first connection opens, so a copy-on-write slice does.
type flushers struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*loopFlusher]
}

// of returns the flusher of el, creating it on first use.
func (fs *flushers) of(el gnet.EventLoop) *loopFlusher {
	if l := fs.list.Load(); l != nil {
		for _, f := range *l {
			if f.el == el {
				return f
			}
		}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var old []*loopFlusher
	if l := fs.list.Load(); l != nil {
		old = *l
		if i := slices.IndexFunc(old, func(f *loopFlusher) bool { return f.el == el }); i >= 0 {
			return old[i]
		}
	}
	f := &loopFlusher{el: el}
	l := append(append([]*loopFlusher(nil), old...), f)
	fs.list.Store(&l)
	return f
}
