package engine

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/router"
)

var slowConsumerFrame = codec.AppendCloseFrame(nil, ClosePolicy, "slow consumer")

// outbox queues frames sent from other goroutines (router workers, the
// registry's Deliver) and writes them on the loop, all that piled up in one
// writev. A connection with queued frames is marked dirty on its loop's
// flusher (see loopFlusher) once until its next flush: a burst of pushes
// to one connection costs one syscall, and a fan-out to many connections
// of one loop costs one loop task, not one per connection.
//
// The queue itself (outq) is pooled: a connection takes one at its first
// send and keeps it while it is busy; the liveness sweep gives it back
// once a whole sweep interval passed without a send (trim). Most
// connections are idle most of the time, and an idle outbox costs a
// pointer, while a busy one pays nothing per flush.
//
// The cap on unsent bytes counts both what waits here and what gnet holds
// in the connection's outbound buffer (sampled at each flush). A connection
// over it is a slow consumer: it is closed with 1008 and Send reports false,
// so the sender can keep what was not delivered (PROTOCOL §2, §4.3).
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
	outbound atomic.Int64 // gnet's outbound buffer at the last flush
	stopped  atomic.Bool  // mu.dead || mu.closing, readable without the lock
}

// outq is what waits in an outbox, under the outbox's lock.
type outq struct {
	frames   [][]byte
	trackers []*router.Tracker // of the frames whose delivery is followed
	closing  []byte            // CLOSE frame to write after frames, once set
}

var outqPool = sync.Pool{New: func() any { return new(outq) }}

// maxKeptQueue bounds the backing arrays a pooled outq keeps.
const maxKeptQueue = 16

func acquireOutq() *outq { return outqPool.Get().(*outq) }

func releaseOutq(q *outq) {
	clear(q.frames)
	clear(q.trackers)
	q.frames, q.trackers, q.closing = q.frames[:0], q.trackers[:0], nil
	if cap(q.frames) > maxKeptQueue {
		q.frames = nil
	}
	if cap(q.trackers) > maxKeptQueue {
		q.trackers = nil
	}
	outqPool.Put(q)
}

// Send implements router.Session: it queues frame and reports false if the
// connection is closing or over its cap. Safe for concurrent use.
func (c *conn) Send(frame []byte) bool { return c.send(frame, nil) }

// send queues frame; a non-nil t takes a reference that the flush (written)
// or a discard (dropped) gives back.
func (c *conn) send(frame []byte, t *router.Tracker) bool {
	o := &c.out
	o.mu.Lock()
	if o.mu.dead || o.mu.closing {
		o.mu.Unlock()
		return false
	}
	if int64(o.mu.bytes+len(frame))+o.outbound.Load() > int64(c.e.opts.MaxPending) {
		o.mu.dead = true
		o.stopped.Store(true)
		o.mu.Unlock()
		c.slowConsumer()
		return false
	}
	q := o.mu.q
	if q == nil {
		q = acquireOutq()
		o.mu.q = q
	}
	if t != nil {
		t.Acquire()
		q.trackers = append(q.trackers, t)
	}
	q.frames = append(q.frames, frame)
	o.mu.bytes += len(frame)
	o.mu.used = true
	mark := !o.mu.dirty
	o.mu.dirty = true
	o.mu.Unlock()
	if mark {
		c.lf.mark(c)
	}
	return true
}

// closeQueued queues a CLOSE frame after everything already queued.
func (c *conn) closeQueued(frame []byte) {
	o := &c.out
	o.mu.Lock()
	if o.mu.dead || o.mu.closing {
		o.mu.Unlock()
		return
	}
	if o.mu.q == nil {
		o.mu.q = acquireOutq()
	}
	o.mu.q.closing = frame
	o.mu.closing = true
	o.stopped.Store(true)
	mark := !o.mu.dirty
	o.mu.dirty = true
	o.mu.Unlock()
	if mark {
		c.lf.mark(c)
	}
}

// maxIovecs is Linux's IOV_MAX: a writev of more buffers fails with
// EINVAL, and gnet passes what it is given straight to writev.
const maxIovecs = 1024

