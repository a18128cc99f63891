package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// History returns the page of the private conversation between a and b
// that q selects, in the order q asks for, and whether the selection holds
// more messages after the page.
func (db *DB) History(a, b uint64, q HistoryQuery) ([]Message, bool, error) {
	if !db.enter() {
		return nil, false, ErrClosed
	}
	defer db.leave()
	return db.history(privateConv(a, b), q)
}

func (db *DB) history(conv convKey, q HistoryQuery) ([]Message, bool, error) {
	if q.Count <= 0 {
		return nil, false, nil
	}
	lo, hi := q.AfterSeq+1, uint64(math.MaxUint64-1) // seq range, inclusive
	if q.BeforeSeq != 0 {
		if q.BeforeSeq <= 1 {
			return nil, false, nil
		}
		hi = q.BeforeSeq - 1
	}
	var err error
	if q.Begin != 0 {
		if lo, err = db.firstSeqAtOrAfter(conv, q.Begin, lo); err != nil {
			return nil, false, err
		}
	}
	if q.End != 0 {
		if hi, err = db.lastSeqAtOrBefore(conv, q.End, hi); err != nil {
			return nil, false, err
		}
	}
	if lo > hi {
		return nil, false, nil
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: keyHistory(conv, lo),
		UpperBound: keyHistory(conv, hi+1),
	})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	out := make([]Message, 0, min(q.Count, 64))
	// Offsets skip by key, not by stepping: seqs have no gaps.
	var ok bool
	if q.Desc {
		if !it.Last() { // the newest seq within the bounds anchors the offset
			return nil, false, it.Error()
		}
		newest := binary.BigEndian.Uint64(it.Key()[len(it.Key())-8:])
		ok = it.SeekLT(keyHistory(conv, satSub(newest+1, q.Offset)))
	} else {
		ok = it.SeekGE(keyHistory(conv, satAdd(lo, q.Offset)))
	}
	size := 0
	lc := logCursor{lr: db.ldb}
	defer lc.Close()
	for ; ok && len(out) < q.Count && (q.MaxBytes <= 0 || len(out) == 0 || size < q.MaxBytes); ok = step(it, q.Desc) {
		m, err := lc.message(it.Value())
		if err != nil {
			return nil, false, err
		}
		size += MessageSize(&m)
		out = append(out, m)
	}
	return out, ok, it.Error()
}

