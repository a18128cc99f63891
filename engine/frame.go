package engine

import (
	"encoding/binary"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/imgate/imgate/codec"

	"github.com/imgate/imgate/router"
)

// Close status codes the engine sends (RFC 6455 §7.4.1).
const (
	CloseNormal      uint16 = 1000
	CloseGoingAway   uint16 = 1001
	CloseProtocol    uint16 = 1002
	CloseUnsupported uint16 = 1003
	CloseInvalidData uint16 = 1007
	ClosePolicy      uint16 = 1008
	CloseTooBig      uint16 = 1009
	CloseTryAgain    uint16 = 1013
)

// maxControlPayload is RFC 6455 §5.5's bound on control frame payloads.
const maxControlPayload = 125

// frameHeader parses the header at the start of b. It reports ok=false
// when b holds less than the whole header; the caller waits for more. It
// never allocates and reads nothing past the header.
func frameHeader(b []byte) (h ws.Header, size int, ok bool) {
	if len(b) < 2 {
		return h, 0, false
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] >> 4) & 0x7
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	size = 2
	switch n := b[1] & 0x7f; n {
	case 126:
		if len(b) < 4 {
			return h, 0, false
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
		size = 4
	case 127:
		if len(b) < 10 {
			return h, 0, false
		}
		h.Length = int64(binary.BigEndian.Uint64(b[2:])) // negative if the MSB is set
		size = 10
	default:
		h.Length = int64(n)
	}
	if h.Masked {
		if len(b) < size+4 {
			return h, 0, false
		}
		copy(h.Mask[:], b[size:size+4])
		size += 4
	}
	return h, size, true
}

// checkHeader returns the close status a header earns, or 0 if it is
// acceptable: RFC 6455 §5.2 and §5.5 with no extension negotiated, and
// PROTOCOL §2 (masking, size limit).
func checkHeader(h ws.Header, maxMessage int) (uint16, string) {
	switch {
	case h.Rsv != 0:
		return CloseProtocol, "reserved bits set"
	case h.OpCode.IsReserved():
		return CloseProtocol, "reserved opcode"
	case !h.Masked:
		return CloseProtocol, "client frame not masked"
	case h.Length < 0:
		return CloseProtocol, "bad frame length"
	case h.OpCode.IsControl() && (!h.Fin || h.Length > maxControlPayload):
		return CloseProtocol, "bad control frame"
	case h.Length > int64(maxMessage):
		return CloseTooBig, "message too big"
	}
	return 0, ""
}

// outPool holds the buffers replies made on the loop are gathered in, so a
// burst of frames costs one write.
var outPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledOut keeps an occasional huge reply out of the pool.
const maxPooledOut = 64 << 10

// readFrames serves every whole frame in the inbound buffer: control frames
// here, messages through router.Handle. Partial frames stay buffered until
// the next OnTraffic; only whole frames are discarded. It runs on the loop.
func (c *conn) readFrames(gc gnet.Conn) gnet.Action {
	buf, _ := gc.Peek(-1)
	bp := outPool.Get().(*[]byte)
	out := (*bp)[:0]
	off := 0
	var code uint16
	var reason string
	for code == 0 && c.phaseIs(phaseOpen) && !c.closingQueued() && !c.e.draining.Load() {
		h, hsize, ok := frameHeader(buf[off:])
		if !ok {
			break
		}
		if code, reason = checkHeader(h, c.e.opts.MaxMessageSize); code != 0 {
			break
		}
		end := off + hsize + int(h.Length)
		if end > len(buf) {
			break // the rest of the payload is still on its way
		}
		payload := buf[off+hsize : end]
		ws.Cipher(payload, h.Mask, 0)
		off = end
		out, code, reason = c.frame(h, payload, out)
	}
	if off > 0 {
		_, _ = gc.Discard(off) // gnet reads Discard(0) as "everything"
	}
	if code != 0 {
		c.closeOnLoop(gc, out, code, reason)
	} else if len(out) > 0 {
		c.flushFirst(gc)
		if c.phaseIs(phaseOpen) {
			if gc.OutboundBuffered() > c.e.opts.MaxPending {
				c.closeSlowOnLoop(gc) // replies to a client that does not read them
			} else if c.write(gc, out) {
				c.observe(gc)
			}
		}
	}
	if cap(out) <= maxPooledOut {
		*bp = out[:0]
		outPool.Put(bp)
	}
	return gnet.None
}

// frame serves one unmasked frame. It returns out extended with replies,
// or a close status when the frame breaks the protocol.
func (c *conn) frame(h ws.Header, payload, out []byte) ([]byte, uint16, string) {
	switch h.OpCode {
	case ws.OpPing:
		return codec.AppendFrame(out, codec.OpPong, payload), 0, ""
	case ws.OpPong:
		return out, 0, "" // activity is all a pong is for
	case ws.OpClose:
		code, reason := closeReply(payload)
		return out, code, reason
	case ws.OpContinuation:
		if c.fragOp == 0 {
			return out, CloseProtocol, "continuation without a message"
		}
		if len(c.pend)+len(payload) > c.e.opts.MaxMessageSize {
			return out, CloseTooBig, "message too big"
		}
		c.pend = append(c.pend, payload...)
		if !h.Fin {
			return out, 0, ""
		}
		op := c.fragOp
		c.fragOp = 0
		out, code, reason := c.message(ws.OpCode(op), c.pend, out)
		c.pend = c.pend[:0]
		if cap(c.pend) > 4<<10 {
			c.pend = nil // do not keep a big buffer on an idle connection
		}
		return out, code, reason
	default: // text or binary
		if c.fragOp != 0 {
			return out, CloseProtocol, "new message inside a fragmented one"
		}
		if !h.Fin {
			c.fragOp = byte(h.OpCode)
			c.pend = append(c.pend[:0], payload...)
			return out, 0, ""
		}
		return c.message(h.OpCode, payload, out)
	}
}

// message hands one whole message to the router.
func (c *conn) message(op ws.OpCode, payload, out []byte) ([]byte, uint16, string) {
	if op != ws.OpText {
		return out, CloseUnsupported, "binary messages are not accepted"
	}
	if !utf8.Valid(payload) {
		return out, CloseInvalidData, "invalid UTF-8"
	}
	if o := &c.e.opts; o.RateLimit > 0 {
		if c.rate == nil {
			c.rate = new(bucket) // idle connections need none
		}
		now := time.Now().UnixNano()
		if !c.rate.take(now, float64(o.RateLimit), float64(o.RateBurst)) {
			// Receipt acks are not counted (PROTOCOL §7.2): served, and
			// not a refusal towards a flood.
			if !router.IsAck(payload) && c.rate.refuse(now) {
				return out, ClosePolicy, "rate limit exceeded"
			}
			return c.e.r.Refuse(c, payload, out), 0, ""
		}
	}
	return c.e.r.Handle(c, payload, out)
}

// closeReply returns the status to echo to a peer's CLOSE (RFC 6455 §5.5.1,
// §7.4): its own code when valid, 1000 when it sent none, 1002 or 1007 for
// a malformed one.
func closeReply(payload []byte) (uint16, string) {
	switch {
	case len(payload) == 0:
		return CloseNormal, ""
	case len(payload) == 1:
		return CloseProtocol, "bad close payload"
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(payload))
	if !validCloseCode(code) {
		return CloseProtocol, "bad close code"
	}
	if !utf8.Valid(payload[2:]) {
		return CloseInvalidData, "invalid UTF-8 in close reason"
	}
	return uint16(code), ""
}

// validCloseCode reports whether a peer may send code (RFC 6455 §7.4).
func validCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