// flush runs on the loop: it writes every queued frame in one writev and,
// if a CLOSE was queued, the CLOSE after them. frames and trk are the
// loop's reusable slices; flush returns them for the next one.
func (c *conn) flush(gc gnet.Conn, frames [][]byte, trk []*router.Tracker) ([][]byte, []*router.Tracker) {
	frames, trk = frames[:0], trk[:0]
	o := &c.out
	o.mu.Lock()
	q := o.mu.q
	if q == nil {
		o.mu.dirty = false
		o.mu.Unlock()
		return frames, trk // discarded meanwhile
	}
	if c.phaseIs(phaseLogin) && c.pend != nil {
		// A push cannot reach a connection still logging in, but a
		// failed login's reply and CLOSE, or a shutdown's CLOSE, can:
		// the 101 goes first.
		frames = append(frames, c.takeUpgradeResponse())
	}
	frames = append(frames, q.frames...)
	trk = append(trk, q.trackers...)
	closing := q.closing
	clear(q.frames)
	clear(q.trackers)
	q.frames, q.trackers, q.closing = q.frames[:0], q.trackers[:0], nil
	o.mu.bytes = 0
	o.mu.dirty = false
	o.mu.Unlock()

	written := false
	if !c.closed.Load() && !c.phaseIs(phaseClosing) {
		if closing != nil {
			frames = append(frames, closing)
		}
		if len(frames) > 0 {
			// gnet copies what the socket does not take into the
			// connection's outbound buffer; from here on the bytes are
			// the kernel's or gnet's to send. One writev takes at most
			// maxIovecs buffers: past IOV_MAX the kernel refuses it all.
			var werr error
			for rest := frames; len(rest) > 0 && werr == nil; {
				n := min(len(rest), maxIovecs)
				_, werr = gc.Writev(rest[:n])
				rest = rest[n:]
			}
			written = werr == nil
		}
		if closing != nil {
			c.beginClosing(gc)
		} else if n := gc.OutboundBuffered(); n > c.e.opts.MaxPending {
			c.closeSlowOnLoop(gc)
		} else {
			o.outbound.Store(int64(n))
		}
	}
	for _, t := range trk {
		t.Done(written)
	}
	clear(frames)
	clear(trk)
	return frames[:0], trk[:0]
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
	case q == nil, o.mu.dirty, len(q.frames) > 0, q.closing != nil:
	case o.mu.used:
		o.mu.used = false
	default:
		o.mu.q = nil
		releaseOutq(q)
	}
}

// discard drops whatever is queued: the connection is gone.
func (c *conn) discard() {
	o := &c.out
	o.mu.Lock()
	o.mu.dead = true
	o.stopped.Store(true)
	q := o.mu.q
	o.mu.q, o.mu.bytes = nil, 0
	o.mu.Unlock()
	if q == nil {
		return
	}
	for _, t := range q.trackers {
		t.Done(false) // never written: the sender requeues it offline
	}
	releaseOutq(q)
}

// slowConsumer closes a connection over its output cap from any goroutine.
func (c *conn) slowConsumer() {
	_ = c.gc.AsyncWritev(nil, func(gc gnet.Conn, err error) error {
		if err == nil {
			c.closeSlowOnLoop(gc)
		}
		return nil
	})
}

// closeSlowOnLoop ends a slow consumer: a CLOSE 1008 goes after what is
// buffered (the peer will never read that far in time), then the socket.
func (c *conn) closeSlowOnLoop(gc gnet.Conn) {
	if c.closed.Load() {
		return
	}
	c.e.log.Warn("slow consumer closed", "conn_id", c.id, "remote", remoteString(gc), "outbound", gc.OutboundBuffered())
	c.e.slowClosed.Add(1)
	c.discard()
	c.closeCode = ClosePolicy
	c.phase.Store(int32(phaseClosing))
	_, _ = gc.Write(slowConsumerFrame)
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
type loopFlusher struct {
	el gnet.EventLoop
	mu struct {
		sync.Mutex
		dirty     []*conn
		scheduled bool
	}
	// Owned by the loop: reused by every flush.
	running []*conn
	frames  [][]byte
	trk     []*router.Tracker
}

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
			f.frames, f.trk = c.flush(c.gc, f.frames, f.trk)
		}
		clear(dirty)
		if cap(dirty) > maxKeptDirty {
			dirty = nil
		}
		f.running = dirty[:0]
	}
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
		for _, f := range old {
			if f.el == el {
				return f
			}
		}
	}
	f := &loopFlusher{el: el}
	l := append(append([]*loopFlusher(nil), old...), f)
	fs.list.Store(&l)
	return f
}
