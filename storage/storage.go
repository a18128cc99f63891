// Package storage is imgate's domain store: the operations the router and
// the HTTP API perform on users, tokens, conversations, offline queues,
// contacts, read cursors and groups (Store), and the values they exchange.
// It imports nothing of imgate. Implementations live in their own
// packages: storage/pebble (embedded, the default) and storage/postgres
// (a PostgreSQL server, for clusters). storage/storagetest holds the one
// conformance suite both pass.
//
// # Durability
//
// An operation that reports through a done callback, or returns nil from
// a synchronous write, is durable when it reports: an ack sent after it
// survives a crash of the process and, with the stores' defaults, of the
// machine.
//
// # Delivery (PROTOCOL §4.2)
//
// A message stored for an online receiver is not queued at once: the
// store holds it as pending and the receiver's push settles it
// (Delivery.Settle). A push no connection wrote, or one still unsettled a
// few seconds later or across a crash, ends in the receiver's offline
// queue. So an acked message is written to a connection of its receiver
// or queued for it, at least once.
package storage

import (
	"errors"
	"time"
)

// Errors returned by Store methods.
var (
	ErrNotFound     = errors.New("storage: not found")
	ErrTokenTaken   = errors.New("storage: token bound to another user")
	ErrTokenExpired = errors.New("storage: token expired")
	ErrClosed       = errors.New("storage: closed")
)

// Chat types of PROTOCOL §4.1.
const (
	ChatGroup   = 1
	ChatPrivate = 2
)

// Message is one chat message as stored.
type Message struct {
	ID         [16]byte // 32 hex on the wire
	From, To   uint64   // uids; To is 0 for group messages
	FromID     string   // protocol ids, kept so a page renders without lookups
	ToID       string
	ChatType   int
	MsgType    int
	Content    string // a string, or the compact JSON text of an object/array
	Extras     []byte // raw JSON object passed through, or nil
	CreateTime int64  // ms, assigned by the server, non-decreasing per conversation
	Seq        uint64 // position in the conversation: 1, 2, 3… with no gaps
	GroupID    string // the group's protocol id, for group messages
	Group      uint64 // the group's internal id, for group messages
	Recalled   bool   // replaced by a recall marker: content and extras dropped
}

// Contact is one entry of owner's contact list (PROTOCOL §4.3).
type Contact struct {
	Peer    uint64
	Unread  uint64 // messages from Peer not yet read by the owner, recalled ones aside
	Pending bool   // the last message came from Peer: the owner owes a reply
	// Waiting: Peer is a visitor waiting for the owner, their partner
	// (PROTOCOL §1.2 (2)): assigned to the owner or last written by Peer,
	// and not answered by the owner since. Only ever set on an agent's or
	// consultant's record of a visitor.
	Waiting     bool
	LastContact int64 // ms of the last message or assignment
	// ReadSeq is the seq up to which the owner read the conversation
	// (never decreases); 0 in records written before it was kept.
	ReadSeq uint64
	// LastMessage is the createTime (ms) of the conversation's newest
	// message and LastSeq its seq; 0 while neither wrote (PROTOCOL §7.4).
	LastMessage int64
	LastSeq     uint64
}

// AppendOptions qualifies one append.
type AppendOptions struct {
	// Offline: the receiver had no live connection (the ack says 10001):
	// queue the message. Otherwise it is journaled until its push is
	// settled (Delivery).
	Offline bool
	// ClientID: the sender chose m.ID, so it may be a resend. A server-made
	// ID is new by construction and skips the idempotency lookup; a store
	// may replace it with one of its own (time-ordered and unique,
	// PROTOCOL §0), which AppendResult.Msg carries and which then finds
	// the message for a resend or a recall like a client's.
	ClientID bool
	// Visitor, when set, is the visitor side of a visitor-agent (or
	// consultant) conversation: the other side becomes their last partner.
	Visitor uint64
}

