package router

import (
	"errors"
	"sync"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// Typing events (PROTOCOL §7.6): forwarded to the peer's live connections,
// never stored. A change of state always goes; a repeat of the same state
// at most once per typingRepeat per (caller, peer).
const (
	typingRepeat = 1000 // ms
	// typingMaxPairs bounds the throttle's memory (~48 B a pair): past it,
	// pairs whose last event is older than typingRepeat are forgotten,
	// and if none is, the table starts over (a repeat may then pass early).
	typingMaxPairs = 1 << 16
)

type typingState struct {
	state int8
	at    int64 // ms of the last event forwarded
}

// typingThrottle remembers the last event of each (caller, peer).
type typingThrottle struct {
	mu    sync.Mutex
	pairs map[[2]uint64]typingState
}

// pass reports whether an event of state from a to b at now goes out, and
// records it if so.
func (t *typingThrottle) pass(a, b uint64, state int8, now int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pairs == nil {
		t.pairs = make(map[[2]uint64]typingState)
	}
	k := [2]uint64{a, b}
	if last, ok := t.pairs[k]; ok && last.state == state && now-last.at < typingRepeat {
		return false
	}
	if len(t.pairs) >= typingMaxPairs {
		for k, v := range t.pairs {
			if now-v.at >= typingRepeat {
				delete(t.pairs, k)
			}
		}
		if len(t.pairs) >= typingMaxPairs {
			clear(t.pairs)
		}
	}
	t.pairs[k] = typingState{state, now}
	return true
}

// typing serves cmd 33: {"cmd":33,"to":P,"state":0|1}. No reply; a bad
// request (unknown or own `to`, state not 0 or 1) answers 10029/34.
func (r *Router) typing(c *Context) error {
	me := c.Session.Identity()
	bad := &Error{Code: codec.CodeBadRequest, Command: codec.CmdTypingEvent}
	state, ok, err := codec.ParseInt(c.Req.State)
	if !ok || err != nil || (state != 0 && state != 1) || c.Req.To == "" || c.Req.To == me.ID || !ValidID(c.Req.To) {
		return bad
	}
	to, err := r.db.UserByID(c.Req.To)
	if errors.Is(err, storage.ErrNotFound) {
		return bad
	}
	if err != nil {
		return err
	}
	now := r.now().UnixMilli()
	if !r.typingSeen.pass(me.UID, to.UID, int8(state), now) {
		return nil
	}
	o := codec.BeginObject(c.scratch[:0])
	o.String("from", me.ID)
	o.Int("state", state)
	o.Int("time", now)
	c.scratch = o.End()
	frame := codec.AppendTextFrame(nil, codec.AppendEnvelope(nil, 0, codec.CmdTypingEvent, c.scratch))
	r.hub.Deliver(to.UID, frame, nil, nil)
	return nil
}
