package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/router"
)

// phase is where a connection is in its life. Written by its loop (and by
// a router worker for phaseLogin→phaseOpen, through a loop callback), read
// by the ticker.
type phase int32

const (
	phaseHandshake phase = iota // reading the HTTP upgrade
	phaseLogin                  // upgraded; the router checks the token
	phaseOpen                   // logged in; frames are served
	phaseClosing                // CLOSE sent; waiting for the peer
)

// conn is the state of one connection, attached to its gnet.Conn. It is
// kept small, since idle connections are most of them: what only some
// need (the rate bucket, a fragment buffer) is allocated on first use
// (bench connect reports the server's RSS per connection).
type conn struct {
	id uint64       // set in OnOpen; read-only afterwards
	e  *Engine      // read-only
	gc gnet.Conn    // read-only; off the loop only its concurrency-safe methods
	lf *loopFlusher // the flusher of gc's loop; read-only

	// Owned by the event loop.
	// pend holds the 101 response from the upgrade until the login
	// result goes out with it in one write (phaseLogin), then the
	// reassembled payload of a fragmented message (phaseOpen).
	pend      []byte
	rate      *bucket       // messages allowed, once the first came; see ratelimit.go
	hsScanned int32         // bytes of the upgrade request already searched for CRLFCRLF
	setIdx    int32         // index in its connSet shard; guarded by the shard's lock
	closeCode atomic.Uint32 // status of the CLOSE this side sent or queued, for logs and metrics
	fragOp    byte          // opcode of the fragmented message; 0 when none
	watched   bool          // on its loop's watch (outbound.go)
	// handed counts the bytes given to gnet; inflight the followed frames
	// among them not yet known sent (outbound.go).
	handed   uint64
	inflight []inflight
	// unacked are the followed pushes an acknowledging connection's
	// client has but did not acknowledge yet (PROTOCOL §7.2), in order.
	unacked []inflight

	// Shared: atomics only.
	phase    atomic.Int32
	closed   atomic.Bool // OnClose ran
	acking   atomic.Bool // logged in with ack=1 (PROTOCOL §7.2)
	ident    atomic.Pointer[router.Identity]
	lastSeen atomic.Int64 // liveness clock (Engine.clock) of the last byte received
	lastPing atomic.Int64 // liveness clock of the last PING sent
	// deadline is the real unix nanos after which the sweep drops the
	// socket: the handshake timeout until login, the close grace once
	// closing.
	deadline atomic.Int64

	out outbox // frames queued by other goroutines; see outbound.go

	rs router.ConnState // the router's; see router.Session.State
}

var _ router.Session = (*conn)(nil)

// Identity implements router.Session.
func (c *conn) Identity() router.Identity {
	if id := c.ident.Load(); id != nil {
		return *id
	}
	return router.Identity{}
}

// State implements router.Session.
func (c *conn) State() *router.ConnState { return &c.rs }

func (c *conn) phaseIs(p phase) bool { return phase(c.phase.Load()) == p }

// OnOpen attaches a new conn to the gnet connection.
func (e *Engine) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	if e.draining.Load() {
		return nil, gnet.Close
	}
	c := &conn{id: e.nextID.Add(1), e: e, gc: gc, lf: e.flushers.of(gc.EventLoop())}
	c.lastSeen.Store(e.clock())
	c.deadline.Store(time.Now().UnixNano() + int64(e.hsWait))
	gc.SetContext(c)
	e.conns.add(c)
	return nil, gnet.None
}

// OnClose forgets the connection everywhere.
func (e *Engine) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	c.closed.Store(true)
	c.settle(gc)
	c.discard()
	if id := c.ident.Load(); id != nil {
		e.reg.remove(id.UID, c)
		e.r.Gone(c)
	}
	e.conns.remove(c)
	if code := uint16(c.closeCode.Load()); code != 0 || !c.phaseIs(phaseHandshake) {
		e.closes.count(code) // a WebSocket connection, not a failed upgrade
	}
	c.pend = nil
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []slog.Attr{slog.Uint64("conn_id", c.id), slog.String("remote", remoteString(gc)), slog.Int("close", int(c.closeCode.Load()))}
		if id := c.ident.Load(); id != nil {
			attrs = append(attrs, slog.String("uid", id.ID))
		}
		if err != nil {
			attrs = append(attrs, slog.Any("err", err))
		}
		e.log.LogAttrs(context.Background(), slog.LevelDebug, "connection closed", attrs...)
	}
	e.connGone()
	return gnet.None
}

