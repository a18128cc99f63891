package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Read cursors (PROTOCOL §7.5). A private conversation's is the owner's
// contact row (read_seq, with the unread count it implies), a group
// member's its group_reads row; a group's unread count is computed when
// asked (GroupUnread), from the group's newest messages back to the
// cursor.
//
// Unread messages are always the owner's newest ones from the peer,
// recalled ones aside (a read marks a prefix read, a new message is the
// newest), so a read up to a seq before the end counts those left from
// the conversation's end back, at most the unread count before
// (storage/pebble's markRead). The contact is read FOR UPDATE first; the
// count and the write follow in a statement of their own, which sees every
// message up to the contact's last seq.

// SQL of the cursors.
const (
	// sqlLockReads locks owner's ($1) records of peers ($2).
	sqlLockReads = `SELECT peer, unread, read_seq, last_seq FROM contacts WHERE owner = $1 AND peer = ANY($2::bigint[]) ORDER BY peer FOR UPDATE`
	// sqlReadAll marks a conversation read to its end: $3 the read seq.
	sqlReadAll = `UPDATE contacts SET unread = 0, read_seq = $3 WHERE owner = $1 AND peer = $2`
	// sqlReadTo marks a conversation read up to $5, leaving unread the
	// messages from the peer after it up to $6 (the last seq), counted
	// newest first and at most $7; $3, $4 the conversation.
	sqlReadTo = `UPDATE contacts SET read_seq = greatest(read_seq, $5), unread = (SELECT count(*) FROM (
			SELECT 1 FROM messages WHERE conv_a = $3 AND conv_b = $4 AND seq > $5 AND seq <= $6 AND from_uid = $2 AND NOT recalled
			ORDER BY seq DESC LIMIT $7) AS left_unread)
		WHERE owner = $1 AND peer = $2`
	// sqlGroupRead moves uid's ($1) cursor in group $2 to $3 if later.
	sqlGroupRead = `INSERT INTO group_reads AS g (uid, gid, read_seq) VALUES ($1, $2, $3)
		ON CONFLICT (uid, gid) DO UPDATE SET read_seq = EXCLUDED.read_seq WHERE g.read_seq < EXCLUDED.read_seq`
	// sqlGroupReadLocked is sqlGroupRead returning the cursor before.
	sqlGroupReadLocked = `WITH old AS (
			SELECT read_seq FROM group_reads WHERE uid = $1::bigint AND gid = $2::bigint FOR UPDATE
		), up AS (
			INSERT INTO group_reads AS g (uid, gid, read_seq) SELECT $1, $2, $3::bigint
			WHERE $3 > coalesce((SELECT read_seq FROM old), 0)
			ON CONFLICT (uid, gid) DO UPDATE SET read_seq = EXCLUDED.read_seq WHERE g.read_seq < EXCLUDED.read_seq
		)
		SELECT coalesce((SELECT read_seq FROM old), 0)`
	sqlGroupReadSeq = `SELECT read_seq FROM group_reads WHERE uid = $1 AND gid = $2`
	// sqlGroupUnread counts group $1's messages in ($2, $3] not from $4
	// and not recalled.
	sqlGroupUnread = `SELECT count(*) FROM messages WHERE conv_a = 0 AND conv_b = $1 AND seq > $2 AND seq <= $3 AND from_uid <> $4 AND NOT recalled`
	// sqlRemoveQueued removes queue rows by seq.
	sqlRemoveQueued = `DELETE FROM queue WHERE uid = $1 AND grp = $2 AND peer = $3 AND seq = ANY($4::bigint[])`
)

// readState is owner's record of a peer as a read needs it.
type readState struct {
	unread, readSeq, last uint64
}

// lockReads locks owner's records of peers and returns those found.
func lockReads(b *batch, owner uint64, peers []int64) (map[uint64]readState, error) {
	rows, err := b.tx.Query(b.ctx, sqlLockReads, i64(owner), peers)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]readState, len(peers))
	var p, unread, readSeq, last int64
	_, err = pgx.ForEachRow(rows, []any{&p, &unread, &readSeq, &last}, func() error {
		out[uint64(p)] = readState{uint64(unread), uint64(readSeq), uint64(last)}
		return nil
	})
	return out, err
}

// markRead queues the write of owner's conversation with peer read up to
// upTo, st being its record; it returns the read seq after it.
func markRead(q *pgx.Batch, owner, peer uint64, st readState, upTo uint64) uint64 {
	switch {
	case upTo >= st.last:
		read := max(st.readSeq, st.last)
		if st.unread != 0 || read != st.readSeq {
			q.Queue(sqlReadAll, i64(owner), i64(peer), i64(read))
		}
		return read
	case upTo <= st.readSeq && st.readSeq != 0:
		return st.readSeq // read that far already
	}
	a, c := convOf(owner, peer)
	q.Queue(sqlReadTo, i64(owner), i64(peer), a, c, i64(upTo), i64(st.last), i64(st.unread))
	return max(st.readSeq, upTo)
}