// AppendResult is what AppendPrivate reports once the message is durable.
type AppendResult struct {
	Msg       Message // as stored: Seq and CreateTime assigned
	Duplicate bool    // an earlier message of the same sender had this ID
	Online    bool    // for a duplicate: the receiver was online the first time
	// Delivery is to be settled (Delivery.Settle) once the push of a message
	// stored for an online receiver is written or dropped; zero otherwise.
	Delivery Delivery
	Err      error
}

// Appended is told the outcome of AppendPrivateTo, on the committer.
type Appended interface{ Appended(AppendResult) }

// AppendedFunc adapts a func to Appended.
type AppendedFunc func(AppendResult)

// Appended calls f.
func (f AppendedFunc) Appended(r AppendResult) { f(r) }

// User types of PROTOCOL §1.1.
const (
	UserVisitor    = 0
	UserAgent      = 1
	UserConsultant = 2
)

// User is a registered user's profile.
type User struct {
	UID      uint64 // internal dense id, assigned at first registration
	ID       string // the protocol's user id
	Type     int
	Nick     string
	Avatar   string
	Terminal string
	Sign     string
	Created  int64 // ms since the epoch
	Updated  int64 // ms since the epoch
}

// Registration is one initUser call: the profile to upsert and, when Token
// is not empty, the token to bind to it until TokenExpire.
type Registration struct {
	User        User // UID, Created are ignored
	Token       string
	TokenExpire int64 // ms since the epoch
	Now         int64 // ms since the epoch
}

// Join results (PROTOCOL §5 data.result).
const (
	JoinOK   = 1
	JoinFull = 3
)

// MaxTokensPerTerminal is how many tokens a (user, terminal) keeps: enough
// for a few tabs and a reconnecting app, few enough that a leaked token is
// pushed out by the user's next logins.
const MaxTokensPerTerminal = 4

// ErrTokenRevoked is returned for a v1 token of a user who logged out.
var ErrTokenRevoked = errors.New("storage: token revoked")

// TokenInfo is what a token is bound to.
type TokenInfo struct {
	User User
	// Terminal is the terminal the token was bound on; for a v1 token,
	// the terminal of the user's profile.
	Terminal string
	IssuedAt int64 // ms since the epoch; 0 for a v1 token
	ExpireAt int64 // ms since the epoch
	Legacy   bool  // a v1 record, bound before token lists
}

// Errors of Recall.
var (
	ErrTooLate  = errors.New("storage: recall window passed")
	ErrRecalled = errors.New("storage: already recalled")
)

// ContactCounts are owner's totals.
type ContactCounts struct {
	Contacts uint64 // all contacts
	Pending  uint64 // contacts whose last message came from them
	// Waiting counts the visitors waiting for the owner (Contact.Waiting):
	// an agent's load for assignment (PROTOCOL §1.2 (2)).
	Waiting uint64
	// Assigned is when a visitor was last assigned to the owner (ms; 0:
	// never), kept across reconnects and restarts for the tie-break of
	// PROTOCOL §1.2 (2).
	Assigned int64
}

// TouchOptions say what a Touch is besides activity.
type TouchOptions struct {
	// Visitor, when set, is the visitor side of a visitor-agent (or
	// consultant) pair: the other side becomes their partner and, if it
	// was not already, has them waiting (Contact.Waiting); a previous
	// partner no longer does.
	Visitor uint64
	// Assigned: the other side was picked for Visitor by assignment
	// (PROTOCOL §1.2 (2)); its ContactCounts.Assigned becomes now.
	Assigned bool
}

// HistoryQuery selects a page of a conversation (PROTOCOL §4.4). Zero
// fields do not filter. Seqs are gap-free, so offsets and seq bounds turn
// into key bounds: a page reads exactly the messages it returns.
type HistoryQuery struct {
	Begin, End int64  // createTime bounds, inclusive; 0: none
	AfterSeq   uint64 // keep seq > AfterSeq
	BeforeSeq  uint64 // keep seq < BeforeSeq; 0: none
	Desc       bool   // newest first; Offset then counts from the newest
	Offset     uint64
	Count      int // at most this many; must be > 0
	// MaxBytes, when positive, stops the page once the messages read
	// weigh this much (MessageSize); the first message is always read.
	MaxBytes int
}