// OnTraffic reads what arrived: the upgrade request, then frames.
func (e *Engine) OnTraffic(gc gnet.Conn) gnet.Action {
	c := gc.Context().(*conn)
	c.lastSeen.Store(e.clock())
	switch phase(c.phase.Load()) {
	case phaseHandshake:
		if a := c.upgrade(gc); a != gnet.None || !c.phaseIs(phaseOpen) {
			return a
		}
		return c.readFrames(gc)
	case phaseLogin:
		// Frames wait in gnet's buffer until the router has checked the
		// token; login completion wakes us. Bound what a client may pile
		// up before that.
		if gc.InboundBuffered() > c.e.opts.MaxMessageSize+MaxHeaderBytes {
			c.closeOnLoop(gc, nil, ClosePolicy, "too much data before login")
		}
		return gnet.None
	case phaseOpen:
		if len(c.inflight) > 0 {
			c.confirm(gc) // the peer is active: see what it took since
		}
		return c.readFrames(gc)
	default: // closing: the peer's remaining bytes are of no interest
		_, _ = gc.Discard(-1)
		return gnet.None
	}
}

// loginDone receives the router's verdict on the upgrade token. It runs on
// a router worker.
func (c *conn) loginDone(res router.LoginResult) {
	if !res.OK {
		c.Send(res.Frame)
		c.Close(ClosePolicy, "login failed")
		return
	}
	id := res.Identity
	c.ident.Store(&id)
	if res.Ack {
		c.SetAcking() // before it joins the registry: every push is followed
	}
	// In a cluster every node learns of the login before its reply goes
	// out (PROTOCOL §8); on one node this runs at once.
	c.e.r.Announce(id, func(ok bool, end func()) {
		if !ok {
			c.ident.Store(nil) // never registered: nothing to forget
			c.Send(loginRefusedFrame)
			c.Close(ClosePolicy, "too many connections")
			end()
			return
		}
		err := c.gc.AsyncWritev(nil, func(gc gnet.Conn, err error) error {
			c.activate(gc, err, res)
			end()
			return nil
		})
		if err != nil {
			end()
		}
	})
}

// activate opens a logged-in connection, on its loop, in one task: the
// 101 response and the login frame are written in one write, the connection turns open and only then joins
// the registry. So the login frame is the first frame the client sees (no
// push can overtake it), and the frames the client sends on reading it
// find the connection open. Frames that arrived during the login are
// served at once.
func (c *conn) activate(gc gnet.Conn, err error, res router.LoginResult) {
	if err != nil || c.closed.Load() || !c.phase.CompareAndSwap(int32(phaseLogin), int32(phaseOpen)) {
		return // closed meanwhile: OnClose has run, nothing to register
	}
	uid, frame := res.Identity.UID, res.Frame
	// Registered before the login reply is written: once the client reads
	// it, a close of all its user's connections (cmd 14) or a push must
	// find this one. Pushes queued meanwhile flush after this task.
	if !c.e.reg.add(uid, c, c.e.opts.MaxConnsPerUser) {
		c.ident.Store(nil) // never registered: nothing to forget
		out := append(c.pend, loginRefusedFrame...)
		c.pend = nil
		c.closeOnLoop(gc, out, ClosePolicy, "too many connections")
		return
	}
	if !c.e.admit(res) {
		// The user logged out while this login was checked (PROTOCOL §1.5).
		c.refuseLogin(gc, uid, "logged out")
		return
	}
	resp := c.pend
	c.pend = nil
	bp := outPool.Get().(*[]byte)
	out := append(append((*bp)[:0], resp...), frame...)
	c.write(gc, out)
	if cap(out) <= maxPooledOut {
		*bp = out[:0]
		outPool.Put(bp)
	}
	if gc.InboundBuffered() > 0 {
		c.readFrames(gc)
	}
}

// refuseLogin ends a connection whose login is refused after it joined
// the registry: the 101, 10008 and a CLOSE, in that order. Pushes that
// reached it meanwhile are not written: they would precede the 101 and
// belong to no session. They stay in the outbox, which the closing
// connection drops as not written, so they are queued (PROTOCOL §4.3). It
// runs on the loop.
func (c *conn) refuseLogin(gc gnet.Conn, uid uint64, reason string) {
	c.e.log.Debug("closing connection", "conn_id", c.id, "code", ClosePolicy, "reason", reason)
	c.e.reg.remove(uid, c)
	c.ident.Store(nil)
	out := append(c.pend, loginRefusedFrame...)
	c.pend = nil
	c.closeCode.Store(uint32(ClosePolicy))
	out = codec.AppendCloseFrame(out, ClosePolicy, reason)
	if c.write(gc, out) && !c.closed.Load() {
		c.beginClosing(gc)
	}
}

