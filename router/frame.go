package router

import (
	"sync"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// Every reply and push is encoded in a pooled scratch buffer. Connections
// copy what they are sent (Session.Send, Hub.Deliver), so a frame sent at
// once (a chat's ack and push, on the committer) is sent from that buffer
// and costs no allocation (borrowFrame). A frame kept for later (a reply
// waiting for its turn) is copied once into a frame of exactly its size
// (textFrame).

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledScratch keeps a rare huge page from pinning its buffer.
const maxPooledScratch = 64 << 10

// textFrame returns one TEXT frame holding what build appends to its
// argument, in a slice of its own.
func textFrame(build func(dst []byte) []byte) []byte {
	f, sp := borrowFrame(build)
	f = append(make([]byte, 0, len(f)), f...)
	giveBack(sp)
	return f
}

// borrowFrame encodes one TEXT frame holding what build appends to its
// argument in a pooled buffer, with room for the header left in front. The
// frame is valid until giveBack(sp); meanwhile it may be sent, not kept.
func borrowFrame(build func(dst []byte) []byte) (frame []byte, sp *[]byte) {
	sp = scratchPool.Get().(*[]byte)
	b := build((*sp)[:codec.MaxFrameHeader])
	var hdr [codec.MaxFrameHeader]byte
	h := codec.AppendFrameHeader(hdr[:0], codec.OpText, len(b)-codec.MaxFrameHeader)
	start := codec.MaxFrameHeader - len(h)
	copy(b[start:], h)
	*sp = b
	return b[start:], sp
}

// giveBack returns borrowFrame's buffer to the pool.
func giveBack(sp *[]byte) {
	if cap(*sp) <= maxPooledScratch {
		*sp = (*sp)[:0]
		scratchPool.Put(sp)
	}
}

// replyFrame encodes one envelope as a fresh frame.
func replyFrame(code codec.Code, cmd codec.Cmd, data []byte) []byte {
	return textFrame(func(b []byte) []byte { return codec.AppendEnvelope(b, code, cmd, data) })
}

// appendAck appends a chat ack: code, and data {createTime, id, seq}
// (ext).
func appendAck(b []byte, code codec.Code, m *storage.Message) []byte {
	b = codec.AppendEnvelopeStart(b, code, codec.CmdChatAck)
	o := codec.BeginObject(b)
	o.Int("createTime", m.CreateTime)
	o.Hex("id", m.ID[:])
	o.Int("seq", int64(m.Seq))
	return codec.AppendEnvelopeEnd(o.End(), code)
}

// replyAck answers a chat with its ack (PROTOCOL §4.1) from a borrowed
// frame (replySent).
func (r *Router) replyAck(st *ConnState, e *entry, code codec.Code, m *storage.Message) {
	f, sp := borrowFrame(func(b []byte) []byte { return appendAck(b, code, m) })
	r.replySent(st, e, f)
	giveBack(sp)
}

// pushFrame is the push of a chat message (PROTOCOL §4.2), encoded once
// for every connection it goes to.
func pushFrame(m *storage.Message) []byte {
	return textFrame(func(b []byte) []byte { return appendPush(b, m) })
}

// appendPush appends the push of a chat message.
func appendPush(b []byte, m *storage.Message) []byte {
	b = codec.AppendEnvelopeStart(b, 0, codec.CmdChat)
	return codec.AppendEnvelopeEnd(appendMessage(b, m), 0)
}
