package router

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

var errBadMessage = &Error{Code: codec.CodeBadMessage, Command: codec.CmdChatAck}

// chat stores and delivers one message (PROTOCOL §4.1-4.3): validate,
// write durably (group commit), then ack and push from the commit's
// completion. Group chat (chatType 1) arrives with the group layer.
func (r *Router) chat(c *Context) error {
	req, me := c.Req, c.Session.Identity()
	chatType, ok, err := codec.ParseInt(req.ChatType)
	if !ok || err != nil || (chatType != storage.ChatPrivate && chatType != storage.ChatGroup) {
		return errBadMessage
	}
	if req.From != "" && req.From != me.ID {
		return &Error{Code: codec.CodeForbidden, Command: codec.CmdChatAck}
	}
	msgType, ok, err := codec.ParseInt(req.MsgType)
	if err != nil || msgType < 0 || msgType > 1<<31-1 {
		return errBadMessage
	}
	content, err := contentText(req.Content, c.size)
	if err != nil || content == "" {
		return errBadMessage
	}
	extras, err := extrasObject(req.Extras)
	if err != nil {
		return errBadMessage
	}
	var id [16]byte
	clientID := req.ID != ""
	if clientID {
		if len(req.ID) != 32 || !isLowerHex(req.ID) {
			return errBadMessage
		}
		_, _ = hex.Decode(id[:], []byte(req.ID))
	} else {
		id = r.newMessageID()
	}
	if chatType == storage.ChatGroup {
		return r.groupChat(c, storage.Message{
			ID: id, From: me.UID, FromID: me.ID, MsgType: int(msgType), Content: content,
			Extras: extras, CreateTime: r.now().UnixMilli(),
		}, clientID)
	}
	if !ValidID(req.To) {
		return errBadMessage
	}
	to, err := r.db.UserByID(req.To)
	if errors.Is(err, storage.ErrNotFound) {
		return &Error{Code: codec.CodeReceiverMissing, Command: codec.CmdChatAck}
	}
	if err != nil {
		return err
	}

	m := storage.Message{
		ID: id, From: me.UID, To: to.UID, FromID: me.ID, ToID: to.ID,
		ChatType: storage.ChatPrivate, MsgType: int(msgType), Content: content, Extras: extras,
		CreateTime: r.now().UnixMilli(),
	}
	// The one online/offline decision: it picks the ack and the queue.
	online := r.hub.Online(to.UID)
	opts := storage.AppendOptions{Offline: !online, ClientID: clientID}
	switch {
	case me.Type == storage.UserVisitor && to.Type != storage.UserVisitor:
		opts.Visitor = me.UID
	case to.Type == storage.UserVisitor && me.Type != storage.UserVisitor:
		opts.Visitor = to.UID
	}
	d := chatDonePool.Get().(*chatDone)
	d.r, d.s, d.st, d.e, d.online = r, c.Session, c.st, c.e, online
	if err := r.db.AppendPrivateTo(m, opts, d); err != nil {
		d.recycle()
		return err
	}
	return errLater
}

// chatDone carries a private message from its submission to delivered,
// and is reused after.
type chatDone struct {
	r      *Router
	s      Session
	st     *ConnState
	e      *entry
	online bool
}

var chatDonePool = sync.Pool{New: func() any { return new(chatDone) }}

func (d *chatDone) Appended(res storage.AppendResult) {
	d.r.delivered(d.s, d.st, d.e, res, d.online)
	d.recycle()
}

func (d *chatDone) recycle() {
	*d = chatDone{}
	chatDonePool.Put(d)
}

// delivered runs on the storage committer once the message is durable:
// ack the sender (in its request's turn), push to the receiver and to the
// sender's other connections. It must not block.
func (r *Router) delivered(s Session, st *ConnState, e *entry, res storage.AppendResult, online bool) {
	if res.Err != nil {
		r.log.Error("append failed", "uid", s.Identity().ID, "err", res.Err)
		r.reply(st, e, replyFrame(codec.CodeBadMessage, codec.CmdChatAck, nil))
		return
	}
	m := &res.Msg
	if res.Duplicate {
		online = res.Online
	}
	code := codec.CodeOffline
	if online {
		code = codec.CodeSent
	}
	received := e.received // e is recycled once the ack leaves
	r.replyAck(st, e, code, m)
	if res.Duplicate {
		return // pushed the first time
	}
	push, sp := borrowFrame(func(b []byte) []byte { return appendPush(b, m) })
	defer giveBack(sp)
	if res.Delivery != (storage.Delivery{}) {
		// Followed to the socket: written by a connection of the
		// receiver, or else queued for it (storage.Delivery.Settle).
		p := pushPool.Get().(*trackedPush)
		p.r, p.d = r, res.Delivery
		p.t.Init(p)
		p.t.Seq, p.t.Conv, p.t.ConvID = m.Seq, m.FromID, m.From // for acknowledging connections (§7.2)
		p.t.Received = received
		r.hub.Deliver(m.To, push, nil, &p.t)
		p.t.Release()
	}
	// Offline: the message is queued; a receiver who connected since then
	// pulls it, so it is not also pushed (no duplicate). The sender's own
	// other terminals get a copy, not followed (PROTOCOL §7.2).
	r.hub.Deliver(m.From, push, s, nil)
}

