// Package pebble is imgate's embedded store: storage.Store on a Pebble
// directory of one machine's disk, the default (`go run .` needs nothing
// else). It imports nothing of imgate but storage, and no Pebble type
// leaves it.
//
// # Concurrency
//
// A DB is safe for concurrent use. Writes that must agree with a read (a
// token bound to one user, a user id mapped to one uid) hold a striped lock
// over the keys they touch for the read and the commit together; writes to
// different users proceed in parallel and Pebble groups their WAL syncs.
// Values returned by a DB are copies the caller owns.
//
// # Key layout
//
// One prefix byte and a '|' name each keyspace. Integers are big-endian and
// fixed width so that byte order is numeric order and every read is a point
// lookup or a bounded LowerBound/UpperBound scan.
//
//	u|uid(8B BE)                       -> user record (user.go: encodeUser)
//	i|<user id>                        -> uid(8B BE)
//	t|<token>                          -> token record v2: uid(8B BE) | expireAt ms(8B BE) | 0x02 | issuedAt ms(8B BE) | terminal
//	                                      (v1, 16 bytes: uid | expireAt; see token.go)
//	K|uid(8B)|terminal                 -> the (user, terminal)'s newest tokens, oldest first: (issuedAt(8B), uvarint len, token)…
//	R|uid(8B)                          -> ms of the user's last logout: its v1 tokens are revoked
//	h|conv(16B)|seq(8B)                -> message reference: 0x02, lsn(8B): the record is L|lsn in the log
//	                                      (stores written before the log: the record itself, message.go: encodeMessage)
//	q|uid(8B)|peer(8B)|seq(8B)         -> empty: offline queue; the message is h|conv(uid,peer)|seq
//	c|owner(8B)|peer(8B)               -> contact record v3: unread, pending reply, waiting visitor, last contact, read seq,
//	                                      last message time and seq
//	G|uid(8B)|gid(8B)                  -> a member's read seq in a group (read.go)
//	D|id(16B)|from(8B)                 -> lsn(8B): a client-chosen message id (idempotency, recall)
//	d|from(8B)|id(16B)                 -> conv(16B)|seq(8B)|queued(1B), written before D|: read, never written
//	j|id(8B)                           -> a batch's journal: its private messages acked as pushed, until settled (lazy.go)
//	P|gid(8B)|seq(8B)                  -> a group message's pending deliveries: the members online when stored (lazy.go)
//	V|<name>                           -> empty: the named migration is done (migrate.go)
//	e|                                 -> the store's epoch, 32 hex (PROTOCOL §7.7; db.go)
//
// The message log, DIR/messages, is a Pebble directory of its own:
//
//	L|lsn(8B)                          -> message record (message.go: encodeMessage)
//
// Groups (I| M| m| g| Q|) are in group.go; contacts' records (n| l|) in
// contact.go. The orders of contacts by last contact and of conversations
// by last message are not on disk: they are built in memory from an
// owner's c| records when first asked for and kept by the committer
// (recency.go).
//
// # The message log
//
// A message's record is written once, to the log, under its lsn: a
// store-wide sequence, the next after the log's last key at Open. Every
// flush of the log lands after everything before it, so its compactions
// move tables down instead of rewriting them; history (h|, ordered by
// conversation, so that a page reads what it returns) keeps 9-byte
// references. A message whose sender chose no id gets one the store makes
// (storeID: the milliseconds of its createTime, then its lsn), which
// finds its record without an idempotency record; a client's id gets one,
// keyed by the id first so that time-ordered ids append to it. The record
// carries whether the message was queued offline, which a resend of its
// id is told again. In one LSM, conversation-ordered keys
// overlap every table of the base level and each compaction rewrote the
// records with them: about 700 bytes compacted per message once history
// held a few million, and a compactor that fell behind a sustained
// 100 000 messages/s (BENCHMARKS.md, issue 15). The committer commits a
// batch's log writes, synced, before the batch itself: a crash between
// the two leaves records nothing refers to (their messages were not
// acked), which are ignored, never a reference without its record. A
// recall replaces the record in the log and keeps the reference.
//
// # Cursors (PROTOCOL §7)
//
// A private conversation's read cursor is the owner's contact record: its
// read seq, and the unread count it implies (messages from the peer after
// it, recalled ones aside), kept exact by every message, read and recall.
// A group member's is G|uid|gid; its unread count is computed when asked
// (GroupUnread), from the group's newest messages back to the cursor. Each
// contact record carries its conversation's last message time and seq, and
// the owner's order of conversations by it (recency.go) makes a page of
// recent conversations (§7.4) read only the records it returns. Receipt
// acks (§7.2) remove the offline entries they cover (ack.go); most find
// none, which a hint of conversations known to have an empty queue answers
// without touching the disk. Pushes in flight to an acknowledging
// connection are settled like any push (lazy.go), by the client's ack
// instead of its TCP: unsettled after 2 s they are queued anyway (the ack
// then removes them), and a crash leaves them in the journal, so after a
// restart they are in the offline queue as well as available to sync.
//
// conv of a private conversation is the two uids, lower first. seq is the
// message's position in it, 1, 2, 3… with no gaps, which turns history
// offsets and seq bounds into key bounds: a page reads what it returns.
// createTime never decreases within a conversation, so a beginTime/endTime
// window maps to a seq range by binary search over h| records.
//
// # Group commit
//
// Messages, queues and contacts are written by one committer goroutine
// (commit.go) that gathers every waiting operation into one batch and
// commits it with the WAL synced: one fsync acknowledges many messages.
// The queue of operations is bounded in bytes; an operation that fails
// leaves nothing in the batch (the batch is built again without it).
//
// # Delivery: queued until written
//
// The rule behind PROTOCOL §4.3: an acked message leaves the undelivered
// state only when a connection of its receiver wrote its push to the
// socket and the client's TCP acknowledged the bytes; a kill -9 at any
// moment leaves every acked message either queued, or recorded as awaiting
// its push, or so written. A private message to an offline receiver gets
// its q| entry in its own commit. The private messages a batch acks as
// pushed (10000) are listed in one journal record (j|) written in the same
// commit, and a group message to members online when it is stored gets
// one P| record listing them. Each receiver of a record is settled on its
// own (lazy.go: Settle): a written push needs nothing more, one no
// connection wrote is queued at once, one still unsettled after
// pendingExpiry (2 s: a connection holds it unsent) is queued anyway; the
// record goes when every receiver is settled. So no receiver waits on
// another's connection, and a record's life is bounded. A record a crash
// left queues every receiver it names at Open. A pull (cmd 19 type 0, 2)
// first queues what is still pending for its user (QueuePending), reads,
// and removes only what its written reply carried (ReadOffline,
// RemoveOffline). The cost: one record per batch and per group message,
// set once and removed once with a single delete (which usually cancels
// out in the memtable); and a message whose push is late or was written
// just before a crash may be delivered twice (clients drop duplicates by
// id). A group message goes to the members at its commit: the members
// the caller read are checked against a count of committed joins and
// leaves, and read again inside the batch when it moved, so a member who
// joined meanwhile is queued.

