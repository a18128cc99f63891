package storage

// Store is the domain store. Every method is safe for concurrent use.
// Methods that take a done callback return at once (an error only when
// the operation was refused: ErrClosed, ErrOverloaded) and call done once
// the outcome is durable, from a goroutine of the store's: done must not
// block. Values returned are copies the caller owns unless said otherwise.
type Store interface {
	// Close flushes and closes the store. Calls after the first return nil.
	Close() error
	// Ping reports whether the store is open and readable.
	Ping() error
	// Epoch identifies the store (PROTOCOL §7.7): seqs a client holds
	// from another epoch mean nothing here. 32 hex characters.
	Epoch() string
	// CommitStats counts the store's commits since it opened.
	CommitStats() CommitStats

	// Register upserts the user's profile and, if r.Token is set, binds
	// it to the user on the profile's terminal, both or neither
	// (PROTOCOL §1.1). A token bound to another user and not yet expired
	// fails with ErrTokenTaken and changes nothing. Binding a token to a
	// (user, terminal) that already holds MaxTokensPerTerminal unexpired
	// tokens revokes the oldest of them. It returns the stored user.
	Register(r Registration) (User, error)
	// UserByID returns the user with protocol id id, or ErrNotFound.
	UserByID(id string) (User, error)
	// UserByUID returns the user with internal id uid, or ErrNotFound.
	UserByUID(uid uint64) (User, error)
	// TokenInfo returns what token is bound to. A token that expired at
	// or before now (ms) fails with ErrTokenExpired, a v1 token of a
	// user who logged out with ErrTokenRevoked, an unknown or revoked one
	// with ErrNotFound.
	TokenInfo(token string, now int64) (TokenInfo, error)
	// TokenUser returns the user a token is bound to; see TokenInfo.
	TokenUser(token string, now int64) (User, error)
	// RevokeTokens logs user id out (PROTOCOL §1.5): it deletes the
	// tokens of terminal, or of every terminal when terminal is "". It
	// returns the user and how many unexpired tokens it revoked; an
	// unknown user fails with ErrNotFound.
	RevokeTokens(id, terminal string, now int64) (User, int, error)
	// SweepTokens deletes expired token records, reading at most max of
	// them from where the previous call stopped, and returns how many it
	// deleted.
	SweepTokens(now int64, max int) (purged int, err error)

	// AppendPrivate stores a private message (PROTOCOL §4.2): history,
	// idempotency record, both contact records, and either the
	// receiver's offline queue entry (opts.Offline) or a pending push
	// (AppendResult.Delivery). A message to oneself gets no queue entry
	// and no contact. m.CreateTime is raised if needed so times never go
	// back within a conversation; Seq is the conversation's next, with
	// no gaps. A message whose (From, ID) was stored before is not stored
	// again: done gets the stored one with Duplicate set.
	AppendPrivate(m Message, opts AppendOptions, done func(AppendResult)) error
	// AppendPrivateTo is AppendPrivate reporting to done: a caller that
	// recycles its Appended appends without allocating.
	AppendPrivateTo(m Message, opts AppendOptions, done Appended) error
	// AppendGroup stores a group message (PROTOCOL §5): history,
	// idempotency record, the group queue entry of every uid in offline
	// and a pending push for each member in online, settled through
	// res.Delivery.Member(i), i its index in online. m.Group is set and
	// m.To zero; online and offline are in ascending uid order and do
	// not overlap. ver is MembershipVersion(m.Group) read before the
	// members were: when membership changed since, the store reads the
	// members again, so a member who joined meanwhile gets a queue entry
	// and one who left none.
	AppendGroup(m Message, online, offline []uint64, ver uint64, opts AppendOptions, done func(AppendResult)) error
	// QueuePending queues every delivery to uid still awaiting its
	// push's outcome, as if lost, and blocks until that and every
	// earlier deferred write is durable: then uid's offline queues hold
	// everything acked to uid that no connection of uid is known to have
	// written (PROTOCOL §4.4).
	QueuePending(uid uint64) error
	// Recall replaces the message that from sent with id by a recall
	// marker (content and extras dropped, Recalled set) and removes it
	// from every offline queue, if it was sent at or after notBefore
	// (PROTOCOL §4.5). done gets the marker, or ErrNotFound, ErrTooLate
	// or ErrRecalled.
	Recall(from uint64, id [16]byte, notBefore int64, done func(Message, error)) error

	// History returns the page of the private conversation between a and
	// b that q selects, in the order q asks for, and whether the
	// selection holds more messages after the page (PROTOCOL §4.4).
	History(a, b uint64, q HistoryQuery) ([]Message, bool, error)
	// GroupHistory is History for a group conversation.
	GroupHistory(gid uint64, q HistoryQuery) ([]Message, bool, error)
	// ReadOffline returns the oldest queued messages q selects, grouped
	// by conversation, private ones first; it removes nothing (PROTOCOL
	// §4.4). A query of one private queue returns its page even when
	// empty, with LastSeq set.
	ReadOffline(uid uint64, q QueueQuery) (QueuePage, error)
	// RemoveOffline removes the queue entries listed and marks the
	// private conversations read as each Removal says, in one durable
	// write. It never blocks: the caller may be an event loop.
	RemoveOffline(uid uint64, rs []Removal, done func(error)) error
	// Ack removes uid's offline entries of a conversation with seq up to
	// upTo (PROTOCOL §7.2): the private one with peer, or group peer when
	// group is set. It never blocks; the removal is ordered before any
	// operation submitted after it (a pull's QueuePending).
	Ack(uid, peer uint64, group bool, upTo uint64) error
	// LastSeq returns the last seq of a conversation (0: empty): the
	// private one of uid with peer, or group peer when group is set.
	LastSeq(uid, peer uint64, group bool) (uint64, error)
	// Read marks uid's conversation (with peer, or group peer when group
	// is set) read up to seq upTo (PROTOCOL §7.5): the read cursor never
	// decreases, unread follows it, and the offline entries up to upTo go.
	Read(uid, peer uint64, group bool, upTo uint64, done func(ReadResult, error)) error
	// GroupReadSeq returns uid's read cursor in group gid (0: none).
	GroupReadSeq(uid, gid uint64) (uint64, error)
	// GroupUnread counts the messages of group gid after readSeq up to
	// last that are not uid's and not recalled (PROTOCOL §7.4, §7.5),
	// reading at most the newest GroupUnreadWalk of them: older ones
	// count as unread without being read.
	GroupUnread(uid, gid, readSeq, last uint64) (uint64, error)

	// Touch makes a and b contacts of each other (if they are not) with
	// activity at now: an assignment or a registration with a receiver
	// (PROTOCOL §1.2, §1.3).
	Touch(a, b uint64, now int64, opts TouchOptions, done func(error)) error
	// MarkRead marks the whole conversation of owner with peer read
	// (PROTOCOL §1.3): unread zero, the read seq at the conversation's
	// last.
	MarkRead(owner, peer uint64, done func(error)) error
	// Counts returns owner's contact totals.
	Counts(owner uint64) (ContactCounts, error)
	// Contact returns owner's record of peer, or ErrNotFound.
	Contact(owner, peer uint64) (Contact, error)
	// Contacts calls fn with owner's contacts, most recent activity
	// first, until fn returns false (PROTOCOL §1.3 pullType 3, §4.3).
	Contacts(owner uint64, fn func(Contact) bool) error
	// Conversations calls fn with owner's private conversations that
	// hold a message, newest last message first, starting with those
	// whose last message is older than before (0: all), until fn returns
	// false (PROTOCOL §7.4).
	Conversations(owner uint64, before int64, fn func(Contact) bool) error
	// RecentCount counts owner's contacts with activity at or after since.
	RecentCount(owner uint64, since int64) (int, error)
	// LastPartner returns the agent or consultant visitor last talked
	// to, or 0.
	LastPartner(visitor uint64) (uint64, error)
	// LockAssignment takes the store-wide assignment lock (PROTOCOL
	// §1.2 (2)): every gateway on the store assigns one visitor at a time,
	// each reading the loads the one before left. unlock releases it; hold
	// it for one assignment (reads and its Touch), never longer.
	LockAssignment() (unlock func(), err error)

	// GroupByID returns the gid of a group id, or ErrNotFound.
	GroupByID(id string) (uint64, error)
	// Join adds uid to the group with protocol id groupID, creating the
	// group on first join, unless it already has maxMembers members
	// (JoinFull). Joining twice succeeds and changes nothing.
	Join(groupID string, uid uint64, now int64, maxMembers int, done func(gid uint64, result int, err error)) error
	// Leave removes uid from group gid and drops its queued messages of
	// the group; leaving a group one is not in changes nothing (left is
	// false).
	Leave(gid, uid uint64, done func(left bool, err error)) error
	// IsMember reports whether uid is a member of gid.
	IsMember(gid, uid uint64) (bool, error)
	// Members returns the uids of gid's members in uid order. The slice
	// is shared: callers must not modify it.
	Members(gid uint64) ([]uint64, error)
	// UserGroups returns the gids of uid's groups in gid order.
	UserGroups(uid uint64) ([]uint64, error)
	// MembershipVersion is a number that changes whenever gid's members
	// change (AppendGroup's ver).
	MembershipVersion(gid uint64) uint64
}

// GroupUnreadWalk bounds the messages GroupUnread reads.
const GroupUnreadWalk = 1000
