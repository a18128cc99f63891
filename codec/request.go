package codec

import (
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"unsafe"

	"github.com/bytedance/sonic"
	"github.com/bytedance/sonic/decoder"
)

// Errors returned by Decode.
var (
	// ErrMalformed means the payload is not a JSON object of the expected
	// shape: not JSON, an array, trailing bytes, or a field of the wrong type.
	ErrMalformed = errors.New("codec: malformed packet")
	// ErrBadNumber means a numeric field holds a value that is not an
	// integer in range, such as 1.5, 1e3 or "abc".
	ErrBadNumber = errors.New("codec: bad number")
)

// Int is a lenient integer: the JSON number 13 or the string "13" (PROTOCOL
// §0). The zero value means absent or null. It aliases the decoded payload,
// like every string of a Request.
type Int = json.Number

// Request is one decoded client packet. Its strings and raw members alias
// the payload it was decoded from: the payload must outlive the Request and
// must not change while it is in use. Fields not used by a command are zero.
type Request struct {
	Cmd        Int                    `json:"cmd"`
	Token      string                 `json:"token"`
	UserID     string                 `json:"userId"`
	UserIDAlt  string                 `json:"userid"`
	GroupID    string                 `json:"groupId"`
	GroupIDAlt string                 `json:"group_id"`
	ID         string                 `json:"id"`
	From       string                 `json:"from"`
	To         string                 `json:"to"`
	ChatType   Int                    `json:"chatType"`
	MsgType    Int                    `json:"msgType"`
	Content    sonic.NoCopyRawMessage `json:"content"`
	Extras     sonic.NoCopyRawMessage `json:"extras"`
	Type       Int                    `json:"type"`
	FromUserID string                 `json:"fromUserId"`
	BeginTime  Int                    `json:"beginTime"`
	EndTime    Int                    `json:"endTime"`
	Offset     Int                    `json:"offset"`
	Count      Int                    `json:"count"`
	BeforeSeq  Int                    `json:"beforeSeq"`
	AfterSeq   Int                    `json:"afterSeq"`
	Order      string                 `json:"order"`
	HBByte     Int                    `json:"hbbyte"`
	// Reliable delivery (PROTOCOL §7).
	Peer       string                 `json:"peer"`
	Seq        Int                    `json:"seq"`
	State      Int                    `json:"state"`
	Ack        Int                    `json:"ack"`
	BeforeTime Int                    `json:"beforeTime"`
	Convs      sonic.NoCopyRawMessage `json:"convs"`
}

// User returns userId, or its alias userid when userId is absent.
func (r *Request) User() string {
	if r.UserID != "" {
		return r.UserID
	}
	return r.UserIDAlt
}

// Group returns groupId, or its alias group_id when groupId is absent.
func (r *Request) Group() string {
	if r.GroupID != "" {
		return r.GroupID
	}
	return r.GroupIDAlt
}

// Command returns the request's command code. A missing, non-integer or
// out-of-range cmd yields CmdUnknown.
func (r *Request) Command() Cmd {
	n, ok, err := ParseInt(r.Cmd)
	if !ok || err != nil || n <= 0 || n >= MaxCmd {
		return CmdUnknown
	}
	return Cmd(n)
}

// ParseInt parses a lenient integer. ok is false when v is absent; err is
// ErrBadNumber when v is present but not an integer that fits in int64.
// It never allocates.
func ParseInt(v Int) (n int64, ok bool, err error) {
	s := string(v)
	if s == "" {
		return 0, false, nil
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	if s == "" || len(s) > 19 {
		return 0, true, ErrBadNumber
	}
	var u uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, true, ErrBadNumber
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, true, ErrBadNumber
		}
		return int64(-u), true, nil // -u wraps to the two's complement, also for 1<<63
	}
	if u > 1<<63-1 {
		return 0, true, ErrBadNumber
	}
	return int64(u), true, nil
}

// Decoder decodes payloads into its Request without allocating in steady
// state. Acquire one with AcquireDecoder and give it back with
// ReleaseDecoder; a Decoder is not safe for concurrent use.
type Decoder struct {
	dec decoder.Decoder
	Req Request
}

var decoderPool = sync.Pool{New: func() any { return new(Decoder) }}

// AcquireDecoder returns an empty Decoder from the pool.
func AcquireDecoder() *Decoder { return decoderPool.Get().(*Decoder) }

// ReleaseDecoder resets d and returns it to the pool. Neither d nor its
// Request may be used afterwards.
func ReleaseDecoder(d *Decoder) {
	d.Req = Request{}
	d.dec.Reset("")
	decoderPool.Put(d)
}

// Decode parses payload into d.Req, which then aliases payload (see
// Request). On error d.Req is reset and the error is ErrMalformed.
func (d *Decoder) Decode(payload []byte) error {
	d.Req = Request{}
	if len(payload) == 0 || firstNonSpace(payload) != '{' {
		return ErrMalformed
	}
	d.dec.Reset(unsafe.String(unsafe.SliceData(payload), len(payload)))
	// ValidateString rejects invalid UTF-8, raw control characters and bad
	// escapes in every string, skipped members included.
	d.dec.SetOptions(decoder.OptionValidateString)
	if err := d.dec.Decode(&d.Req); err != nil {
		d.Req = Request{}
		return ErrMalformed
	}
	if err := d.dec.CheckTrailings(); err != nil {
		d.Req = Request{}
		return ErrMalformed
	}
	// Raw members are echoed into other clients' JSON, so they must be valid
	// JSON themselves. ValidateString already makes sonic check what it
	// skips; this second check is cheap (no allocation, members are small)
	// and does not depend on the decoder's skipping being strict.
	if !validRaw(d.Req.Content) || !validRaw(d.Req.Extras) || !validRaw(d.Req.Convs) {
		d.Req = Request{}
		return ErrMalformed
	}
	return nil
}

// validRaw uses encoding/json: sonic.Valid accepts bad escapes such as "\0"
// (found by FuzzDecode).
func validRaw(b sonic.NoCopyRawMessage) bool { return len(b) == 0 || json.Valid(b) }

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// Pretouch compiles the decoders of the packet types so that the first
// packets after start do not pay for JIT compilation. main calls it once.
func Pretouch() error {
	return decoder.Pretouch(reflect.TypeOf(Request{}))
}

// PeekCmd returns the cmd of a payload that Decode refused (a member of
// the wrong type): the top-level "cmd" member alone, or CmdUnknown. It
// lets a refused request be answered with its own reply command.
func PeekCmd(payload []byte) Cmd {
	n, err := sonic.Get(payload, "cmd")
	if err != nil {
		return CmdUnknown
	}
	raw, err := n.Raw()
	if err != nil {
		return CmdUnknown
	}
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	r := Request{Cmd: Int(raw)}
	return r.Command()
}
