package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Delivery bookkeeping (PROTOCOL §4.3: a message acked to its sender
// reaches every receiver at least once).
//
// A private message to a receiver with no live connection is put in its
// offline queue (q|) in its own commit. One to a receiver online at the
// time is acked as pushed, so its commit must say where it stands until a
// push is written; rather than a queue entry per message, each batch writes
// one journal record of the online deliveries it acks:
//
//	j|id(8B) -> (to, from, seq) uvarints per message
//
// A push a connection wrote settles its message with nothing to write; one
// no connection wrote is queued. Once every delivery of a batch is
// settled, the queue entries of the lost ones and the removal of the
// record are written together, lazily (Settle). A record found at Open (a
// crash came first) queues all its messages (recoverPending): some may
// have been read already, and clients drop duplicates by id. The cost is a
// record per batch, not two keys per message.
//
// A group message to members that are online when it is stored gets one
// pending record instead of one queue entry per member:
//
//	P|gid(8B)|seq(8B) -> the online members, as a uvarint count and uvarint uid deltas
//
// When every push of it has been written or dropped, GroupSettled queues it
// for the members no connection wrote it to and removes the record. A
// record found at Open is settled the same way for all its members.
const (
	prefixPending = "P|"
	prefixJournal = "j|"
)

func keyJournal(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 10), prefixJournal...), id)
}

// journal is one batch's online deliveries, in memory until all are
// settled. The committer fills it while it builds the batch; Settle calls
// from any goroutine count it down after the commit.
type journal struct {
	db   *DB
	id   uint64
	msgs []offlineKey // uid = the receiver, peer = the sender
	left atomic.Int32
	mu   sync.Mutex
	lost []offlineKey
}

// Delivery names one message of a batch's journal: a push of it settles
// it with Settle. The zero Delivery settles nothing.
type Delivery struct {
	j *journal
	i int32
}

// Settle reports the outcome of a private message's push: written when a
// connection of the receiver wrote it to its socket. A message no
// connection wrote is queued for its receiver. It never blocks; the writes
// ride along with a later batch. Each Delivery is settled once.
func (db *DB) Settle(d Delivery, written bool) {
	j := d.j
	if j == nil {
		return
	}
	if !written {
		j.mu.Lock()
		j.lost = append(j.lost, j.msgs[d.i])
		j.mu.Unlock()
	}
	if j.left.Add(-1) != 0 {
		return
	}
	j.mu.Lock()
	lost := j.lost
	j.mu.Unlock()
	db.deferWork(func(l *lazyWork) { l.journals = append(l.journals, journalSettle{j.id, lost}) })
}

// journalSettle is a batch whose deliveries are all settled.
type journalSettle struct {
	id   uint64
	lost []offlineKey
}

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
	journals []journalSettle
	settled  []groupSettle
}

func (l *lazyWork) empty() bool { return len(l.journals) == 0 && len(l.settled) == 0 }

// moveTo appends l's work to dst and empties l.
func (l *lazyWork) moveTo(dst *lazyWork) {
	dst.journals = append(dst.journals, l.journals...)
	dst.settled = append(dst.settled, l.settled...)
	l.reset()
}

func (l *lazyWork) reset() {
	clear(l.journals)
	clear(l.settled)
	l.journals, l.settled = l.journals[:0], l.settled[:0]
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
	// Deferred work rides along with the next batch of operations; a
	// committer with nothing else to do takes it after lazyDelay (next).
	arm := q.idle && !q.lazyArmed
	q.lazyArmed = q.lazyArmed || arm
	q.mu.Unlock()
	if arm {
		time.AfterFunc(lazyDelay, db.wakeForLazy)
	}
}

// lazyDelay is how long deferred work waits for a batch of operations to
// ride along with before it is committed on its own.
const lazyDelay = 20 * time.Millisecond