func step(it *pebble.Iterator, desc bool) bool {
	if desc {
		return it.Prev()
	}
	return it.Next()
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

func satSub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// createTime never decreases along a conversation's gap-free seqs, so a
// time bound becomes a seq bound by binary search over history records:
// about log2(n) point reads, and no index to write with every message.

// firstSeqAtOrAfter returns the first seq ≥ floor whose createTime ≥ t,
// or MaxUint64 when there is none.
func (db *DB) firstSeqAtOrAfter(conv convKey, t int64, floor uint64) (uint64, error) {
	last, err := tail(db.pdb, db.ldb, conv)
	if err != nil {
		return 0, err
	}
	s, err := db.searchSeq(conv, max(floor, 1), last.seq, func(ct int64) bool { return ct >= t })
	if err != nil || s > last.seq {
		return math.MaxUint64, err
	}
	return s, nil
}

// lastSeqAtOrBefore returns the last seq ≤ ceil whose createTime ≤ t, or
// 0 when there is none.
func (db *DB) lastSeqAtOrBefore(conv convKey, t int64, ceil uint64) (uint64, error) {
	if t == math.MaxInt64 {
		return ceil, nil
	}
	last, err := tail(db.pdb, db.ldb, conv)
	if err != nil {
		return 0, err
	}
	s, err := db.searchSeq(conv, 1, min(ceil, last.seq), func(ct int64) bool { return ct > t })
	return s - 1, err
}

// searchSeq returns the first seq in [lo, hi] whose createTime satisfies
// pred, or hi+1 when none does. pred must be false then true along seqs.
func (db *DB) searchSeq(conv convKey, lo, hi uint64, pred func(int64) bool) (uint64, error) {
	end := hi + 1
	for lo < end {
		mid := lo + (end-lo)/2
		ct, err := db.timeAt(conv, mid)
		if err != nil {
			return 0, err
		}
		if pred(ct) {
			end = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// timeAt reads the createTime of one history record.
func (db *DB) timeAt(conv convKey, seq uint64) (int64, error) {
	v, closer, err := db.pdb.Get(keyHistory(conv, seq))
	if err != nil {
		return 0, fmt.Errorf("storage: history %d: %w", seq, err)
	}
	defer closer.Close()
	return recordTime(db.ldb, v)
}

// ReadOffline returns the oldest queued messages q selects, grouped by
// conversation; it removes nothing (PROTOCOL §4.4 type 2; type 0 removes
// what the client was sent with RemoveOffline). A query of one private
// queue returns its page even when empty, with LastSeq set.
func (db *DB) ReadOffline(uid uint64, q QueueQuery) (QueuePage, error) {
	if !db.enter() {
		return QueuePage{}, ErrClosed
	}
	defer db.leave()
	var res QueuePage
	if db.closed.Load() {
		return res, ErrClosed
	}
	b := budget{limit: q.Limit, bytes: q.MaxBytes}
	var err error
	if q.Group == 0 {
		lower, upper := keyOffline(uid, 0, 0)[:2+8], keyOffline(uid+1, 0, 0)[:2+8]
		if q.Peer != 0 {
			lower, upper = keyOffline(uid, q.Peer, 0)[:2+16], keyOffline(uid, q.Peer+1, 0)[:2+16]
		}
		res.Friends, res.More, err = queueRead(db.pdb, db.ldb, lower, upper, &b, func(p uint64) convKey { return privateConv(uid, p) })
		if err != nil {
			return res, err
		}
		if q.Peer != 0 && len(res.Friends) == 0 {
			res.Friends = []OfflinePage{{Peer: q.Peer}}
		}
		for i := range res.Friends {
			pg := &res.Friends[i]
			st, err := tail(db.pdb, db.ldb, privateConv(uid, pg.Peer))
			if err != nil {
				return res, err
			}
			pg.LastSeq = st.seq
		}
		if q.Peer != 0 || res.More {
			return res, nil
		}
	}
	lower, upper := key2(prefixGroupQueue, uid, 0)[:2+8], key2(prefixGroupQueue, uid+1, 0)[:2+8]
	if q.Group != 0 {
		lower, upper = key2(prefixGroupQueue, uid, q.Group), key2(prefixGroupQueue, uid, q.Group+1)
	}
	res.Groups, res.More, err = queueRead(db.pdb, db.ldb, lower, upper, &b, groupConv)
	return res, err
}

// budget is what a page may still take.
type budget struct {
	limit, bytes int // messages and bytes left; bytes <= 0 at start: no byte bound
	taken        int
	weighed      bool
}

// full reports whether the page can take no more messages.
func (b *budget) full() bool {
	return b.limit <= 0 || (b.weighed && b.taken > 0 && b.bytes <= 0)
}

func (b *budget) take(m *Message) {
	b.limit--
	b.taken++
	if b.bytes > 0 || b.weighed {
		b.weighed = true
		b.bytes -= MessageSize(m)
	}
}

// reader is what queue reads need from a DB or an indexed batch.
type reader interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
	Get([]byte) ([]byte, io.Closer, error)
}

// queueRead reads queue keys prefix|uid|peer|seq in [lower, upper) of r
// and the messages they point at (records in the log lr), grouped by
// peer, until b is full; convOf names peer's conversation. Entries whose
// message is gone are skipped. more is set when entries remain; each
// page's More when its own queue has more.
func queueRead(r, lr reader, lower, upper []byte, b *budget, convOf func(peer uint64) convKey) (pages []OfflinePage, more bool, err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	lc := logCursor{lr: lr}
	defer lc.Close()
	ok := it.First()
	for ; ok && !b.full(); ok = it.Next() {
		k := it.Key()
		if len(k) != 2+24 {
			return nil, false, errCorrupt
		}
		p := binary.BigEndian.Uint64(k[10:])
		seq := binary.BigEndian.Uint64(k[18:])
		v, closer, err := r.Get(keyHistory(convOf(p), seq))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		m, err := lc.message(v)
		closer.Close()
		if err != nil {
			return nil, false, err
		}
		if len(pages) == 0 || pages[len(pages)-1].Peer != p {
			pages = append(pages, OfflinePage{Peer: p})
		}
		pg := &pages[len(pages)-1]
		pg.Msgs = append(pg.Msgs, m)
		b.take(&m)
	}
	if err := it.Error(); err != nil {
		return nil, false, err
	}
	if ok && len(pages) > 0 {
		// The next entry tells whether the last page's queue goes on.
		k := it.Key()
		pages[len(pages)-1].More = len(k) == 2+24 && binary.BigEndian.Uint64(k[10:]) == pages[len(pages)-1].Peer
	}
	return pages, ok, nil
}

// RemoveOffline removes the queue entries listed and marks the private
// conversations read as each Removal says, in one durable batch. It never
// blocks: the caller may be an event loop reporting the write of a reply.
// done runs on the committer after the commit.
func (db *DB) RemoveOffline(uid uint64, rs []Removal, done func(error)) error {
	return db.submitNoWait(op{
		applyFn: func(t *tx) error {
			for _, r := range rs {
				if r.Group && r.ReadTo != 0 {
					old, err := t.groupReadSeq(uid, r.Peer)
					if err != nil {
						return err
					}
					if r.ReadTo > old {
						t.set(keyGroupRead(uid, r.Peer), binary.AppendUvarint(nil, r.ReadTo))
					}
				}
				if !r.Group && r.ReadTo != 0 {
					// A failure here may follow writes of an earlier
					// Removal: the committer rebuilds the batch without
					// this operation (commit.go).
					if err := t.markRead(uid, r.Peer, r.ReadTo); err != nil {
						return err
					}
				}
				for _, s := range r.Seqs {
					if r.Group {
						t.del(keyGroupQueue(uid, r.Peer, s))
					} else {
						t.del(keyOffline(uid, r.Peer, s))
					}
				}
			}
			return nil
		},
		doneFn: done,
	})
}

// Contact returns owner's record of peer, or ErrNotFound.
func (db *DB) Contact(owner, peer uint64) (Contact, error) {
	if !db.enter() {
		return Contact{}, ErrClosed
	}
	defer db.leave()
	v, err := db.get(keyContact(owner, peer))
	if err != nil {
		return Contact{}, err
	}
	return decodeContact(peer, v)
}