// loginRefusedFrame answers a login past the per-user connection cap.
var loginRefusedFrame = codec.AppendTextFrame(nil, codec.AppendEnvelope(nil, codec.CodeLoginFailed, codec.CmdLoginResp, nil))

// Close implements router.Session: a CLOSE frame after everything queued,
// then the end of the connection. Safe for concurrent use.
func (c *conn) Close(code uint16, reason string) {
	c.e.log.Debug("closing connection", "conn_id", c.id, "code", code, "reason", reason)
	c.closeQueued(codec.AppendCloseFrame(nil, code, reason), code)
}

// closeOnLoop writes out (replies so far) and a CLOSE frame, then half-closes
// the socket so the peer reads our CLOSE and EOF at once; its own CLOSE or
// EOF, or the grace period, ends the connection. It must run on the loop.
func (c *conn) closeOnLoop(gc gnet.Conn, out []byte, code uint16, reason string) {
	if c.phaseIs(phaseClosing) {
		c.write(gc, out)
		return
	}
	c.closeCode.Store(uint32(code))
	c.e.log.Debug("closing connection", "conn_id", c.id, "code", code, "reason", reason)
	c.deregister()
	c.flushFirst(gc)
	if resp := c.takeUpgradeResponse(); resp != nil {
		out = append(resp, out...) // the client must see the 101 first
	}
	out = codec.AppendCloseFrame(out, code, reason)
	if c.write(gc, out) && !c.closed.Load() {
		c.beginClosing(gc)
	}
}

// flushFirst writes what the outbox holds before a reply made on the loop,
// which must not overtake replies queued earlier. It runs on the loop.
func (c *conn) flushFirst(gc gnet.Conn) {
	c.out.mu.Lock()
	pending := c.out.mu.q != nil && (c.out.mu.q.buf != nil || c.out.mu.q.closing != nil)
	c.out.mu.Unlock()
	if pending {
		f := c.lf
		c.flush(gc, &f.scratch)
	}
}

// beginClosing moves a connection whose CLOSE is written to phaseClosing.
func (c *conn) beginClosing(gc gnet.Conn) {
	c.deregister()
	c.phase.Store(int32(phaseClosing))
	c.deadline.Store(time.Now().Add(closeGrace).UnixNano())
	_, _ = gc.Discard(-1)
	if gc.OutboundBuffered() == 0 {
		_ = unix.Shutdown(gc.Fd(), unix.SHUT_WR)
	}
}

// takeUpgradeResponse returns the 101 response still held back while the
// login is checked, or nil, and forgets it. It runs on the loop.
func (c *conn) takeUpgradeResponse() []byte {
	if !c.phaseIs(phaseLogin) {
		return nil
	}
	resp := c.pend
	c.pend = nil
	return resp
}

// remoteString is the peer's address for logs. It runs on the loop.
func remoteString(gc gnet.Conn) string {
	if ra := gc.RemoteAddr(); ra != nil {
		return ra.String()
	}
	return ""
}

// connSet holds every open connection, for the ticker and for shutdown.
// Each shard is a slice, not a map: a connection knows its index
// (conn.setIdx), so removal swaps the last one into its place, and a
// connection costs the set one pointer.
type connSet struct {
	shards [connShards]connShard
	n      atomic.Int64
}

const connShards = 64

type connShard struct {
	mu   sync.Mutex
	list []*conn
	_    [32]byte // keep shards on separate cache lines
}

func (s *connSet) add(c *conn) {
	sh := &s.shards[c.id%connShards]
	sh.mu.Lock()
	c.setIdx = int32(len(sh.list))
	sh.list = append(sh.list, c)
	sh.mu.Unlock()
	s.n.Add(1)
}

func (s *connSet) remove(c *conn) {
	sh := &s.shards[c.id%connShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i := int(c.setIdx)
	if i < 0 || i >= len(sh.list) || sh.list[i] != c {
		return
	}
	last := len(sh.list) - 1
	sh.list[i] = sh.list[last]
	sh.list[i].setIdx = int32(i)
	sh.list[last] = nil
	sh.list = sh.list[:last]
	c.setIdx = -1
	if cap(sh.list) > 64 && len(sh.list) < cap(sh.list)/4 {
		// Most connections left: give the memory back.
		sh.list = append(make([]*conn, 0, 2*len(sh.list)), sh.list...)
	}
	s.n.Add(-1)
}

func (s *connSet) len() int { return int(s.n.Load()) }

// each calls fn for every connection, one shard at a time, with no lock
// held during fn.
func (s *connSet) each(fn func(*conn)) {
	var batch []*conn
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		batch = append(batch[:0], sh.list...)
		sh.mu.Unlock()
		for _, c := range batch {
			fn(c)
		}
		clear(batch)
	}
}