// Read marks uid's conversation (with peer, or group peer when group is
// set) read up to seq upTo (PROTOCOL §7.5): the read cursor never
// decreases, unread follows it, and the offline entries up to upTo go.
// done runs on the committer after the commit.
func (db *DB) Read(uid, peer uint64, group bool, upTo uint64, done func(storage.ReadResult, error)) error {
	var res storage.ReadResult
	return db.submit(op{
		apply: func(b *batch) error {
			res = storage.ReadResult{}
			var q pgx.Batch
			if group {
				var old int64
				if err := b.tx.QueryRow(b.ctx, sqlGroupReadLocked, i64(uid), i64(peer), i64(upTo)).Scan(&old); err != nil {
					return err
				}
				res.ReadSeq, res.Advanced = max(uint64(old), upTo), upTo > uint64(old)
			} else {
				sts, err := lockReads(b, uid, []int64{i64(peer)})
				if err != nil {
					return err
				}
				if st, ok := sts[peer]; ok {
					res.ReadSeq = markRead(&q, uid, peer, st, upTo)
					res.Advanced = res.ReadSeq > st.readSeq
				}
			}
			queueAck(&q, uid, peer, group, upTo)
			return b.tx.SendBatch(b.ctx, &q).Close()
		},
		done: func(err error) { done(res, err) },
	})
}

// RemoveOffline removes the queue entries listed and marks the
// conversations read as each Removal says, in one commit. It never
// blocks: the caller may be an event loop. done runs on the committer
// after the commit.
func (db *DB) RemoveOffline(uid uint64, rs []storage.Removal, done func(error)) error {
	rs = mergeRemovals(rs)
	return db.submitNoWait(op{
		apply: func(b *batch) error {
			var peers []int64
			for _, r := range rs {
				if !r.Group && r.ReadTo != 0 {
					peers = append(peers, i64(r.Peer))
				}
			}
			var sts map[uint64]readState
			if len(peers) > 0 {
				var err error
				if sts, err = lockReads(b, uid, peers); err != nil {
					return err
				}
			}
			var q pgx.Batch
			for _, r := range rs {
				switch {
				case r.Group && r.ReadTo != 0:
					q.Queue(sqlGroupRead, i64(uid), i64(r.Peer), i64(r.ReadTo))
				case !r.Group && r.ReadTo != 0:
					if st, ok := sts[r.Peer]; ok {
						markRead(&q, uid, r.Peer, st, r.ReadTo)
					}
				}
				if len(r.Seqs) > 0 {
					q.Queue(sqlRemoveQueued, i64(uid), r.Group, i64(r.Peer), uids(r.Seqs))
				}
			}
			if q.Len() == 0 {
				return nil
			}
			return b.tx.SendBatch(b.ctx, &q).Close()
		},
		done: done,
	})
}

// mergeRemovals folds removals of one queue into one: their seqs, and the
// highest ReadTo (marking read to a and then to b is marking read to the
// later of the two).
func mergeRemovals(rs []storage.Removal) []storage.Removal {
	type key struct {
		peer  uint64
		group bool
	}
	seen := make(map[key]int, len(rs))
	out := make([]storage.Removal, 0, len(rs))
	for _, r := range rs {
		k := key{r.Peer, r.Group}
		i, ok := seen[k]
		if !ok {
			seen[k] = len(out)
			r.Seqs = append([]uint64(nil), r.Seqs...)
			out = append(out, r)
			continue
		}
		out[i].Seqs = append(out[i].Seqs, r.Seqs...)
		out[i].ReadTo = max(out[i].ReadTo, r.ReadTo)
	}
	return out
}

// GroupReadSeq returns uid's read cursor in group gid (0: none).
func (db *DB) GroupReadSeq(uid, gid uint64) (uint64, error) {
	if db.closed.Load() {
		return 0, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	var n int64
	err := db.pool.QueryRow(ctx, sqlGroupReadSeq, i64(uid), i64(gid)).Scan(&n)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("postgres: read seq of %d in %d: %w", uid, gid, err)
	}
	return uint64(n), nil
}

// GroupUnread counts the messages of group gid after readSeq up to last
// that are not uid's and not recalled (PROTOCOL §7.4, §7.5), reading at
// most the newest storage.GroupUnreadWalk of them: older ones count as
// unread without being read.
func (db *DB) GroupUnread(uid, gid, readSeq, last uint64) (uint64, error) {
	if last <= readSeq {
		return 0, nil
	}
	if db.closed.Load() {
		return 0, storage.ErrClosed
	}
	lo := readSeq
	if last-readSeq > storage.GroupUnreadWalk {
		lo = last - storage.GroupUnreadWalk
	}
	ctx, cancel := readCtx()
	defer cancel()
	var n int64
	if err := db.pool.QueryRow(ctx, sqlGroupUnread, i64(gid), i64(lo), i64(last), i64(uid)).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: unread of %d in %d: %w", uid, gid, err)
	}
	return lo - readSeq + uint64(n), nil
}
