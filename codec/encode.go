package codec

import (
	"encoding/hex"
	"strconv"
	"unicode/utf8"
)

// AppendEnvelope appends the reply envelope {"code","command","data","msg"}
// to dst and returns the extended slice; dst may be nil. A zero code omits
// both code and msg (pushes); a nil data omits data. data must be one valid
// JSON value; it is copied as is.
func AppendEnvelope(dst []byte, code Code, cmd Cmd, data []byte) []byte {
	if data == nil {
		dst = appendEnvelopeHead(dst, code, cmd)
		return AppendEnvelopeEnd(dst, code)
	}
	dst = AppendEnvelopeStart(dst, code, cmd)
	dst = append(dst, data...)
	return AppendEnvelopeEnd(dst, code)
}

// AppendEnvelopeStart appends an envelope up to its data value, which the
// caller appends next (exactly one JSON value) before AppendEnvelopeEnd
// with the same code: the data is encoded in place, never copied.
func AppendEnvelopeStart(dst []byte, code Code, cmd Cmd) []byte {
	return append(appendEnvelopeHead(dst, code, cmd), `,"data":`...)
}

func appendEnvelopeHead(dst []byte, code Code, cmd Cmd) []byte {
	dst = append(dst, '{')
	if code != 0 {
		dst = append(dst, `"code":`...)
		dst = strconv.AppendUint(dst, uint64(code), 10)
		dst = append(dst, ',')
	}
	dst = append(dst, `"command":`...)
	return strconv.AppendUint(dst, uint64(cmd), 10)
}

// AppendEnvelopeEnd closes an envelope begun by AppendEnvelopeStart.
func AppendEnvelopeEnd(dst []byte, code Code) []byte {
	if code != 0 {
		dst = append(dst, `,"msg":`...)
		dst = AppendString(dst, code.Text())
	}
	return append(dst, '}')
}

// HeartbeatByte is the hbbyte every heartbeat reply carries (compat).
const HeartbeatByte = -128

// AppendHeartbeat appends the heartbeat reply for server time nowMillis:
// {"command":13,"data":{"createTime":nowMillis,"hbbyte":-128}}.
func AppendHeartbeat(dst []byte, nowMillis int64) []byte {
	dst = append(dst, `{"command":13,"data":{"createTime":`...)
	dst = strconv.AppendInt(dst, nowMillis, 10)
	dst = append(dst, `,"hbbyte":`...)
	dst = strconv.AppendInt(dst, HeartbeatByte, 10)
	return append(dst, `}}`...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// U+2028 and U+2029 are escaped so the output is also valid JavaScript.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Object appends the members of one JSON object, in the order the caller
// adds them. Callers add keys in alphabetical order (PROTOCOL §0). The zero
// value is not usable: start one with BeginObject.
type Object struct {
	buf   []byte
	first bool
}

// BeginObject starts an object at the end of dst.
func BeginObject(dst []byte) Object { return Object{buf: append(dst, '{'), first: true} }

func (o *Object) key(k string) {
	if !o.first {
		o.buf = append(o.buf, ',')
	}
	o.first = false
	o.buf = append(o.buf, '"')
	o.buf = append(o.buf, k...)
	o.buf = append(o.buf, '"', ':')
}

// String adds a string member. k must need no escaping.
func (o *Object) String(k, v string) { o.key(k); o.buf = AppendString(o.buf, v) }

// Int adds an integer member.
func (o *Object) Int(k string, v int64) { o.key(k); o.buf = strconv.AppendInt(o.buf, v, 10) }

// Hex adds a string member holding v in lowercase hex.
func (o *Object) Hex(k string, v []byte) {
	o.key(k)
	o.buf = append(hex.AppendEncode(append(o.buf, '"'), v), '"')
}

// Raw adds a member whose value is already encoded JSON.
func (o *Object) Raw(k string, v []byte) { o.key(k); o.buf = append(o.buf, v...) }

// End closes the object and returns the extended buffer.
func (o *Object) End() []byte { return append(o.buf, '}') }
