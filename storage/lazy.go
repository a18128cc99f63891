package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Delivery bookkeeping (PROTOCOL §4.3: a message acked to its sender
// reaches every receiver at least once).
//
// A private message is put in its receiver's offline queue (q|) in its own
// synced commit, whether the receiver is online or not. When a connection
// of the receiver has written the push to its socket, Delivered removes the
// entry, lazily: removals ride along with a later batch. So at any moment,
// a kill -9 included, an acked message is either queued or was written;
// the price is a key and a removal per online message, and a message
// written just before a crash may be delivered again from the queue.
//
// A group message to members that are online when it is stored gets one
// pending record instead of one queue entry per member:
//
//	P|gid(8B)|seq(8B) -> the online members, as a uvarint count and uvarint uid deltas
//
// When every push of it has been written or dropped, GroupSettled queues it
// for the members no connection wrote it to and removes the record. A
// record found at Open (a crash came first) is settled the same way for
// all its members (recoverPending).
const prefixPending = "P|"

func keyPending(gid, seq uint64) []byte { return key2(prefixPending, gid, seq) }

// offlineKey names one private queue entry: q|uid|peer|seq.
type offlineKey struct{ uid, peer, seq uint64 }

// groupSettle is a group push whose deliveries are all known.
type groupSettle struct {
	gid, seq uint64
	lost     []uint64 // members no connection wrote it to
}

// lazyWork is deferred work waiting for the committer.
type lazyWork struct {
	delivered []offlineKey
	settled   []groupSettle
}

func (l *lazyWork) empty() bool { return len(l.delivered) == 0 && len(l.settled) == 0 }

// moveTo appends l's work to dst and empties l, keeping its arrays.
func (l *lazyWork) moveTo(dst *lazyWork) {
	dst.delivered = append(dst.delivered, l.delivered...)
	dst.settled = append(dst.settled, l.settled...)
	clear(l.settled)
	l.delivered, l.settled = l.delivered[:0], l.settled[:0]
	if cap(l.delivered) > 1<<16 {
		l.delivered = nil
	}
}

func (l *lazyWork) reset() {
	clear(l.settled)
	l.delivered, l.settled = l.delivered[:0], l.settled[:0]
	if cap(l.delivered) > 1<<16 {
		l.delivered = nil
	}
}

// Delivered reports that a connection of uid wrote the push of message seq
// from peer to its socket: the queue entry the message got when it was
// stored can go. It never blocks; the removal is applied with a later
// batch. After Close it does nothing (the entry stays, and is delivered
// again).
func (db *DB) Delivered(uid, peer, seq uint64) {
	db.deferWork(func(l *lazyWork) { l.delivered = append(l.delivered, offlineKey{uid, peer, seq}) })
}

// GroupSettled reports that every push of group message seq of gid to the
// members online when it was stored is written or dropped; lost are the
// members none of whose connections wrote it (nil: none). They get it in
// their group queue, and the pending record goes. It never blocks; lost is
// owned by the DB from now on.
func (db *DB) GroupSettled(gid, seq uint64, lost []uint64) {
	db.deferWork(func(l *lazyWork) { l.settled = append(l.settled, groupSettle{gid, seq, lost}) })
}

func (db *DB) deferWork(add func(*lazyWork)) {
	q := &db.cq
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	add(&q.lazy)
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.work.Signal()
	}
}

// applyLazy writes deferred work into the batch. It only writes what it
// can: an entry whose group or message is gone is skipped.
func (t *tx) applyLazy(l *lazyWork) {
	for _, k := range l.delivered {
		// A single delete: the entry was set once, by the message's own
		// commit, and usually both still sit in the memtable, where the
		// pair cancels out instead of leaving a tombstone to compact
		// through every level. Were the entry set twice (it is not), the
		// worst a single delete can do is bring an older copy back: a
		// duplicate delivery, never a loss. A pull's or a recall's
		// Delete of the same key meets it harmlessly (Pebble turns a
		// single delete that meets a delete into a delete).
		t.key = appendKeyOffline(t.key[:0], k.uid, k.peer, k.seq)
		_ = t.b.SingleDelete(t.key, nil)
		t.touched++
	}
	for _, s := range l.settled {
		if err := t.settleGroup(s.gid, s.seq, s.lost); err != nil {
			// The pending record stays: the next Open settles it.
			t.db.log.Error("group delivery settle failed", "gid", s.gid, "seq", s.seq, "err", err)
		}
	}
}

// settleGroup queues group message seq for the members in lost that are
// still members, unless it was recalled, and removes its pending record.
func (t *tx) settleGroup(gid, seq uint64, lost []uint64) error {
	if len(lost) > 0 {
		rec, err := t.get(keyHistory(groupConv(gid), seq))
		if errors.Is(err, ErrNotFound) {
			lost = nil
		} else if err != nil {
			return err
		} else if len(rec) > 2 && rec[2]&flagRecalled != 0 {
			lost = nil // recalled meanwhile: nothing to deliver
		}
	}
	for _, uid := range lost {
		if _, err := t.get(key2(prefixMember, gid, uid)); errors.Is(err, ErrNotFound) {
			continue // left the group meanwhile
		} else if err != nil {
			return err
		}
		t.set(keyGroupQueue(uid, gid, seq), nil)
	}
	// Set once, removed once: a single delete, which usually cancels the
	// record in the memtable (see applyLazy).
	_ = t.b.SingleDelete(keyPending(gid, seq), nil)
	t.touched++
	return nil
}

func encodeUIDs(dst []byte, uids []uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(uids)))
	var prev uint64
	for _, u := range uids {
		dst = binary.AppendUvarint(dst, u-prev)
		prev = u
	}
	return dst
}

func decodeUIDs(b []byte) ([]uint64, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, errCorrupt
	}
	b = b[w:]
	out := make([]uint64, 0, n)
	var prev uint64
	for range n {
		d, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, errCorrupt
		}
		prev += d
		out = append(out, prev)
		b = b[w:]
	}
	return out, nil
}

// recoverPending settles, at Open, every group push whose outcome a crash
// kept from being recorded: all its members get it in their queue (some
// may have read it already; clients drop duplicates by id).
func (db *DB) recoverPending() error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixPending), UpperBound: []byte("P}")})
	if err != nil {
		return err
	}
	defer it.Close()
	t := &tx{db: db, b: db.pdb.NewIndexedBatch()}
	defer func() { _ = t.b.Close() }()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 2+16 {
			return fmt.Errorf("storage: pending key %q: %w", k, errCorrupt)
		}
		uids, err := decodeUIDs(it.Value())
		if err != nil {
			return err
		}
		if err := t.settleGroup(binary.BigEndian.Uint64(k[2:]), binary.BigEndian.Uint64(k[10:]), uids); err != nil {
			return err
		}
		n++
	}
	if err := it.Error(); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	db.log.Info("queued group messages whose delivery a crash interrupted", "messages", n)
	// Sync: the records are gone from here on, the queue entries must stay.
	return t.b.Commit(pebble.Sync)
}
