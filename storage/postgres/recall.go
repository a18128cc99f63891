package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Recall (PROTOCOL §4.5). The message is read FOR UPDATE by its sender's
// id (two recalls of it, from any nodes, run one after the other), and
// with it, for a private message, both contacts of the pair. What the
// recall changes in them is read next, in a statement of its own that
// sees every message the locked contacts count: whether the message was
// still unread, and the sender of the newest message left.

// sqlRecallLock reads the message $1 sent with id $2 and locks it and,
// for a private message it may still recall (at or after $3), the
// receiver's record of the sender and the sender's of the receiver.
var sqlRecallLock = fmt.Sprintf(`WITH m AS (
		SELECT conv_a, conv_b, %[1]s FROM messages WHERE from_uid = $1::bigint AND id = $2::bytea FOR UPDATE
	), kt AS (
		SELECT %[2]s FROM contacts k JOIN m ON k.owner = m.to_uid AND k.peer = m.from_uid
		WHERE m.gid = 0 AND m.to_uid <> m.from_uid AND NOT m.recalled AND m.create_time >= $3::bigint FOR UPDATE OF k
	), kf AS (
		SELECT %[2]s FROM contacts k JOIN m ON k.owner = m.from_uid AND k.peer = m.to_uid
		WHERE m.gid = 0 AND m.to_uid <> m.from_uid AND NOT m.recalled AND m.create_time >= $3 FOR UPDATE OF k
	)
	SELECT m.*, (SELECT * FROM kt), (SELECT * FROM kf) FROM m`, messageColumns, contactArray("k."))

// sqlRecallCounts reads, in conversation ($1, $2), how many messages of
// $4 follow seq $3 (not recalled, at most $5, newest first; only when $6)
// and the sender of the newest message but $3 not recalled.
const sqlRecallCounts = `SELECT
	CASE WHEN $6::boolean THEN (SELECT count(*) FROM (
		SELECT 1 FROM messages WHERE conv_a = $1::bigint AND conv_b = $2::bigint AND seq > $3::bigint AND from_uid = $4::bigint AND NOT recalled
		ORDER BY seq DESC LIMIT $5::bigint) AS after) ELSE 0 END,
	(SELECT from_uid FROM messages WHERE conv_a = $1 AND conv_b = $2 AND seq <> $3 AND NOT recalled ORDER BY seq DESC LIMIT 1)`

// SQL of a recall's writes.
const (
	sqlRecallMessage = `UPDATE messages SET recalled = true, content = ''::bytea, extras = NULL WHERE conv_a = $1 AND conv_b = $2 AND seq = $3`
	sqlRecallQueued  = `DELETE FROM queue WHERE uid = $1 AND NOT grp AND peer = $2 AND seq = $3`
	// sqlRecallGroupQueued removes a group message ($2) from the queues
	// of group $1's members, pending pushes included.
	sqlRecallGroupQueued = `DELETE FROM queue q USING group_members g
		WHERE g.gid = $1 AND q.uid = g.uid AND q.grp AND q.peer = $1 AND q.seq = $2`
)

// Recall replaces the message that from sent with id by a recall marker
// (content and extras dropped, Recalled set) and removes it from every
// offline queue, pending pushes included, if it was sent at or after
// notBefore (PROTOCOL §4.5). A private message no longer counts as unread
// for its receiver, and both sides' pending-reply flags follow the newest
// message left. done gets the marker, or ErrNotFound, ErrTooLate or
// ErrRecalled; it runs on the committer.
func (db *DB) Recall(from uint64, id [16]byte, notBefore int64, done func(storage.Message, error)) error {
	var m storage.Message
	return db.submit(op{
		apply: func(b *batch) (err error) {
			m, err = db.recall(b, from, id, notBefore)
			return err
		},
		done: func(err error) { done(m, err) },
	})
}

func (db *DB) recall(b *batch, from uint64, id [16]byte, notBefore int64) (storage.Message, error) {
	var ca, cb int64
	var s messageScan
	var toA, fromA []int64
	err := b.tx.QueryRow(b.ctx, sqlRecallLock, i64(from), id[:], notBefore).Scan(append(append([]any{&ca, &cb}, s.dest()...), &toA, &fromA)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Message{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Message{}, err
	}
	m := s.message()
	switch {
	case m.Recalled:
		return m, storage.ErrRecalled
	case m.CreateTime < notBefore:
		return m, storage.ErrTooLate
	}
	var w writes
	group := m.ChatType == storage.ChatGroup
	if !group && m.To != m.From {
		to, err := contactFrom(m.From, toA)
		if err != nil {
			return m, abort(b, err)
		}
		fm, err := contactFrom(m.To, fromA)
		if err != nil {
			return m, abort(b, err)
		}
		// Unread messages are the receiver's newest ones from the sender
		// (read.go): m is among them unless as many come after it.
		needCount := to.found && to.c.Unread > 0 && (m.Seq > to.c.ReadSeq || to.c.ReadSeq == 0)
		var after int64
		var newest *int64
		if err := b.tx.QueryRow(b.ctx, sqlRecallCounts, ca, cb, i64(m.Seq), i64(m.From), i64(to.c.Unread), needCount).Scan(&after, &newest); err != nil {
			return m, err
		}
		unread := needCount && uint64(after) < to.c.Unread
		var newestFrom uint64
		if newest != nil {
			newestFrom = uint64(*newest)
		}
		if to.found {
			c := to.c
			if unread {
				c.Unread--
			}
			c.Pending = newestFrom == m.From
			w.contact(m.To, to, c)
		}
		if fm.found {
			c := fm.c
			c.Pending = newestFrom == m.To
			w.contact(m.From, fm, c)
		}
	}
	m.Recalled, m.Content, m.Extras = true, "", nil
	w.q.Queue(sqlRecallMessage, ca, cb, i64(m.Seq))
	if group {
		w.q.Queue(sqlRecallGroupQueued, i64(m.Group), i64(m.Seq))
	} else {
		w.q.Queue(sqlRecallQueued, i64(m.To), i64(m.From), i64(m.Seq))
	}
	if err := w.send(b); err != nil {
		return m, err
	}
	return m, nil
}