// wakeForLazy makes the deferred work due and wakes an idle committer.
func (db *DB) wakeForLazy() {
	q := &db.cq
	q.mu.Lock()
	q.lazyArmed, q.lazyDue = false, true
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
	for _, j := range l.journals {
		if err := t.settleJournal(j.id, j.lost); err != nil {
			// The record stays: the next Open queues its messages.
			t.db.log.Error("delivery settle failed", "journal", j.id, "err", err)
		}
	}
	for _, s := range l.settled {
		if err := t.settleGroup(s.gid, s.seq, s.lost); err != nil {
			// The pending record stays: the next Open settles it.
			t.db.log.Error("group delivery settle failed", "gid", s.gid, "seq", s.seq, "err", err)
		}
	}
}

// settleJournal queues the lost messages of a batch's journal, unless
// recalled meanwhile, and removes the record.
func (t *tx) settleJournal(id uint64, lost []offlineKey) error {
	for _, k := range lost {
		rec, err := t.get(keyHistory(privateConv(k.uid, k.peer), k.seq))
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if len(rec) > 2 && rec[2]&flagRecalled != 0 {
			continue // recalled meanwhile: nothing to deliver
		}
		t.key = appendKeyOffline(t.key[:0], k.uid, k.peer, k.seq)
		t.set(t.key, nil)
	}
	// Set once, removed once: a single delete, which usually cancels the
	// record in the memtable instead of leaving a tombstone to compact
	// through every level.
	_ = t.b.SingleDelete(keyJournal(id), nil)
	t.touched++
	return nil
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

// recoverPending settles, at Open, every delivery whose outcome a crash
// kept from being recorded: each message of a journal record is queued
// for its receiver, and each group push for all the members it lists
// (some may have read it already; clients drop duplicates by id).
func (db *DB) recoverPending() error {
	t := &tx{db: db, b: db.pdb.NewIndexedBatch()}
	defer func() { _ = t.b.Close() }()
	n := 0
	err := db.scanKeys(prefixJournal, "j}", func(k, v []byte) error {
		if len(k) != 2+8 {
			return fmt.Errorf("storage: journal key %q: %w", k, errCorrupt)
		}
		msgs, err := decodeJournal(v)
		if err != nil {
			return err
		}
		n += len(msgs)
		return t.settleJournal(binary.BigEndian.Uint64(k[2:]), msgs)
	})
	if err != nil {
		return err
	}
	err = db.scanKeys(prefixPending, "P}", func(k, v []byte) error {
		if len(k) != 2+16 {
			return fmt.Errorf("storage: pending key %q: %w", k, errCorrupt)
		}
		uids, err := decodeUIDs(v)
		if err != nil {
			return err
		}
		n++
		return t.settleGroup(binary.BigEndian.Uint64(k[2:]), binary.BigEndian.Uint64(k[10:]), uids)
	})
	if err != nil || n == 0 {
		return err
	}
	db.log.Info("queued messages whose delivery a crash interrupted", "messages", n)
	// Sync: the records are gone from here on, the queue entries must stay.
	return t.b.Commit(pebble.Sync)
}

// scanKeys calls fn with every key and value in [lower, upper) of the DB.
func (db *DB) scanKeys(lower, upper string, fn func(k, v []byte) error) error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(lower), UpperBound: []byte(upper)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

func encodeJournal(dst []byte, msgs []offlineKey) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	for _, m := range msgs {
		dst = binary.AppendUvarint(dst, m.uid)
		dst = binary.AppendUvarint(dst, m.peer)
		dst = binary.AppendUvarint(dst, m.seq)
	}
	return dst
}

func decodeJournal(b []byte) ([]offlineKey, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, errCorrupt
	}
	b = b[w:]
	out := make([]offlineKey, 0, n)
	for range n {
		var f [3]uint64
		for i := range f {
			v, w := binary.Uvarint(b)
			if w <= 0 {
				return nil, errCorrupt
			}
			f[i], b = v, b[w:]
		}
		out = append(out, offlineKey{f[0], f[1], f[2]})
	}
	return out, nil
}