// trackedPush is a private push followed to the receiver's sockets: the
// Tracker and the delivery it settles, in one allocation.
type trackedPush struct {
	t Tracker
	r *Router
	d storage.Delivery
}

// Followed implements Follower: the delivery is settled; p is reused.
func (p *trackedPush) Followed(_ *Tracker, written bool) {
	if !written {
		p.r.lost.Add(1)
	}
	p.d.Settle(written)
	p.r, p.d = nil, storage.Delivery{}
	pushPool.Put(p)
}

var pushPool = sync.Pool{New: func() any { return new(trackedPush) }}

// appendMessage appends the message object of pushes and pulls (PROTOCOL
// §4.2), keys in alphabetical order, extras passed through.
func appendMessage(dst []byte, m *storage.Message) []byte {
	o := codec.BeginObject(dst)
	o.Int("chatType", int64(m.ChatType))
	o.Int("cmd", int64(codec.CmdChat))
	o.String("content", m.Content)
	o.Int("createTime", m.CreateTime)
	if len(m.Extras) > 0 {
		o.Raw("extras", m.Extras)
	}
	o.String("from", m.FromID)
	if m.GroupID != "" {
		o.String("groupId", m.GroupID)
	}
	o.Hex("id", m.ID[:])
	o.Int("msgType", int64(m.MsgType))
	if m.Recalled {
		o.Raw("recalled", []byte("true")) // ext: the marker left in history
	}
	o.Int("seq", int64(m.Seq))
	if m.ToID != "" {
		o.String("to", m.ToID)
	}
	return o.End()
}

// maxAliasSlack is how many bytes of a request besides its content a
// stored message may keep alive by aliasing the content (contentText):
// what the commit queues charge per message beyond its text.
const maxAliasSlack = 256

// contentText turns the content member into stored text: a string as is,
// an object or array as compact JSON (compat), other scalars as their
// literal text. Absent or null is an error. size is the length of the
// payload raw is part of.
func contentText(raw []byte, size int) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", errBadContent
	case raw[0] == '"':
		// The decoder validated raw as JSON: without escapes, and valid
		// UTF-8 (which Unmarshal would otherwise repair), it is its text.
		if n := len(raw); n >= 2 && raw[n-1] == '"' {
			if in := raw[1 : n-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
				if size-len(in) > maxAliasSlack {
					// A short text in a long request: a copy keeps the
					// message as small as the queues count it.
					return string(in), nil
				}
				// Most of the request's payload, which is never reused
				// (Router.enqueue copies each request): the message
				// keeps it rather than a copy.
				return unsafe.String(unsafe.SliceData(in), len(in)), nil
			}
		}
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case raw[0] == '{' || raw[0] == '[':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return "", err
		}
		return buf.String(), nil
	default:
		return string(raw), nil
	}
}

var errBadContent = errors.New("router: bad content")

// extrasObject returns extras as raw JSON when it is an object; absent or
// null is nil; anything else is an error.
func extrasObject(raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return nil, nil
	case raw[0] == '{':
		return append([]byte(nil), raw...), nil
	}
	return nil, errBadContent
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

var idCounter atomic.Uint64

// newMessageID returns a time-ordered unique id: 6 bytes of milliseconds,
// 4 of a process counter and 6 random (PROTOCOL §0).
func (r *Router) newMessageID() (id [16]byte) {
	ms := uint64(r.now().UnixMilli())
	binary.BigEndian.PutUint64(id[:8], ms<<16)
	binary.BigEndian.PutUint32(id[6:10], uint32(idCounter.Add(1)))
	_, _ = rand.Read(id[10:])
	return id
}
