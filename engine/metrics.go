package engine

import "sync/atomic"

// closeCounts counts ended WebSocket connections by the status of the
// CLOSE the server sent (its own, or the echo of the client's), without a
// lock: RFC 6455's 1000-1015, and one slot for the rest (3000-4999).
type closeCounts [closeSlots]atomic.Uint64

const (
	closeFirst = 1000
	closeSpan  = 16
	closeSlots = closeSpan + 1 // the last: any other status
	// CloseAbnormal is RFC 6455's 1006: the connection ended without a
	// CLOSE from this side (the peer vanished, reset or ended it).
	CloseAbnormal uint16 = 1006
	// CloseOther stands for the statuses outside 1000-1015 in
	// CloseCounts.
	CloseOther uint16 = 0
)

func (cc *closeCounts) count(code uint16) {
	if code == 0 {
		code = CloseAbnormal
	}
	i := closeSpan // other
	if code >= closeFirst && code < closeFirst+closeSpan {
		i = int(code - closeFirst)
	}
	cc[i].Add(1)
}

// CloseCounts calls f with every close status counted so far and the
// number of WebSocket connections that ended with it: the status of the
// CLOSE the server sent or echoed (RFC 6455 §7.4; PROTOCOL §2), in
// ascending order, CloseAbnormal (1006) for a connection that ended
// without one, and last CloseOther (0) for the statuses outside
// 1000-1015. Safe for concurrent use.
func (e *Engine) CloseCounts(f func(code uint16, n uint64)) {
	for i := range e.closes {
		if n := e.closes[i].Load(); n > 0 {
			code := CloseOther
			if i < closeSpan {
				code = uint16(closeFirst + i)
			}
			f(code, n)
		}
	}
}
