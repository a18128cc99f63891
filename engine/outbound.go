package engine

import (
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/router"
)

var slowConsumerFrame = codec.AppendCloseFrame(nil, ClosePolicy, "slow consumer")

// outbox queues frames sent from other goroutines (router workers, the
// registry's Deliver) and writes them on the loop, all that piled up in one
// writev. Only one flush is scheduled at a time: a burst of pushes to one
// connection costs one loop task and one syscall, not one per frame.
//
// The cap on unsent bytes counts both what waits here and what gnet holds
// in the connection's outbound buffer (sampled at each flush). A connection
// over it is a slow consumer: it is closed with 1008 and Send reports false,
// so the sender can keep what was not delivered (PROTOCOL §2, §4.3).
type outbox struct {
	c  *conn
	mu struct {
		sync.Mutex
		q         [][]byte
		spare     [][]byte
		trackers  []*router.Tracker // of the frames in q whose delivery is followed
		bytes     int
		scheduled bool
		closing   []byte // CLOSE frame to write after q, once set
		dead      bool   // closed, or over the cap: accept nothing more
	}
	outbound atomic.Int64 // gnet's outbound buffer at the last flush
	stopped  atomic.Bool  // mu.dead || mu.closing != nil, readable without the lock
	flushCB  gnet.AsyncCallback
}

func (o *outbox) init(c *conn) {
	o.c = c
	o.flushCB = o.flush // one method value per connection, not per flush
}

// Send implements router.Session: it queues frame and reports false if the
// connection is closing or over its cap. Safe for concurrent use.
func (c *conn) Send(frame []byte) bool { return c.out.send(frame, nil) }

// send queues frame; a non-nil t takes a reference that the flush (written)
// or a discard (dropped) gives back.
func (o *outbox) send(frame []byte, t *router.Tracker) bool {
	o.mu.Lock()
	if o.mu.dead || o.mu.closing != nil {
		o.mu.Unlock()
		return false
	}
	if int64(o.mu.bytes+len(frame))+o.outbound.Load() > int64(o.c.e.opts.MaxPending) {
		o.mu.dead = true
		o.stopped.Store(true)
		o.mu.Unlock()
		o.c.slowConsumer()
		return false
	}
	if t != nil {
		t.Acquire()
		o.mu.trackers = append(o.mu.trackers, t)
	}
	o.mu.q = append(o.mu.q, frame)
	o.mu.bytes += len(frame)
	schedule := !o.mu.scheduled
	o.mu.scheduled = true
	o.mu.Unlock()
	if schedule {
		o.schedule()
	}
	return true
}

// close queues a CLOSE frame after everything already queued.
func (o *outbox) close(frame []byte) {
	o.mu.Lock()
	if o.mu.dead || o.mu.closing != nil {
		o.mu.Unlock()
		return
	}
	o.mu.closing = frame
	o.stopped.Store(true)
	schedule := !o.mu.scheduled
	o.mu.scheduled = true
	o.mu.Unlock()
	if schedule {
		o.schedule()
	}
}

func (o *outbox) schedule() {
	// AsyncWritev with no data is gnet's way to run a callback on the
	// connection's loop with the connection in hand.
	if err := o.c.gc.AsyncWritev(nil, o.flushCB); err != nil {
		o.discard()
	}
}

// flush runs on the loop: it writes every queued frame in one writev and,
// if a CLOSE was queued, the CLOSE after them.
func (o *outbox) flush(gc gnet.Conn, err error) error {
	o.mu.Lock()
	q, closing, trackers := o.mu.q, o.mu.closing, o.mu.trackers
	o.mu.q, o.mu.spare, o.mu.trackers = o.mu.spare[:0], nil, nil
	o.mu.bytes = 0
	o.mu.scheduled = false
	o.mu.Unlock()

	c := o.c
	written := false
	if err == nil && !c.closed.Load() && !c.phaseIs(phaseClosing) {
		if closing != nil {
			q = append(q, closing)
		}
		if len(q) > 0 {
			// gnet copies what the socket does not take into the
			// connection's outbound buffer; from here on the bytes are
			// the kernel's or gnet's to send.
			_, werr := gc.Writev(q)
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
	for _, t := range trackers {
		t.Done(written)
	}
	clear(q)
	o.mu.Lock()
	if o.mu.spare == nil && cap(q) <= 64 {
		o.mu.spare = q[:0] // reuse small queues; let big ones go
	}
	o.mu.Unlock()
	return nil
}

// discard drops whatever is queued: the connection is gone.
func (o *outbox) discard() {
	o.mu.Lock()
	o.mu.dead = true
	o.stopped.Store(true)
	clear(o.mu.q)
	trackers := o.mu.trackers
	o.mu.q, o.mu.spare, o.mu.trackers, o.mu.bytes = nil, nil, nil, 0
	o.mu.Unlock()
	for _, t := range trackers {
		t.Done(false) // never written: the sender requeues it offline
	}
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
	c.e.log.Warn("slow consumer closed", "conn_id", c.id, "remote", c.remote, "outbound", gc.OutboundBuffered())
	c.out.discard()
	c.closeCode = ClosePolicy
	c.phase.Store(int32(phaseClosing))
	_, _ = gc.Write(slowConsumerFrame)
	_ = gc.Close()
}

// closingQueued reports whether a CLOSE is queued or the connection is
// dead: frames still in the inbound buffer are then not served.
func (o *outbox) closingQueued() bool { return o.stopped.Load() }
