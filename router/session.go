package router

import (
	"sync/atomic"
	"time"
)

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
	// Send queues a copy of one or more complete frames for the
	// connection without blocking: the caller keeps frame and may reuse
	// it once Send returns. Send reports false if the connection is gone
	// or over its output cap.
	Send(frame []byte) bool
	// SendTracked is Send for a frame whose delivery t follows: t learns
	// whether the frame's bytes left the process for the socket.
	SendTracked(frame []byte, t *Tracker) bool
	// SendReply is Send for the reply to a request received at received
	// (Nanotime): the connection measures the request's latency when it
	// writes the reply (the ack latency of a chat, receive to written).
	SendReply(frame []byte, received int64) bool
	// Close sends a CLOSE frame with status code and reason (at most 123
	// bytes) after everything already queued, then ends the connection.
	Close(code uint16, reason string)
	// Room is how many more bytes of output the connection takes before
	// its output cap: the cap less what is queued or buffered and not yet
	// written (PROTOCOL §2). Replies are sized to it (§4.4, §4.6).
	Room() int
	// State is the router's state of the connection, kept by the engine
	// for the connection's life; the zero value is ready for use.
	State() *ConnState
	// SetAcking makes the connection acknowledging (PROTOCOL §7.2): a
	// push followed from then on is delivered when the client
	// acknowledges it, and queued if the connection ends first.
	SetAcking()
	// Acking reports whether the connection is acknowledging.
	Acking() bool
	// AckLocal is the connection's part of an ack (PROTOCOL §7.2): its
	// pushes of the conversation conv (a peer's id, or a group's when
	// group is set) with seq up to seq are delivered. When one of its
	// pushes of conv has a seq at or above seq, it reports known and the
	// conversation's uid or gid: the ack is then proved valid. It runs on
	// the loop, inside Handle.
	// settled says whether the ack delivered any push here.
	AckLocal(conv string, group bool, seq uint64) (id uint64, known, settled bool)
	// Exempt gives back the rate limit's token the request being
	// handled took: receipt acks are not counted (PROTOCOL §7.2). It
	// runs on the loop, inside Handle.
	Exempt()
}

// Hub reaches the live connections of any user. engine implements it.
// All methods are safe for concurrent use and never block on I/O.
type Hub interface {
	// Deliver queues a copy of frame to every live connection of uid but
	// skip (nil: none) and reports how many accepted it; the caller keeps
	// frame. A non-nil t learns whether any connection wrote it.
	Deliver(uid uint64, frame []byte, skip Session, t *Tracker) int
	// Disconnect closes every live connection of uid with code and reason
	// and reports how many it closed.
	Disconnect(uid uint64, code uint16, reason string) int
	// DisconnectTerminal is Disconnect limited to the connections whose
	// Identity.Terminal is terminal (PROTOCOL §1.5).
	DisconnectTerminal(uid uint64, terminal string, code uint16, reason string) int
	// Online reports whether uid has at least one live connection.
	Online(uid uint64) bool
	// Ack tells every connection of uid but skip that the user holds
	// every message of a conversation (a peer's id, or a group's) up to
	// seq (PROTOCOL §7.2): their pushes of them are delivered, each on
	// its loop, soon after Ack returns. It never blocks.
	Ack(uid uint64, conv string, group bool, seq uint64, skip Session)
}

// LoginResult is what Login reports to the connection that asked.
type LoginResult struct {
	OK bool
	// Ack: the connection asked to acknowledge pushes (ack=1, §7.2).
	Ack      bool
	Identity Identity
	// Frame is the login result frame (command 6) to send first.
	Frame []byte
	// checked orders the token check against logouts (Router.Admit).
	checked uint64
}

// Tracker follows one frame through every connection that accepted it
// and reports whether any of them wrote it: its bytes left the process for
// the socket, not merely into a buffer (PROTOCOL §4.3). It is safe for
// concurrent use.
//
// The creator holds one reference; Hub.Deliver and Session.SendTracked
// take one per accepting connection; each connection gives its reference
// back with Done once the frame is written (true) or dropped (false).
// Release gives the creator's back. When the last reference goes, the
// owner's Followed runs once, on whichever goroutine dropped it; it must
// not block. The owner may then reuse the Tracker.
type Tracker struct {
	refs    atomic.Int32
	written atomic.Bool
	// Index is the owner's to use: which of its frames or receivers this
	// Tracker follows.
	Index int32
	// A push names its message, for acknowledging connections (PROTOCOL
	// §7.2): Seq (non-zero) in the conversation Conv names from the
	// receiver's side, the sender's id, or the group's id when Group is
	// set. Zero for other frames, which count as written once sent.
	Seq   uint64
	Conv  string
	Group bool
	// ConvID is Conv's uid, or the group's gid.
	ConvID uint64
	// Received is when the message's request arrived (Nanotime), for
	// its push's delivery latency; zero when not known here (a push from
	// another node).
	Received int64
	owner    Follower
}

// Follower is told the outcome of a tracked frame: written is true when
// at least one connection wrote it.
type Follower interface {
	Followed(t *Tracker, written bool)
}

type followFunc func(written bool)

func (f followFunc) Followed(_ *Tracker, written bool) { f(written) }

// NewTracker returns a Tracker holding the creator's reference; followed
// (if not nil) is told the outcome.
func NewTracker(followed func(written bool)) *Tracker {
	t := new(Tracker)
	if followed != nil {
		t.Init(followFunc(followed))
	} else {
		t.Init(nil)
	}
	return t
}

// Init readies a Tracker embedded in its owner, holding the creator's
// reference: the owner and the tracker are then one allocation. A
// recycled Tracker starts afresh.
func (t *Tracker) Init(owner Follower) {
	t.owner = owner
	t.Seq, t.Conv, t.Group, t.ConvID, t.Received = 0, "", false, 0, 0
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
	if t.owner != nil {
		// Nothing else refers to t: the owner may reuse it.
		t.owner.Followed(t, t.written.Load())
	}
}

// epoch is the origin of Nanotime.
var epoch = time.Now()

// Nanotime is a monotonic clock in nanoseconds, for latencies measured
// across goroutines (a request's receipt and its reply's write). Its
// origin is arbitrary: only differences mean anything.
func Nanotime() int64 { return int64(time.Since(epoch)) }
