package codec

import (
	"encoding/binary"
	"unicode/utf8"
)

// Opcodes of the frames the server sends (RFC 6455 §5.2).
const (
	OpText  = 0x1
	OpClose = 0x8
	OpPing  = 0x9
	OpPong  = 0xA
)

// MaxFrameHeader is the largest header a server frame needs: unmasked, so
// 2 bytes plus up to 8 of extended length.
const MaxFrameHeader = 10

// AppendFrameHeader appends the header of one final, unmasked server frame
// with opcode op and payload length n.
func AppendFrameHeader(dst []byte, op byte, n int) []byte {
	b0 := 0x80 | op
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xFFFF:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// AppendFrame appends one complete final, unmasked frame.
func AppendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = AppendFrameHeader(dst, op, len(payload))
	return append(dst, payload...)
}

// AppendTextFrame appends payload as one TEXT frame: the form of every
// packet the server sends.
func AppendTextFrame(dst []byte, payload []byte) []byte { return AppendFrame(dst, OpText, payload) }

// AppendCloseFrame appends a CLOSE frame with status code and reason. The
// reason is cut, on a rune boundary, to fit the 125-byte control payload:
// a peer closes with 1007 on a reason that is not valid UTF-8.
func AppendCloseFrame(dst []byte, code uint16, reason string) []byte {
	if len(reason) > 123 {
		n := 123
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	dst = AppendFrameHeader(dst, OpClose, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// FrameCode returns the status code of the envelope in the first frame of
// frames (server frames as AppendTextFrame makes them: `{"code":N,…}`), or
// 0 when frames is empty, is not a TEXT frame, or its envelope has no code
// (a heartbeat's reply, a push). It reads at most the frame's header and
// the code's digits.
func FrameCode(frames []byte) Code {
	if len(frames) < 2 || frames[0]&0x0f != OpText {
		return 0
	}
	p := frames[2:]
	switch frames[1] & 0x7f {
	case 126:
		p = frames[min(4, len(frames)):]
	case 127:
		p = frames[min(10, len(frames)):]
	}
	const prefix = `{"code":`
	if len(p) <= len(prefix) || string(p[:len(prefix)]) != prefix {
		return 0
	}
	var n int
	for _, c := range p[len(prefix):] {
		if c < '0' || c > '9' || n > 0xffff {
			break
		}
		n = n*10 + int(c-'0')
	}
	if n > 0xffff {
		return 0
	}
	return Code(n)
}
