package engine

import (
	"math/rand/v2"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/imgate/imgate/codec"
)

// pingFrame is the one PING every connection gets; built once.
var pingFrame = codec.AppendFrame(nil, codec.OpPing, nil)

// OnTick sweeps every connection for liveness (PROTOCOL §2). It runs on
// gnet's ticker goroutine, not on a loop: it reads atomics and acts only
// through the concurrency-safe Close and async writes.
func (e *Engine) OnTick() (time.Duration, gnet.Action) {
	now, live := time.Now().UnixNano(), e.clock()
	e.conns.each(func(c *conn) { e.sweep(c, now, live) })
	// Jitter keeps sweeps of many servers (and their pings) from aligning.
	return e.tick - time.Duration(rand.Int64N(int64(e.tick)/10+1)), gnet.None
}

// sweep applies the deadlines to c: now is real time (handshake timeout,
// close grace), live the liveness clock (ping, idle timeout).
func (e *Engine) sweep(c *conn, now, live int64) {
	switch phase(c.phase.Load()) {
	case phaseHandshake, phaseLogin:
		if now > c.deadline.Load() {
			_ = c.gc.Close()
		}
	case phaseOpen:
		c.trim()
		idle := live - c.lastSeen.Load()
		switch {
		case idle >= int64(e.opts.IdleTimeout):
			c.Close(CloseGoingAway, "idle timeout")
		case idle >= int64(e.opts.PingInterval) && live-c.lastPing.Load() >= int64(e.opts.PingInterval):
			c.lastPing.Store(live)
			c.Send(pingFrame)
		}
	case phaseClosing:
		if now > c.deadline.Load() {
			_ = c.gc.Close()
		}
	}
}
