package postgres

import (
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Messages (PROTOCOL §4.1-§4.3, §5). A conversation is (conv_a, conv_b):
// the two uids of a private one, lower first, or (0, gid). Its row of
// conversations allocates its seqs: the append's upsert raises last_seq by
// one and last_time to the message's createTime if later, and returns
// both, under the row's lock until the batch commits, so appends to one
// conversation from every node get 1, 2, 3… with no gap and times that
// never go back. A batch that fails rolls its seqs back with it.
//
// An append is one statement and, for a private message, one pipelined
// batch of writes computed from what the statement read (contact.go):
//
//   - the statement checks the sender's id (ClientID), allocates the seq,
//     inserts the message and its queue row, and reads the pair's contacts
//     and the visitor's partner FOR UPDATE;
//   - the batch writes both contacts, the totals' deltas and the partner.
//
// A resend whose (from, id) is stored inserts nothing and costs one more
// read, of the stored message. Two nodes storing the same new id at once:
// the second's insert fails on messages_sender_id, its batch runs again
// one operation per transaction, and the operation finds the first's then.

// messageColumns are the columns scanMessage reads, in order.
const messageColumns = `seq, id, from_uid, to_uid, from_id, to_id, chat_type, msg_type, content, extras, create_time, group_id, gid, recalled`

// messageScan receives messageColumns.
type messageScan struct {
	seq, from, to, gid  int64
	id, extras          []byte
	fromID, toID, gname string
	chatType, msgType   int32
	content             []byte
	createTime          int64
	recalled            bool
}

func (s *messageScan) dest() []any {
	return []any{&s.seq, &s.id, &s.from, &s.to, &s.fromID, &s.toID, &s.chatType, &s.msgType, &s.content, &s.extras, &s.createTime, &s.gname, &s.gid, &s.recalled}
}

func (s *messageScan) message() storage.Message {
	m := storage.Message{
		From: uint64(s.from), To: uint64(s.to), FromID: s.fromID, ToID: s.toID, ChatType: int(s.chatType),
		MsgType: int(s.msgType), Content: string(s.content), CreateTime: s.createTime, Seq: uint64(s.seq),
		GroupID: s.gname, Group: uint64(s.gid), Recalled: s.recalled,
	}
	copy(m.ID[:], s.id)
	if len(s.extras) > 0 {
		m.Extras = append([]byte(nil), s.extras...)
	}
	return m
}

// extras is a message's extras as a bytea: none is NULL.
func extras(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// convOf is a private conversation's key.
func convOf(a, b uint64) (int64, int64) {
	if a > b {
		a, b = b, a
	}
	return i64(a), i64(b)
}

// sqlStored reads a sender's message by its id, and whether it was queued.
const sqlStored = `SELECT ` + messageColumns + `, queued FROM messages WHERE from_uid = $1 AND id = $2`

// stored reads the message from sent with id as a duplicate's result.
func stored(b *batch, from uint64, id [16]byte) (storage.AppendResult, error) {
	var s messageScan
	var queued bool
	if err := b.tx.QueryRow(b.ctx, sqlStored, i64(from), id[:]).Scan(append(s.dest(), &queued)...); err != nil {
		return storage.AppendResult{}, fmt.Errorf("postgres: stored message: %w", err)
	}
	return storage.AppendResult{Msg: s.message(), Duplicate: true, Online: !queued}, nil
}

// sqlAppendPrivate: $1, $2 the conversation, $3 from, $4 to, $5 id, $6
// check the id, $7 from id, $8 to id, $9 chat type, $10 msg type, $11
// content, $12 extras, $13 createTime, $14 queued (offline), $15 now (ms,
// the queue row's), $16 the visitor (0: none), $17 the visitor's partner.
// It returns the seq and time allocated (NULL for a duplicate), whether
// the id was stored before, the receiver's record of the sender and the
// sender's of the receiver, the visitor's partner and the previous
// partner's record of the visitor (contact.go, lockPairCTEs).
var sqlAppendPrivate = fmt.Sprintf(`WITH dup AS (
		SELECT queued FROM messages WHERE $6::boolean AND from_uid = $3::bigint AND id = $5::bytea
	), c AS (
		INSERT INTO conversations AS cv (conv_a, conv_b, last_seq, last_time)
		SELECT $1::bigint, $2::bigint, 1, $13::bigint WHERE NOT EXISTS (SELECT 1 FROM dup)
		ON CONFLICT (conv_a, conv_b) DO UPDATE
			SET last_seq = cv.last_seq + 1, last_time = greatest(cv.last_time, EXCLUDED.last_time)
		RETURNING last_seq, last_time
	), m AS (
		INSERT INTO messages (conv_a, conv_b, seq, id, from_uid, to_uid, from_id, to_id, chat_type, msg_type, content, extras, create_time, group_id, gid, queued)
		SELECT $1, $2, last_seq, $5, $3, $4::bigint, $7::text, $8::text, $9::smallint, $10::integer, $11::bytea, $12::bytea, last_time, '', 0, $14::boolean FROM c
	), q AS (
		INSERT INTO queue (uid, grp, peer, seq, pending, created)
		SELECT $4, false, $3, last_seq, NOT $14, $15::bigint FROM c WHERE $3 <> $4
	), kt AS (
		SELECT %[1]s FROM contacts WHERE owner = $4 AND peer = $3 AND $3 <> $4 AND NOT EXISTS (SELECT 1 FROM dup) FOR UPDATE
	), kf AS (
		SELECT %[1]s FROM contacts WHERE owner = $3 AND peer = $4 AND $3 <> $4 AND NOT EXISTS (SELECT 1 FROM dup) FOR UPDATE
	), pt AS (
		SELECT partner FROM partners WHERE visitor = $16::bigint AND $16 <> 0 AND $3 <> $4 AND NOT EXISTS (SELECT 1 FROM dup) FOR UPDATE
	), ko AS (
		SELECT %[2]s FROM contacts k JOIN pt ON k.owner = pt.partner WHERE k.peer = $16 AND pt.partner <> $17::bigint FOR UPDATE OF k
	)
	SELECT c.last_seq, c.last_time, EXISTS (SELECT 1 FROM dup), (SELECT * FROM kt), (SELECT * FROM kf), (SELECT partner FROM pt), (SELECT * FROM ko)
	FROM (VALUES (1)) AS one (x) LEFT JOIN c ON true`, contactArray(""), contactArray("k."))

// AppendPrivate stores a private message durably (storage.Store). done
// runs on the committer after the commit and must not block.
func (db *DB) AppendPrivate(m storage.Message, opts storage.AppendOptions, done func(storage.AppendResult)) error {
	return db.AppendPrivateTo(m, opts, storage.AppendedFunc(done))
}

// AppendPrivateTo is AppendPrivate reporting to done.
func (db *DB) AppendPrivateTo(m storage.Message, opts storage.AppendOptions, done storage.Appended) error {
	var res storage.AppendResult
	return db.submit(op{
		apply: func(b *batch) (err error) {
			res, err = db.appendPrivate(b, m, opts)
			return err
		},
		done: func(err error) {
			res.Err = err
			done.Appended(res)
		},
		cost: messageCost(&m),
	})
}

// messageCost is what a message costs the commit queue, in bytes.
func messageCost(m *storage.Message) int { return opOverhead + len(m.Content) + len(m.Extras) }

func (db *DB) appendPrivate(b *batch, m storage.Message, opts storage.AppendOptions) (storage.AppendResult, error) {
	a, c := convOf(m.From, m.To)
	self := m.From == m.To
	queued := opts.Offline && !self
	var partner uint64
	if opts.Visitor != 0 {
		partner = m.To
		if opts.Visitor == m.To {
			partner = m.From
		}
	}
	var seq, at *int64
	var dup bool
	var toA, fromA, oldC []int64
	var old *int64
	err := b.tx.QueryRow(b.ctx, sqlAppendPrivate, a, c, i64(m.From), i64(m.To), m.ID[:], opts.ClientID,
		m.FromID, m.ToID, int16(m.ChatType), int32(m.MsgType), []byte(m.Content), extras(m.Extras), m.CreateTime,
		queued, db.now().UnixMilli(), i64(opts.Visitor), i64(partner),
	).Scan(&seq, &at, &dup, &toA, &fromA, &old, &oldC)
	if err != nil {
		return storage.AppendResult{}, err
	}
	if dup {
		return stored(b, m.From, m.ID)
	}
	if seq == nil || at == nil {
		return storage.AppendResult{}, abort(b, errors.New("postgres: append allocated no seq"))
	}
	m.Seq, m.CreateTime = uint64(*seq), *at
	if self {
		// A note to oneself: stored and shown on one's other terminals,
		// but nobody's contact, unread or queue.
		return storage.AppendResult{Msg: m}, nil
	}
	toC, err := contactFrom(m.From, toA)
	if err != nil {
		return storage.AppendResult{}, abort(b, err)
	}
	fromC, err := contactFrom(m.To, fromA)
	if err != nil {
		return storage.AppendResult{}, abort(b, err)
	}
	if oldC, err = refreshOld(b, opts.Visitor, partner, old, oldC); err != nil {
		return storage.AppendResult{}, abort(b, err)
	}
	sv, err := serveFrom(opts.Visitor, partner, old, oldC)
	if err != nil {
		return storage.AppendResult{}, abort(b, err)
	}
	newTo := toC.c
	newTo.Unread++
	newTo.Pending = true
	newTo.LastContact = m.CreateTime
	newTo.LastMessage, newTo.LastSeq = m.CreateTime, m.Seq
	newFrom := fromC.c
	newFrom.Pending = false
	newFrom.LastContact = m.CreateTime
	newFrom.LastMessage, newFrom.LastSeq = m.CreateTime, m.Seq
	switch opts.Visitor {
	case m.From:
		newTo.Waiting = true // the visitor wrote: they wait for a reply
	case m.To:
		newFrom.Waiting = false // answered
	}
	var w writes
	w.contact(m.To, toC, newTo)
	w.contact(m.From, fromC, newFrom)
	sv.write(&w)
	if err := w.send(b); err != nil {
		return storage.AppendResult{}, err
	}
	res := storage.AppendResult{Msg: m}
	if !opts.Offline {
		// Acked as pushed: the queue row is pending until the push is
		// settled (delivery.go).
		res.Delivery = storage.NewDelivery(newPushes(db, []queueKey{{uid: i64(m.To), peer: i64(m.From), seq: i64(m.Seq)}}), 0)
	}
	return res, nil
}

// sqlAppendGroup: $1, $2 the conversation (0, gid), $3 from, $4 id, $5
// check the id, $6 from id, $7 to id, $8 chat type, $9 msg type, $10
// content, $11 extras, $12 createTime, $13 group id, $14 now (ms), $15 the
// members to queue, $16 the members online (pending rows), $17 check the
// version, $18 the version the members were read at. It takes the group's
// row FOR SHARE (joins and leaves wait for the batch, and it waits for
// theirs) and writes nothing when the version moved; it returns whether
// the version held, the seq and time allocated (NULL when nothing was
// written) and whether the id was stored before.
const sqlAppendGroup = `WITH v AS (
		SELECT version FROM chat_groups WHERE gid = $2::bigint FOR SHARE
	), ok AS (
		SELECT NOT $17::boolean OR coalesce((SELECT version = $18::bigint FROM v), false) AS ok
	), dup AS (
		SELECT queued FROM messages WHERE $5::boolean AND from_uid = $3::bigint AND id = $4::bytea
	), c AS (
		INSERT INTO conversations AS cv (conv_a, conv_b, last_seq, last_time)
		SELECT $1::bigint, $2, 1, $12::bigint WHERE (SELECT ok FROM ok) AND NOT EXISTS (SELECT 1 FROM dup)
		ON CONFLICT (conv_a, conv_b) DO UPDATE
			SET last_seq = cv.last_seq + 1, last_time = greatest(cv.last_time, EXCLUDED.last_time)
		RETURNING last_seq, last_time
	), m AS (
		INSERT INTO messages (conv_a, conv_b, seq, id, from_uid, to_uid, from_id, to_id, chat_type, msg_type, content, extras, create_time, group_id, gid, queued)
		SELECT $1, $2, last_seq, $4, $3, 0, $6::text, $7::text, $8::smallint, $9::integer, $10::bytea, $11::bytea, last_time, $13::text, $2, false FROM c
	), q AS (
		INSERT INTO queue (uid, grp, peer, seq, pending, created)
		SELECT r.uid, true, $2, last_seq, r.pending, $14::bigint FROM c, (
			SELECT uid, false AS pending FROM unnest($15::bigint[]) AS uid
			UNION ALL SELECT uid, true FROM unnest($16::bigint[]) AS uid
		) AS r
	)
	SELECT (SELECT ok FROM ok), c.last_seq, c.last_time, EXISTS (SELECT 1 FROM dup)
	FROM (VALUES (1)) AS one (x) LEFT JOIN c ON true`

// sqlGroupMembers reads the members inside an append whose version moved.
const sqlGroupMembers = `SELECT uid FROM group_members WHERE gid = $1 ORDER BY uid`

// AppendGroup stores a group message durably (storage.Store): history,
// idempotency, a queue row for every uid in offline and a pending one for
// every member in online, settled through res.Delivery.Member(i). When the
// group's version is no longer ver, the members are read again inside the
// transaction: one who joined meanwhile is queued, one who left gets
// nothing. done runs on the committer.
func (db *DB) AppendGroup(m storage.Message, online, offline []uint64, ver uint64, opts storage.AppendOptions, done func(storage.AppendResult)) error {
	var res storage.AppendResult
	return db.submit(op{
		apply: func(b *batch) (err error) {
			res, err = db.appendGroup(b, m, online, offline, ver, opts)
			return err
		},
		done: func(err error) {
			res.Err = err
			done(res)
		},
		cost: messageCost(&m) + 8*(len(online)+len(offline)),
	})
}

func (db *DB) appendGroup(b *batch, m storage.Message, online, offline []uint64, ver uint64, opts storage.AppendOptions) (storage.AppendResult, error) {
	on, off := uids(online), uids(offline)
	check := true
	for {
		var ok, dup bool
		var seq, at *int64
		err := b.tx.QueryRow(b.ctx, sqlAppendGroup, int64(0), i64(m.Group), i64(m.From), m.ID[:], opts.ClientID,
			m.FromID, m.ToID, int16(m.ChatType), int32(m.MsgType), []byte(m.Content), extras(m.Extras), m.CreateTime, m.GroupID,
			db.now().UnixMilli(), off, on, check, i64(ver),
		).Scan(&ok, &seq, &at, &dup)
		if err != nil {
			return storage.AppendResult{}, err
		}
		if !ok {
			// Joins or leaves committed since the members were read: read
			// them again, under the group's lock that the statement took.
			if on, off, err = regroup(b, m.Group, m.From, online); err != nil {
				return storage.AppendResult{}, err
			}
			check = false
			continue
		}
		if dup {
			return stored(b, m.From, m.ID)
		}
		if seq == nil || at == nil {
			return storage.AppendResult{}, abort(b, errors.New("postgres: group append allocated no seq"))
		}
		msg := m
		msg.Seq, msg.CreateTime = uint64(*seq), *at
		res := storage.AppendResult{Msg: msg}
		if len(online) > 0 {
			keys := make([]queueKey, len(online))
			for i, u := range online {
				keys[i] = queueKey{uid: i64(u), grp: true, peer: i64(m.Group), seq: i64(msg.Seq)}
			}
			res.Delivery = storage.NewDelivery(newPushes(db, keys), 0)
		}
		return res, nil
	}
}

// regroup reads gid's members and returns those of online still members
// (pending rows) and every other member but from (queued: offline when
// read, or joined since). A member of online who left gets no row; its
// Delivery settles nothing.
func regroup(b *batch, gid, from uint64, online []uint64) (on, off []int64, err error) {
	rows, err := b.tx.Query(b.ctx, sqlGroupMembers, i64(gid))
	if err != nil {
		return nil, nil, err
	}
	members, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, nil, err
	}
	for _, u := range members {
		switch {
		case uint64(u) == from:
		case inSorted(online, uint64(u)):
			on = append(on, u)
		default:
			off = append(off, u)
		}
	}
	return on, off, nil
}

// inSorted reports whether u is in us, ascending.
func inSorted(us []uint64, u uint64) bool {
	_, ok := slices.BinarySearch(us, u)
	return ok
}

func uids(us []uint64) []int64 {
	out := make([]int64, len(us))
	for i, u := range us {
		out[i] = i64(u)
	}
	return out
}

// abort fails the batch's transaction, so the batch runs again one
// operation per transaction and err fails this operation alone: for an
// error after the operation wrote (commit.go's rule: an operation that
// fails with the transaction usable must have written nothing).
func abort(b *batch, err error) error {
	if !aborted(b) {
		_, _ = b.tx.Exec(b.ctx, `SELECT 1 / 0`)
	}
	return err
}
