package engine

import (
	"slices"

	"github.com/panjf2000/gnet/v2"
)

// The process-wide output budget (Options.MaxOutputTotal). Per-connection
// caps bound one reader, not many: ten thousand clients that stop reading
// could each hold a full cap. Past the budget, shed closes the connections
// holding the most unsent bytes, at once, until the rest fits in nine
// tenths of it; their undelivered messages stay queued offline (the
// followers of their frames learn they were not written). The shed runs
// apart from the senders; in a burst faster than it, once the budget is
// passed by a quarter, a frame for a connection holding more than an even
// share closes that connection (conn.send), so the budget is a bound, not
// a target, and readers that keep up (senders reading their acks) are
// never the ones closed.

// shed starts one pass over the connections, unless one is running. Safe
// for concurrent use; it never blocks.
func (e *Engine) shed() {
	if !e.shedding.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.shedding.Store(false)
		e.shedPass()
	}()
}

type heavy struct {
	c      *conn
	unsent int64
}

// shedPass closes the heaviest connections until the rest fit in nine
// tenths of the budget. Only a connection holding more than an even share
// of that target is a candidate: those alone hold all of the excess, so a
// connection that keeps up (a sender reading its acks) is never closed,
// even when the budget's counter runs ahead of what the listed
// connections hold (bytes of connections closing meanwhile, or shed by a
// send, not yet given back).
func (e *Engine) shedPass() {
	target := e.opts.MaxOutputTotal * 9 / 10
	if e.unsent.Load() <= target {
		return
	}
	share := target / int64(max(e.conns.len(), 1))
	var list []heavy
	var held int64
	e.conns.each(func(c *conn) {
		if n := c.unsentBytes(); n > 0 && !c.closed.Load() {
			held += n
			if n > share {
				list = append(list, heavy{c, n})
			}
		}
	})
	over := min(e.unsent.Load(), held) - target
	slices.SortFunc(list, func(a, b heavy) int {
		switch {
		case a.unsent > b.unsent:
			return -1
		case a.unsent < b.unsent:
			return 1
		}
		return 0
	})
	for _, h := range list {
		if over <= 0 {
			break
		}
		over -= h.unsent
		c := h.c
		c.deregister()
		c.out.mu.Lock()
		c.out.mu.dead = true // accept nothing more
		c.out.stopped.Store(true)
		c.out.mu.Unlock()
		_ = c.gc.AsyncWritev(nil, func(gc gnet.Conn, err error) error {
			if err == nil {
				c.dropSlowOnLoop(gc)
			}
			return nil
		})
	}
}

// overBudget reports whether a connection that would then hold held bytes
// must be closed: the process is past its hard output bound and the
// connection holds more than an even share of it.
func (e *Engine) overBudget(held int64) bool {
	hard := e.opts.MaxOutputTotal + e.opts.MaxOutputTotal/4
	if e.unsent.Load() <= hard {
		return false
	}
	return held > hard/int64(max(e.conns.len(), 1))
}

// unsentBytes is what the connection holds for its client: queued here and
// buffered in gnet when the loop last looked.
func (c *conn) unsentBytes() int64 {
	c.out.mu.Lock()
	n := int64(c.out.mu.bytes)
	c.out.mu.Unlock()
	return n + c.out.outbound.Load()
}