// Counters follow the messages: unread messages are always the owner's
// newest ones from the peer (a read marks a prefix read, a new message is
// the newest), recalled ones aside; the read seq (contact record v2)
// records how far the owner read. A partial pull marks read up to what it
// carried and counts what is left from the conversation's end back.
//
// A user's uid is a dense internal number assigned at first registration;
// the largest u| key gives the next one on open, so no counter is written.
// The user id is the protocol's string id (1-64 bytes of [A-Za-z0-9_.@:-]).
//
// # Changing the layout
//
// The layout is on disk in every deployment. A change needs a migration
// note here and a version bump of the record it changes (user records carry
// a version byte); keys are never reinterpreted in place.
//
// Migrations:
//   - c| records are v2 (a read seq after the unread count). v1 records of
//     release a9f4499 decode with read seq 0 (unknown), which markRead
//     handles. At the first open, those with messages unread are recounted
//     without the recalled ones (v1 kept counting a recalled message as
//     unread) and rewritten as v2; the marker V|contacts-v2 says it ran.
//   - j| and P| records are new; a data directory without them has
//     nothing to settle. q| entries are what they were; a push that no
//     connection wrote is now queued in the same way (older versions
//     requeued it after the ack, in a batch of its own).
//   - t| records are v2 (uid, expireAt, version 2, issuedAt, terminal) and
//     each (user, terminal) lists its newest tokens in K|. v1 records (16
//     bytes: uid, expireAt) written by older versions stay valid until
//     they expire; they carry no terminal and are in no list, so any logout
//     of their user revokes them (R|uid), and the sweep deletes them once
//     expired. Nothing is rewritten at open.
//   - Waiting visitors (PROTOCOL §1.2 (2)): c| records gain flag bit 1
//     (Contact.Waiting, set only on an agent's or consultant's record of
//     a visitor) and n| records two trailing uvarints, waiting and the
//     last-assigned time in ms. Both are extensions, not new versions:
//     older versions ignore the bit and the trailing fields, and records
//     without them decode as not waiting and never assigned. At the first
//     open, migration waiting-v1 marks, for each visitor's partner (l|),
//     the partner's record of the visitor waiting if the visitor wrote
//     last or nobody wrote yet, and counts them in the partner's n|; the
//     last-assigned times start at 0 (earlier versions kept them only in
//     memory).
//   - c| records are v3 (v2 and the last message's time and seq); v1 and
//     v2 records decode with none. At the first open, migration recent-v1
//     fills them from each conversation's newest h| record and writes the
//     o| index; the marker V|recent-v1 says it ran. G| is new: a member
//     without one has read nothing of the group.
//   - e| is new: a store without it gets a fresh epoch at its first open
//     by this version (clients holding seqs from before simply see a new
//     epoch once and sync from scratch).
//   - r| and o| (contacts by last contact, conversations by last
//     message) are no longer written or read: the orders are derived in
//     memory from c| (recency.go). At the first open, migration
//     recency-memory-v1 deletes both keyspaces; an older version opening
//     the directory afterwards would list no contacts.
//   - x|conv|createTime|seq, a time index of h|, is no longer written or
//     read (time windows search h| instead). Keys left by older versions
//     are inert; nothing reads the x| keyspace.
//   - The message log (DIR/messages) is new: h| values written from now
//     on are references to it (version byte 2), idempotency records are
//     written under D|id|from for client ids only, and ids the server
//     makes are the store's (storeID) rather than the router's. Records
//     already in h| (version byte 1) and d|from|id keys stay where they
//     are and are read as before (a recall of one rewrites it in place);
//     nothing is rewritten at open.
//     An older version reads a reference as a corrupt record: keep the
//     copy of the data directory taken before the upgrade to go back.
package pebble
