package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

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
}

// History returns the page of the private conversation between a and b
// that q selects, in the order q asks for.
func (db *DB) History(a, b uint64, q HistoryQuery) ([]Message, error) {
	return db.history(privateConv(a, b), q)
}

func (db *DB) history(conv convKey, q HistoryQuery) ([]Message, error) {
	if q.Count <= 0 {
		return nil, nil
	}
	lo, hi := q.AfterSeq+1, uint64(math.MaxUint64-1) // seq range, inclusive
	if q.BeforeSeq != 0 {
		if q.BeforeSeq <= 1 {
			return nil, nil
		}
		hi = q.BeforeSeq - 1
	}
	var err error
	if q.Begin != 0 {
		if lo, err = db.firstSeqAtOrAfter(conv, q.Begin, lo); err != nil {
			return nil, err
		}
	}
	if q.End != 0 {
		if hi, err = db.lastSeqAtOrBefore(conv, q.End, hi); err != nil {
			return nil, err
		}
	}
	if lo > hi {
		return nil, nil
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: keyHistory(conv, lo),
		UpperBound: keyHistory(conv, hi+1),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := make([]Message, 0, min(q.Count, 64))
	// Offsets skip by key, not by stepping: seqs have no gaps.
	var ok bool
	if q.Desc {
		if !it.Last() { // the newest seq within the bounds anchors the offset
			return nil, it.Error()
		}
		newest := binary.BigEndian.Uint64(it.Key()[len(it.Key())-8:])
		ok = it.SeekLT(keyHistory(conv, satSub(newest+1, q.Offset)))
	} else {
		ok = it.SeekGE(keyHistory(conv, satAdd(lo, q.Offset)))
	}
	for ; ok && len(out) < q.Count; ok = step(it, q.Desc) {
		m, err := decodeMessage(it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, it.Error()
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
	last, err := tail(db.pdb, conv)
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
	last, err := tail(db.pdb, conv)
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
	return messageTime(v)
}

// OfflinePage is one peer's queued messages, oldest first.
type OfflinePage struct {
	Peer uint64
	Msgs []Message
}

// Offline returns up to limit queued messages of uid: from peer, or from
// every peer when peer is 0, grouped by peer in peer order. It removes
// nothing.
func (db *DB) Offline(uid, peer uint64, limit int) ([]OfflinePage, error) {
	return offlineRead(db.pdb, uid, peer, limit)
}

// reader is what offline reads need from a DB or an indexed batch.
type reader interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
	Get([]byte) ([]byte, io.Closer, error)
}

func offlineRead(r reader, uid, peer uint64, limit int) ([]OfflinePage, error) {
	lower, upper := keyOffline(uid, 0, 0)[:2+8], keyOffline(uid+1, 0, 0)[:2+8]
	if peer != 0 {
		lower, upper = keyOffline(uid, peer, 0)[:2+16], keyOffline(uid, peer+1, 0)[:2+16]
	}
	return queueRead(r, lower, upper, limit, func(p uint64) convKey { return privateConv(uid, p) })
}

// queueRead reads queue keys prefix|uid|peer|seq in [lower, upper) and the
// messages they point at, grouped by peer; convOf names peer's
// conversation. Entries whose message is gone are skipped.
func queueRead(r reader, lower, upper []byte, limit int, convOf func(peer uint64) convKey) ([]OfflinePage, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var pages []OfflinePage
	n := 0
	for ok := it.First(); ok && n < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != 2+24 {
			return nil, errCorrupt
		}
		p := binary.BigEndian.Uint64(k[10:])
		seq := binary.BigEndian.Uint64(k[18:])
		v, closer, err := r.Get(keyHistory(convOf(p), seq))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m, err := decodeMessage(v)
		closer.Close()
		if err != nil {
			return nil, err
		}
		if len(pages) == 0 || pages[len(pages)-1].Peer != p {
			pages = append(pages, OfflinePage{Peer: p})
		}
		pg := &pages[len(pages)-1]
		pg.Msgs = append(pg.Msgs, m)
		n++
	}
	return pages, it.Error()
}

// TakeOffline is Offline that also removes what it returns and marks those
// conversations read for uid, in the same durable batch (PROTOCOL §4.4
// type 0). done runs on the committer goroutine after the commit.
func (db *DB) TakeOffline(uid, peer uint64, limit int, done func([]OfflinePage, error)) error {
	var pages []OfflinePage
	return db.submit(op{
		applyFn: func(t *tx) error {
			var err error
			pages, err = t.takePrivate(uid, peer, limit)
			return err
		},
		doneFn: func(err error) { done(pages, err) },
	})
}

// takePrivate reads uid's private queues (all peers when peer is 0),
// then deletes what it read and marks those conversations read.
func (t *tx) takePrivate(uid, peer uint64, limit int) ([]OfflinePage, error) {
	pages, err := offlineRead(t.b, uid, peer, limit)
	if err != nil {
		return nil, err
	}
	contacts := make([]Contact, 0, len(pages))
	for _, pg := range pages {
		c, found, err := t.contact(uid, pg.Peer)
		if err != nil {
			return nil, err
		}
		if found {
			contacts = append(contacts, c)
		}
	}
	for _, pg := range pages {
		for _, m := range pg.Msgs {
			t.del(keyOffline(uid, pg.Peer, m.Seq))
		}
	}
	for i := range contacts {
		contacts[i].Unread = 0
		t.writeContact(uid, &contacts[i])
	}
	return pages, nil
}

// QueueOffline adds stored messages to uid's offline queue for peer: used
// when a push to a connection failed before it was written (PROTOCOL §4.3).
func (db *DB) QueueOffline(uid, peer uint64, seqs []uint64, done func(error)) error {
	return db.submit(op{
		applyFn: func(t *tx) error {
			for _, s := range seqs {
				t.set(keyOffline(uid, peer, s), nil)
			}
			return nil
		},
		doneFn: done,
	})
}

// Contact returns owner's record of peer, or ErrNotFound.
func (db *DB) Contact(owner, peer uint64) (Contact, error) {
	v, err := db.get(keyContact(owner, peer))
	if err != nil {
		return Contact{}, err
	}
	return decodeContact(peer, v)
}
