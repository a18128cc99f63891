package router

import (
	"sync/atomic"

	"github.com/imgate/imgate/codec"
)

// Request counts: every request a connection sent, by its command and the
// code of its answer, kept without a lock in a fixed table so that counting
// takes one atomic add and allocates nothing (Options.RequestCounts).

// codeSlots are the answer codes a table row holds: no code (no reply, or a
// reply without one such as the heartbeat's), 200, 10000-10047, and any
// other code.
const (
	slotNone   = 0
	slot200    = 1
	slotFirst  = 2 // 10000
	codeSpan   = 48
	slotOther  = slotFirst + codeSpan
	codeSlots  = slotOther + 1
	firstCode  = codec.CodeSent
	otherCode  = codec.Code(0xffff)
	noCodeCode = codec.Code(0)
)

type requestCounts [codec.MaxCmd][codeSlots]atomic.Uint64

func codeSlot(code codec.Code) int {
	switch {
	case code == noCodeCode:
		return slotNone
	case code == codec.CodeSuccess:
		return slot200
	case code >= firstCode && code < firstCode+codeSpan:
		return slotFirst + int(code-firstCode)
	}
	return slotOther
}

func slotCode(slot int) codec.Code {
	switch slot {
	case slotNone:
		return noCodeCode
	case slot200:
		return codec.CodeSuccess
	case slotOther:
		return otherCode
	}
	return firstCode + codec.Code(slot-slotFirst)
}

// count records a request of cmd answered by frames (the first frame's
// code; none when frames is empty or its envelope has no code).
func (r *Router) count(cmd codec.Cmd, frames []byte) {
	if r.counts == nil {
		return
	}
	r.countCode(cmd, codec.FrameCode(frames))
}

// countCode records a request of cmd answered with code (0: none).
func (r *Router) countCode(cmd codec.Cmd, code codec.Code) {
	if r.counts == nil || int(cmd) >= len(r.counts) {
		return
	}
	r.counts[cmd][codeSlot(code)].Add(1)
}

// RequestCounts calls f for every (command, answer code) pair counted so
// far with its count, commands and codes ascending. code is 0 for
// requests answered without a code (a receipt ack, which has no reply on
// success, or a heartbeat) and 0xffff for a code outside the protocol's
// (PROTOCOL §6). Nothing is counted unless Options.RequestCounts is set.
// Safe for concurrent use.
func (r *Router) RequestCounts(f func(cmd codec.Cmd, code codec.Code, n uint64)) {
	if r.counts == nil {
		return
	}
	for cmd := range r.counts {
		for slot := range r.counts[cmd] {
			if n := r.counts[cmd][slot].Load(); n > 0 {
				f(codec.Cmd(cmd), slotCode(slot), n)
			}
		}
	}
}

// RateLimited reports how many requests the connections' rate limit
// refused (answered 10028 without running them, PROTOCOL §6).
func (r *Router) RateLimited() uint64 { return r.limited.Load() }
