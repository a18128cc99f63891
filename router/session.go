package router

import "sync/atomic"

// Identity is the user a connection acts as, fixed at login for the
// connection's whole life (PROTOCOL §2).
type Identity struct {
	UID  uint64 // storage's internal id; the registry key
	ID   string // the protocol's user id
	Type int    // storage.UserVisitor, UserAgent or UserConsultant
	// Terminal is the terminal of the token the connection logged in
	// with (PROTOCOL §1.1, §1.5): logout of one terminal closes these.
	Terminal string
}

// Session is the router's view of one live connection. engine implements
// it. All methods are safe for concurrent use.
type Session interface {
	// Identity returns the user the connection acts as; zero before login.
	Identity() Identity
	// Send queues one or more complete frames for the connection without
	// blocking. The router gives up frame: it must not be modified after.
	// Send reports false if the connection is gone or over its output cap.
	Send(frame []byte) bool
	// Close sends a CLOSE frame with status code and reason (at most 123
	// bytes) after everything already queued, then ends the connection.
	Close(code uint16, reason string)
}

// Hub reaches the live connections of any user. engine implements it.
// All methods are safe for concurrent use and never block on I/O.
type Hub interface {
	// Deliver queues frame to every live connection of uid but skip (nil:
	// none) and reports how many accepted it. frame is shared and
	// read-only. A non-nil t learns whether any connection wrote it.
	Deliver(uid uint64, frame []byte, skip Session, t *Tracker) int
	// Disconnect closes every live connection of uid with code and reason
	// and reports how many it closed.
	Disconnect(uid uint64, code uint16, reason string) int
	// DisconnectTerminal is Disconnect limited to the connections whose
	// Identity.Terminal is terminal (PROTOCOL §1.5).
	DisconnectTerminal(uid uint64, terminal string, code uint16, reason string) int
	// Online reports whether uid has at least one live connection.
	Online(uid uint64) bool
}

// LoginResult is what Login reports to the connection that asked.
type LoginResult struct {
	OK       bool
	Identity Identity
	// Frame is the login result frame (command 6) to send first.
	Frame []byte
}

// Tracker follows one pushed frame through every connection that accepted
// it and reports when none of them wrote it: the connections died or were
// dropped as slow consumers before the bytes left the server (PROTOCOL
// §4.3), so the message must wait in the offline queue. It is safe for
// concurrent use.
//
// The creator holds one reference; Hub.Deliver takes one per accepting
// connection; each connection gives its reference back with Done once the
// frame is written (true) or dropped (false). Release gives the creator's
// back. onLost runs once, on whichever goroutine drops the last reference,
// if no connection wrote the frame; it must not block.
type Tracker struct {
	refs    atomic.Int32
	written atomic.Bool
	onLost  Lost
}

// Lost is told that no connection wrote a tracked frame.
type Lost interface{ Lost() }

type lostFunc func()

func (f lostFunc) Lost() { f() }

// NewTracker returns a Tracker holding the creator's reference.
func NewTracker(onLost func()) *Tracker {
	t := new(Tracker)
	if onLost != nil {
		t.init(lostFunc(onLost))
	} else {
		t.init(nil)
	}
	return t
}

// init readies a Tracker embedded in its owner, holding the creator's
// reference: the owner and the tracker are then one allocation.
// A recycled Tracker starts afresh.
func (t *Tracker) init(l Lost) {
	t.onLost = l
	t.written.Store(false)
	t.refs.Store(1)
}

// Acquire takes a reference for a connection that accepted the frame.
func (t *Tracker) Acquire() { t.refs.Add(1) }

// Done gives a connection's reference back.
func (t *Tracker) Done(written bool) {
	if written {
		t.written.Store(true)
	}
	t.release()
}

// Release gives the creator's reference back, after Deliver returned.
func (t *Tracker) Release() { t.release() }

func (t *Tracker) release() {
	if t.refs.Add(-1) != 0 {
		return
	}
	if !t.written.Load() && t.onLost != nil {
		t.onLost.Lost()
	}
	// Nothing refers to t any more: an owner that embeds it may reuse both.
	if r, ok := t.onLost.(recycler); ok {
		r.recycle()
	}
}

// recycler is an owner of an embedded Tracker that reuses itself once the
// last reference is gone.
type recycler interface{ recycle() }
