// Package postgres is storage.Store on a PostgreSQL server (pgx v5, a
// pgxpool), for several gateways sharing one database. Its behaviour is
// storage/pebble's, the reference: the conformance suite
// (storage/storagetest) runs against both. It imports nothing of imgate
// but storage.
//
// # Tables
//
// The schema is migrations/*.sql (migrate.go), applied at Open. uids, gids
// and seqs are bigint, times bigint milliseconds, as on the wire. A
// conversation is (conv_a, conv_b): a private one the two uids, lower
// first (equal for a note to oneself), a group one (0, gid).
//
//	conversations  (conv_a, conv_b) -> last_seq, last_time: the seq allocator (message.go)
//	messages       (conv_a, conv_b, seq) -> the message, recalled, queued (the ack said 10001)
//	               messages_sender_id (from_uid, id): idempotency and recall's lookup
//	               messages_time (conv_a, conv_b, create_time, seq): history's time windows
//	queue          (uid, grp, peer, seq) -> pending, created: offline queues; peer is the
//	               sender (grp false) or the gid; pending: a push not yet settled
//	contacts       (owner, peer) -> unread, pending, waiting, last_contact, read_seq,
//	               last_message, last_seq; contacts_recent and contacts_conversations
//	               walk them newest first (contact.go)
//	contact_counts (owner) -> contacts, pending, waiting, assigned: totals, moved by deltas
//	partners       (visitor) -> partner: the agent or consultant last talked to
//	group_reads    (uid, gid) -> read_seq: a member's cursor (read.go)
//	users, tokens, chat_groups, group_members, meta: user.go, token.go, group.go, db.go
//
// Every read is a point lookup or a range of a primary key or index that
// returns what it reads: history pages turn offsets and time bounds into
// seq bounds first (seqs have no gaps, createTime never decreases along
// them), pages stop at a count and a byte budget inside the statement
// (query.go), the chat list and conversations are keyset pages walked
// backwards, the totals are one row (never a count of contacts).
//
// # Writes: group commit, and several gateways
//
// Writes run on one committer goroutine per gateway, many operations in
// one transaction (commit.go), READ COMMITTED. Gateways sharing the
// database agree through row locks held until their batch commits:
//
//   - a conversation's seqs come from the upsert of its conversations row,
//     which raises last_seq and last_time and returns them (gap-free, times
//     never back), locked until commit;
//   - a contact, a partner, a read cursor, a recalled message is read FOR
//     UPDATE (the latest committed version, locked) before the new value
//     is computed from it, and the totals move by deltas; a row that did
//     not exist is created by a plain INSERT, which fails if another
//     gateway created it meanwhile: the batch then runs again one
//     operation per transaction, and the operation finds the row;
//   - a group message takes its group's row FOR SHARE (joins and leaves
//     take it FOR UPDATE) and compares the version its members were read
//     at; when it moved, the members are read again under the lock.
//
// Two gateways whose batches lock the same rows in different orders
// deadlock; the server breaks it (after deadlock_timeout, 1 s by default)
// and the batch runs again. Traffic of one conversation, or one agent, on
// several gateways at once pays for that.
//
// Round trips, each a statement or a pipelined pgx.Batch on the
// committer's connection: a private message costs two (the statement
// that checks the id, allocates the seq, inserts the message and its
// queue row and locks both contacts and the partner; then the batch
// writing both contacts, the totals and the partner); a resend one more
// (it reads the stored message); a note to oneself and a group message
// one (a group message whose members moved two more); a read, a removal
// with reads, a touch, a group recall two; a private recall three; an ack,
// a mark read, a removal without reads one. Acks are gathered: one operation applies every ack waiting (ack.go).
//
// # Delivery (PROTOCOL §4.2)
//
// A message for an online receiver gets its queue row at once, pending:
// pulls do not read it. The receiver's push settles it (delivery.go):
// written deletes the row, lost makes it an ordinary queue entry; one
// unsettled 2 s after it was written is made ordinary by any gateway's
// sweep, and Open makes ordinary every row still pending (a crash's). A
// pull first makes its user's pending rows ordinary (QueuePending). A
// recall deletes the message's rows, pending ones included; an ack leaves
// the pending ones to their settling, as Pebble does its pending records.
//
// # CockroachDB
//
// The SQL keeps to what CockroachDB also takes where it costs nothing:
// no LISTEN/NOTIFY, no advisory locks (the assignment lock is a row
// lock), no sequences in these paths, data-modifying CTEs that modify
// each table once, row comparisons for keyset pages, unnest, ON CONFLICT.
// What would not port as is:
//
//   - the isolation: the locking above relies on READ COMMITTED's
//     statement snapshots and on FOR UPDATE returning the latest version.
//     CockroachDB's default SERIALIZABLE turns those waits into 40001
//     retries of the whole batch (correct, slower under contention); its
//     READ COMMITTED (23.2+) behaves as here. FOR SHARE is a no-op under
//     its SERIALIZABLE unless enabled (a conflict then retries instead);
//   - deadlock handling: PostgreSQL reports 40P01, CockroachDB aborts one
//     transaction with 40001; both are retried;
//   - the hot conversations row: on CockroachDB a conversation's appends
//     contend on one range's row, as here on one row lock;
//   - the plan tests (EXPLAIN (FORMAT JSON), explain_test.go) and the
//     octet_length of TOASTed values read without fetching them are
//     PostgreSQL's.
package postgres
