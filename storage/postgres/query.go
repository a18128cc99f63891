package postgres

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Pages (PROTOCOL §4.4). Seqs have no gaps and createTime never decreases
// along them, so a history page's offset, seq bounds and time window all
// become one seq range before anything is read: the page is a range of
// messages' primary key, newest or oldest first, and reads what it
// returns. An offline page is a range of queue's primary key joined to
// messages by theirs.
//
// Both stop at a count and at a byte budget (storage.MessageSize; the
// first message always taken), as storage/pebble's do. The budget is
// applied in the statement (budgeted): it reads at most the count and one
// more row, computes the running size, and returns the rows within the
// budget and the one after them, without its content, which tells
// whether the selection goes on.

// messageSize is storage.MessageSize in SQL: octet_length reads a TOASTed
// value's size without fetching it.
const messageSize = `octet_length(m.content) + coalesce(octet_length(m.extras), 0) + octet_length(m.from_id) + octet_length(m.to_id) + octet_length(m.group_id)`

// budgeted wraps base, a query of peer, messageColumns and sz ordered by
// order and limited to $n + 1 rows, with the budget: $n the messages it
// may take, $n+1 whether the first row is taken whatever its size (the
// page holds nothing yet), $n+2 the bytes it may take (the rows whose
// preceding rows weigh less are taken). It returns inc (taken), peer and
// messageColumns of the rows taken and of the one after them, if any (not
// taken: inc false, content and extras empty).
func budgeted(base, order string, n int) string {
	return fmt.Sprintf(`SELECT inc, peer, seq, id, from_uid, to_uid, from_id, to_id, chat_type, msg_type,
			CASE WHEN inc THEN content ELSE ''::bytea END, CASE WHEN inc THEN extras END, create_time, group_id, gid, recalled
		FROM (
			SELECT s.*, lag(inc, 1, true) OVER (ORDER BY rn) AS prev_inc FROM (
				SELECT r.*, rn <= $%[3]d::bigint AND ((rn = 1 AND $%[4]d::boolean)
					OR coalesce(sum(sz) OVER (ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) < $%[5]d::bigint) AS inc
				FROM (SELECT p.*, row_number() OVER (ORDER BY %[2]s) AS rn FROM (%[1]s) AS p) AS r
			) AS s
		) AS t
		WHERE inc OR prev_inc ORDER BY rn`, base, order, n, n+1, n+2)
}

// budget is what a page may still take (storage/pebble's budget).
type budget struct {
	limit, bytes int // messages and bytes left; bytes <= 0 at start: no byte bound
	taken        int
	weighed      bool
}

func (b *budget) take(m *storage.Message) {
	b.limit--
	b.taken++
	if b.bytes > 0 || b.weighed {
		b.weighed = true
		b.bytes -= storage.MessageSize(m)
	}
}

// args are budgeted's parameters for what b may still take.
func (b *budget) args() (limit int64, first bool, bytes int64) {
	bytes = math.MaxInt64
	if b.bytes > 0 || b.weighed {
		bytes = int64(b.bytes)
	}
	return int64(max(b.limit, 0)), b.taken == 0, bytes
}

// pageRow is one row of a budgeted query.
type pageRow struct {
	inc  bool
	peer int64
	msg  storage.Message
}