// MessageSize is what a message weighs against a page's byte budget: its
// stored text, a lower bound of its size on the wire.
func MessageSize(m *Message) int {
	return len(m.Content) + len(m.Extras) + len(m.FromID) + len(m.ToID) + len(m.GroupID)
}

// OfflinePage is one conversation's queued messages, oldest first.
type OfflinePage struct {
	Peer uint64 // the peer's uid, or the gid of a group page
	Msgs []Message
	// More is set when the conversation's queue holds more entries than
	// the page.
	More bool
	// LastSeq is the conversation's last seq when the page was read, for
	// marking it read (private pages of ReadOffline only).
	LastSeq uint64
}

// QueueQuery selects queued messages of a user (PROTOCOL §4.4 types 0, 2).
type QueueQuery struct {
	// Peer names one private queue; Group one group queue (a gid). Both
	// zero: every queue of the user, private ones first.
	Peer, Group uint64
	// Limit caps the messages of the page (> 0).
	Limit int
	// MaxBytes, when positive, stops the page once its messages weigh
	// this much (MessageSize); the first message is always read.
	MaxBytes int
}

// QueuePage is what ReadOffline returns: pages of private queues, then of
// group queues, and whether any queue the query covers holds more.
type QueuePage struct {
	Friends, Groups []OfflinePage
	More            bool
}

// Removal is what a type 0 pull's reply carried from one queue: removed
// once the reply was written (PROTOCOL §4.4).
type Removal struct {
	Peer  uint64 // the peer's uid, or the gid when Group is set
	Group bool
	Seqs  []uint64 // the queue entries the reply carried
	// ReadTo marks the conversation read up to this seq (0: not at all):
	// the highest seq carried, or for a private one the conversation's
	// last seq when the reply emptied the queue.
	ReadTo uint64
}

// ReadResult is what Read did.
type ReadResult struct {
	// ReadSeq is the read cursor after the read; Advanced reports
	// whether the read moved it.
	ReadSeq  uint64
	Advanced bool
}

// CommitObserver is told of each synced commit that carried operations:
// how many (ops) and how long the commit took (took: for Pebble the write
// of the batch to its WAL and the fsync, for PostgreSQL the transaction
// from its first statement to the server's answer to COMMIT). It runs on
// the committer and must not block: a Prometheus histogram fits.
type CommitObserver interface {
	ObserveCommit(ops int, took time.Duration)
}

// CommitStats counts the committer's work, for benchmarks and metrics.
type CommitStats struct {
	Ops     uint64 // operations committed
	Batches uint64 // synced commits (fsyncs)
	// Stalls counts the times the store stopped taking writes until it
	// caught up (an LSM store's flushes and compactions); every commit,
	// and so every ack, waits during one. StallTime is their total
	// length, the current one included. Zero for stores that do not
	// stall.
	Stalls    uint64
	StallTime time.Duration
}

// ErrOverloaded is returned by submissions when the commit queue is full.
var ErrOverloaded = errors.New("storage: commit queue full")

// Pushes is one stored message's pending pushes, one per receiver, as a
// store implementation tracks them (the Delivery rule above).
type Pushes interface {
	// Settle reports the outcome of receiver i's push: written when a
	// connection of the receiver wrote it to its socket; otherwise the
	// message is queued for the receiver. It never blocks; settling a
	// receiver twice, or after its push expired, does nothing.
	Settle(i int, written bool)
}

// Delivery names one receiver of a stored message whose push is pending.
// The zero Delivery settles nothing.
type Delivery struct {
	p Pushes
	i int32
}

// NewDelivery is the Delivery of receiver i of p; for implementations.
func NewDelivery(p Pushes, i int) Delivery { return Delivery{p, int32(i)} }

// Member is the Delivery of the i-th member (in the order given to
// AppendGroup) of the group message d belongs to.
func (d Delivery) Member(i int) Delivery { return Delivery{d.p, int32(i)} }

// Settle reports the outcome of the push d names (Pushes.Settle).
func (d Delivery) Settle(written bool) {
	if d.p != nil {
		d.p.Settle(int(d.i), written)
	}
}
