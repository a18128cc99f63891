package router

import (
	"sync"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// Every reply and push is encoded in a pooled scratch buffer, then copied
// once into a frame of exactly its size, which the connection owns until
// it is written: one allocation per frame, however it was built.

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledScratch keeps a rare huge page from pinning its buffer.
const maxPooledScratch = 64 << 10

// textFrame returns one TEXT frame holding what build appends to its
// argument.
func textFrame(build func(dst []byte) []byte) []byte {
	sp := scratchPool.Get().(*[]byte)
	p := build((*sp)[:0])
	f := codec.AppendTextFrame(make([]byte, 0, codec.MaxFrameHeader+len(p)), p)
	if cap(p) <= maxPooledScratch {
		*sp = p[:0]
		scratchPool.Put(sp)
	}
	return f
}

// replyFrame encodes one envelope as a fresh frame (Send takes ownership).
func replyFrame(code codec.Code, cmd codec.Cmd, data []byte) []byte {
	return textFrame(func(b []byte) []byte { return codec.AppendEnvelope(b, code, cmd, data) })
}

// ackFrame is a chat ack: code, and data {createTime, id, seq} (ext).
func ackFrame(code codec.Code, m *storage.Message) []byte {
	return textFrame(func(b []byte) []byte {
		b = codec.AppendEnvelopeStart(b, code, codec.CmdChatAck)
		o := codec.BeginObject(b)
		o.Int("createTime", m.CreateTime)
		o.Hex("id", m.ID[:])
		o.Int("seq", int64(m.Seq))
		return codec.AppendEnvelopeEnd(o.End(), code)
	})
}

// pushFrame is the push of a chat message (PROTOCOL §4.2), encoded once
// for every connection it goes to.
func pushFrame(m *storage.Message) []byte {
	return textFrame(func(b []byte) []byte {
		b = codec.AppendEnvelopeStart(b, 0, codec.CmdChat)
		return codec.AppendEnvelopeEnd(appendMessage(b, m), 0)
	})
}