// readBudgeted runs a budgeted query and takes its rows from b: the rows
// taken, and whether a row follows them.
func readBudgeted(ctx context.Context, db *DB, sql string, b *budget, args ...any) ([]pageRow, bool, error) {
	lim, first, bytes := b.args()
	rows, err := db.pool.Query(ctx, sql, append(args, lim, first, bytes)...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []pageRow
	more := false
	var s messageScan
	for rows.Next() {
		var r pageRow
		if err := rows.Scan(append([]any{&r.inc, &r.peer}, s.dest()...)...); err != nil {
			return nil, false, err
		}
		r.msg = s.message()
		if r.inc {
			b.take(&r.msg)
		} else {
			more = true
		}
		out = append(out, r)
	}
	return out, more, rows.Err()
}

// History returns the page of the private conversation between a and b
// that q selects, in the order q asks for, and whether the selection
// holds more messages after the page (PROTOCOL §4.4).
func (db *DB) History(a, b uint64, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	ca, cb := convOf(a, b)
	return db.history(ca, cb, q)
}

// GroupHistory is History for a group conversation.
func (db *DB) GroupHistory(gid uint64, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	return db.history(0, i64(gid), q)
}

// sqlHistoryBounds reads a conversation's last seq, the first seq at or
// after a time ($3) and the last at or before one ($4): one entry of
// messages_time each.
const sqlHistoryBounds = `SELECT coalesce((SELECT last_seq FROM conversations WHERE conv_a = $1 AND conv_b = $2), 0),
	(SELECT seq FROM messages WHERE conv_a = $1 AND conv_b = $2 AND create_time >= $3 ORDER BY create_time, seq LIMIT 1),
	(SELECT seq FROM messages WHERE conv_a = $1 AND conv_b = $2 AND create_time <= $4 ORDER BY create_time DESC, seq DESC LIMIT 1)`

// historyBase is a conversation's messages with seq in [$3, $4], in
// order dir, at most $5 + 1.
func historyBase(dir string) string {
	return `SELECT 0::bigint AS peer, m.seq, m.id, m.from_uid, m.to_uid, m.from_id, m.to_id, m.chat_type, m.msg_type, m.content,
			m.extras, m.create_time, m.group_id, m.gid, m.recalled, ` + messageSize + ` AS sz
		FROM messages m WHERE m.conv_a = $1::bigint AND m.conv_b = $2::bigint AND m.seq BETWEEN $3::bigint AND $4::bigint
		ORDER BY m.seq ` + dir + ` LIMIT $5::bigint + 1`
}

var (
	sqlHistoryAsc  = budgeted(historyBase("ASC"), "seq ASC", 5)
	sqlHistoryDesc = budgeted(historyBase("DESC"), "seq DESC", 5)
)

func (db *DB) history(ca, cb int64, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	if q.Count <= 0 {
		return nil, false, nil
	}
	if db.closed.Load() {
		return nil, false, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	lo, hi := q.AfterSeq+1, uint64(math.MaxUint64-1) // seq range, inclusive
	if q.BeforeSeq != 0 {
		if q.BeforeSeq <= 1 {
			return nil, false, nil
		}
		hi = q.BeforeSeq - 1
	}
	var last uint64
	if q.Begin != 0 || q.End != 0 || q.Desc {
		var l int64
		var first, final *int64
		if err := db.pool.QueryRow(ctx, sqlHistoryBounds, ca, cb, q.Begin, q.End).Scan(&l, &first, &final); err != nil {
			return nil, false, fmt.Errorf("postgres: history bounds: %w", err)
		}
		last = uint64(l)
		if q.Begin != 0 {
			// The first seq ≥ lo at or after Begin, if any: times never
			// decrease along seqs.
			if first == nil || max(uint64(*first), lo, 1) > last {
				return nil, false, nil
			}
			lo = max(uint64(*first), lo, 1)
		}
		if q.End != 0 && q.End != math.MaxInt64 {
			if final == nil {
				return nil, false, nil
			}
			hi = min(uint64(*final), hi, last)
		}
	}
	if lo > hi {
		return nil, false, nil
	}
	sql, from, to := sqlHistoryAsc, satAdd(lo, q.Offset), hi
	if q.Desc {
		newest := min(hi, last) // seqs have no gaps: the newest in [lo, hi]
		if newest < lo || q.Offset >= newest {
			return nil, false, nil
		}
		sql, from, to = sqlHistoryDesc, lo, newest-q.Offset
	}
	if from > to {
		return nil, false, nil
	}
	b := budget{limit: q.Count, bytes: q.MaxBytes}
	rows, more, err := readBudgeted(ctx, db, sql, &b, ca, cb, i64(from), i64(to))
	if err != nil {
		return nil, false, fmt.Errorf("postgres: history: %w", err)
	}
	out := make([]storage.Message, 0, len(rows))
	for _, r := range rows {
		if r.inc {
			out = append(out, r.msg)
		}
	}
	return out, more, nil
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

// queueBase is uid's ($1) queue rows of peers in [$2, $3], private or of
// groups, not pending, at most $4 + 1 in queue order (a range of queue's
// primary key, read first), joined to their messages by theirs.
func queueBase(group bool) string {
	conv, grp := `m.conv_a = least(q.uid, q.peer) AND m.conv_b = greatest(q.uid, q.peer)`, `NOT grp`
	if group {
		conv, grp = `m.conv_a = 0 AND m.conv_b = q.peer`, `grp`
	}
	return `SELECT q.peer, m.seq, m.id, m.from_uid, m.to_uid, m.from_id, m.to_id, m.chat_type, m.msg_type, m.content,
			m.extras, m.create_time, m.group_id, m.gid, m.recalled, ` + messageSize + ` AS sz
		FROM (
			SELECT uid, peer, seq FROM queue
			WHERE uid = $1::bigint AND ` + grp + ` AND peer BETWEEN $2::bigint AND $3::bigint AND NOT pending
			ORDER BY peer, seq LIMIT $4::bigint + 1
		) AS q JOIN messages m ON ` + conv + ` AND m.seq = q.seq`
}

var (
	sqlQueuePrivate = budgeted(queueBase(false), "peer, seq", 4)
	sqlQueueGroups  = budgeted(queueBase(true), "peer, seq", 4)
)

// sqlLastSeqs reads the last seqs of uid's ($1) conversations with peers.
const sqlLastSeqs = `SELECT p, coalesce(c.last_seq, 0) FROM unnest($2::bigint[]) AS p
	LEFT JOIN conversations c ON c.conv_a = least($1::bigint, p) AND c.conv_b = greatest($1, p)`

// ReadOffline returns the oldest queued messages q selects, grouped by
// conversation, private ones first; it removes nothing (PROTOCOL §4.4). A
// query of one private queue returns its page even when empty, with
// LastSeq set. Pending rows (pushes not yet settled) are not read.
func (db *DB) ReadOffline(uid uint64, q storage.QueueQuery) (storage.QueuePage, error) {
	var res storage.QueuePage
	if db.closed.Load() {
		return res, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	b := budget{limit: q.Limit, bytes: q.MaxBytes}
	var err error
	if q.Group == 0 {
		lo, hi := int64(0), int64(math.MaxInt64)
		if q.Peer != 0 {
			lo, hi = i64(q.Peer), i64(q.Peer)
		}
		if res.Friends, res.More, err = queueRead(ctx, db, sqlQueuePrivate, uid, lo, hi, &b); err != nil {
			return res, fmt.Errorf("postgres: offline queue of %d: %w", uid, err)
		}
		if q.Peer != 0 && len(res.Friends) == 0 {
			res.Friends = []storage.OfflinePage{{Peer: q.Peer}}
		}
		if err := db.lastSeqs(ctx, uid, res.Friends); err != nil {
			return res, fmt.Errorf("postgres: offline queue of %d: %w", uid, err)
		}
		if q.Peer != 0 || res.More {
			return res, nil
		}
	}
	lo, hi := int64(0), int64(math.MaxInt64)
	if q.Group != 0 {
		lo, hi = i64(q.Group), i64(q.Group)
	}
	if res.Groups, res.More, err = queueRead(ctx, db, sqlQueueGroups, uid, lo, hi, &b); err != nil {
		return res, fmt.Errorf("postgres: group queues of %d: %w", uid, err)
	}
	return res, nil
}

// queueRead reads a page of queue rows into pages by peer; more is set when
// rows follow the page, each page's More when its own queue goes on.
func queueRead(ctx context.Context, db *DB, sql string, uid uint64, lo, hi int64, b *budget) ([]storage.OfflinePage, bool, error) {
	rows, more, err := readBudgeted(ctx, db, sql, b, i64(uid), lo, hi)
	if err != nil {
		return nil, false, err
	}
	var pages []storage.OfflinePage
	for _, r := range rows {
		p := uint64(r.peer)
		if !r.inc {
			// The row after the page: does the last page's queue go on?
			if len(pages) > 0 && pages[len(pages)-1].Peer == p {
				pages[len(pages)-1].More = true
			}
			break
		}
		if len(pages) == 0 || pages[len(pages)-1].Peer != p {
			pages = append(pages, storage.OfflinePage{Peer: p})
		}
		pg := &pages[len(pages)-1]
		pg.Msgs = append(pg.Msgs, r.msg)
	}
	return pages, more, nil
}

// lastSeqs sets the LastSeq of uid's private pages.
func (db *DB) lastSeqs(ctx context.Context, uid uint64, pages []storage.OfflinePage) error {
	if len(pages) == 0 {
		return nil
	}
	peers := make([]int64, len(pages))
	for i := range pages {
		peers[i] = i64(pages[i].Peer)
	}
	rows, err := db.pool.Query(ctx, sqlLastSeqs, i64(uid), peers)
	if err != nil {
		return err
	}
	last := make(map[uint64]uint64, len(pages))
	var p, s int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &s}, func() error {
		last[uint64(p)] = uint64(s)
		return nil
	}); err != nil {
		return err
	}
	for i := range pages {
		pages[i].LastSeq = last[pages[i].Peer]
	}
	return nil
}
