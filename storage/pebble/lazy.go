package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Delivery bookkeeping (PROTOCOL §4.3: a message acked to its sender
// reaches every receiver at least once).
//
// A private message to a receiver with no live connection is put in its
// offline queue (q|) in its own commit. A message acked as pushed must say
// in its commit where it stands until a push is written, and rather than a
// queue entry per message and receiver, the commit writes pending records:
//
//	j|id(8B)          -> a batch's private messages acked as pushed: (to, from, seq) uvarints each
//	P|gid(8B)|seq(8B) -> a group message's members online when stored: a uvarint count, uvarint uid deltas
//
// Each receiver of such a record is settled on its own (Settle): a push a
// connection wrote needs nothing more; one no connection wrote is queued
// at once (lazily, with a later batch). When every receiver of a record is
// settled, the record goes. A receiver whose push stays unsettled for
// pendingExpiry (a connection that holds it unsent) is queued then, as if
// lost, and the record goes: no receiver waits on another's slow
// connection, a record's life is bounded, and a message that does reach
// the slow connection later is delivered twice (clients drop duplicates by
// id). A record found at Open (a crash came first) queues every receiver
// it names. The cost is one record per batch and per group message, set
// once and removed once with a single delete, which usually cancels out in
// the memtable.
const (
	prefixPending = "P|"
	prefixJournal = "j|"
)

// pendingExpiry is how long a receiver's push may stay unsettled before it
// is queued anyway.
const pendingExpiry = 2 * time.Second

func keyJournal(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 10), prefixJournal...), id)
}

func keyPending(gid, seq uint64) []byte { return key2(prefixPending, gid, seq) }

// offlineKey names one private queue entry: q|uid|peer|seq.
type offlineKey struct{ uid, peer, seq uint64 }

// Receiver states of a pending record.
const (
	recvPending uint32 = iota
	recvWritten
	recvQueued // lost, or expired: queued
)

// Record states.
const (
	recLive    int32 = iota
	recDone          // every receiver settled; removal deferred
	recExpired       // the committer queued the unsettled and removed it
)

// pending is one record and the settling of its receivers, in memory from
// the commit that wrote it until it is gone. The committer fills it while
// it builds the batch; Settle calls from any goroutine count it down.
type pending struct {
	db      *DB
	key     []byte
	group   bool
	gid     uint64       // group: the group
	seq     uint64       // group: the message
	msgs    []offlineKey // private: uid = the receiver, peer = the sender
	members []uint64     // group: the receivers
	states  []atomic.Uint32
	left    atomic.Int32
	state   atomic.Int32
	created int64 // unix nanos of the commit
}

func (p *pending) receivers() int {
	if p.group {
		return len(p.members)
	}
	return len(p.msgs)
}

// delivery names one receiver of a pending record: its push settles it
// (storage.Delivery wraps it as the record's Settle and the index).
type delivery struct {
	p *pending
	i int32
}

// Settle settles receiver i of p (storage.Pushes).
func (p *pending) Settle(i int, written bool) { p.db.settle(delivery{p, int32(i)}, written) }

func (db *DB) settle(d delivery, written bool) {
	p := d.p
	if p == nil {
		return
	}
	to := recvWritten
	if !written {
		to = recvQueued
	}
	if !p.states[d.i].CompareAndSwap(recvPending, to) {
		return // settled already, or expired and queued
	}
	queue := !written
	if queue {
		db.mayQueue(d) // before an ack can read the hint: the entry comes
	}
	done := p.left.Add(-1) == 0 && p.state.CompareAndSwap(recLive, recDone)
	if queue || done {
		db.deferWork(func(l *lazyWork) {
			if queue {
				l.queue = append(l.queue, d)
			}
			if done {
				l.remove = append(l.remove, p.key)
			}
		})
	}
}

// lazyWork is deferred work waiting for the committer.
type lazyWork struct {
	queue  []delivery // receivers to queue
	remove [][]byte   // records to remove
}

func (l *lazyWork) empty() bool { return len(l.queue) == 0 && len(l.remove) == 0 }

// moveTo appends l's work to dst and empties l.
func (l *lazyWork) moveTo(dst *lazyWork) {
	dst.queue = append(dst.queue, l.queue...)
	dst.remove = append(dst.remove, l.remove...)
	l.reset()
}

func (l *lazyWork) reset() {
	clear(l.queue)
	clear(l.remove)
	l.queue, l.remove = l.queue[:0], l.remove[:0]
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
	db.wakeDue(func(q *commitQueue) { q.lazyArmed, q.lazyDue = false, true })
}

// track keeps the records a batch committed, for expiry. It runs on the
// committer.
func (db *DB) track(ps []*pending, now int64) {
	for _, p := range ps {
		p.created = now
		if p.state.Load() == recLive {
			db.live = append(db.live, p)
		}
	}
}

// expire queues the receivers of records unsettled for pendingExpiry and
// removes the records, into lz; it also forgets records done with. It
// runs on the committer, before it builds a batch. It returns how long
// until the oldest live record expires (0: none).
func (db *DB) expire(now int64, lz *lazyWork) time.Duration {
	n := 0
	for n < len(db.live) {
		p := db.live[n]
		if p.state.Load() != recLive {
			n++
			continue
		}
		wait := time.Duration(p.created + int64(pendingExpiry) - now)
		if wait > 0 {
			db.live = append(db.live[:0], db.live[n:]...)
			return wait
		}
		n++
		if !p.state.CompareAndSwap(recLive, recExpired) {
			continue // settled meanwhile
		}
		for i := range p.states {
			if p.states[i].CompareAndSwap(recvPending, recvQueued) {
				d := delivery{p, int32(i)}
				db.mayQueue(d)
				lz.queue = append(lz.queue, d)
			}
		}
		lz.remove = append(lz.remove, p.key)
	}
	clear(db.live)
	db.live = db.live[:0]
	return 0
}

// applyLazy writes deferred work into the batch. It only writes what it
// can: a receiver whose message, or group membership, is gone is skipped.
func (t *tx) applyLazy(l *lazyWork) {
	var keep map[string]bool // records whose receiver could not be queued
	for _, d := range l.queue {
		if err := t.queueDelivery(d); err != nil {
			// The record stays until the next Open, which queues it.
			t.db.log.Error("queueing an undelivered message failed", "record", fmt.Sprintf("%x", d.p.key), "err", err)
			if keep == nil {
				keep = make(map[string]bool)
			}
			keep[string(d.p.key)] = true
		}
	}
	for _, k := range l.remove {
		if keep[string(k)] {
			continue
		}
		// Set once, removed once: a single delete, which usually cancels
		// the record in the memtable instead of leaving a tombstone to
		// compact through every level.
		_ = t.b.SingleDelete(k, nil)
		t.touched++
	}
}

// queueDelivery queues one receiver of a record.
func (t *tx) queueDelivery(d delivery) error {
	p := d.p
	if p.group {
		return t.queueGroup(p.gid, p.seq, p.members[d.i])
	}
	return t.queuePrivate(p.msgs[d.i])
}

// queuePrivate queues a private message for its receiver unless it was
// recalled or is gone.
func (t *tx) queuePrivate(k offlineKey) error {
	rec, err := t.get(keyHistory(privateConv(k.uid, k.peer), k.seq))
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if recalled(rec) {
		return nil // recalled meanwhile: nothing to deliver
	}
	t.key = appendKeyOffline(t.key[:0], k.uid, k.peer, k.seq)
	t.set(t.key, nil)
	t.queued(k.uid, k.peer, false)
	return nil
}

// recalled reports whether history value v is a recall marker. A recall
// writes its marker into history (recall.go), so a reference to the log
// never names a recalled message.
func recalled(v []byte) bool {
	return len(v) > 2 && v[0] == messageRecordV1 && v[2]&flagRecalled != 0
}

// queueGroup queues group message seq of gid for uid, unless it was
// recalled or uid left the group.
func (t *tx) queueGroup(gid, seq, uid uint64) error {
	rec, err := t.get(keyHistory(groupConv(gid), seq))
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if recalled(rec) {
		return nil
	}
	if _, err := t.get(key2(prefixMember, gid, uid)); errors.Is(err, ErrNotFound) {
		return nil // left the group meanwhile
	} else if err != nil {
		return err
	}
	t.set(keyGroupQueue(uid, gid, seq), nil)
	t.queued(uid, gid, true)
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

// recoverPending queues, at Open, every receiver of the records a crash
// left (some may have read their message already; clients drop
// duplicates by id), and removes the records.
func (db *DB) recoverPending() error {
	t := &tx{db: db, b: db.pdb.NewIndexedBatch(), lb: db.ldb.NewIndexedBatch()}
	defer func() { _ = t.b.Close(); _ = t.lb.Close() }()
	n := 0
	err := db.scanKeys(prefixJournal, "j}", func(k, v []byte) error {
		if len(k) != 2+8 {
			return fmt.Errorf("storage: journal key %q: %w", k, errCorrupt)
		}
		msgs, err := decodeJournal(v)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := t.queuePrivate(m); err != nil {
				return err
			}
		}
		n += len(msgs)
		t.del(append([]byte(nil), k...))
		return nil
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
		gid, seq := binary.BigEndian.Uint64(k[2:]), binary.BigEndian.Uint64(k[10:])
		for _, uid := range uids {
			if err := t.queueGroup(gid, seq, uid); err != nil {
				return err
			}
		}
		n += len(uids)
		t.del(append([]byte(nil), k...))
		return nil
	})
	if err != nil || n == 0 {
		return err
	}
	db.log.Info("queued messages whose delivery a crash interrupted", "deliveries", n)
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

// receiver is the uid the i-th delivery of p goes to.
func (p *pending) receiver(i int) uint64 {
	if p.group {
		return p.members[i]
	}
	return p.msgs[i].uid
}

// QueuePending queues every delivery to uid still awaiting its push's
// outcome, as if lost, and commits that with whatever deferred work waits
// (a push no connection wrote, noted but not yet committed): once it
// returns, uid's offline queues hold everything acked to uid that no
// connection of uid is known to have written (PROTOCOL §4.4: a pull finds
// them). A push of one of them written later is a duplicate. It blocks
// until the commit.
func (db *DB) QueuePending(uid uint64) error {
	var took []delivery
	ch := make(chan error, 1)
	err := db.submit(op{
		applyFn: func(t *tx) error {
			took = took[:0]
			for _, p := range t.db.live {
				if p.state.Load() != recLive {
					continue
				}
				for i := range p.states {
					if p.receiver(i) != uid || p.states[i].Load() != recvPending {
						continue
					}
					d := delivery{p, int32(i)}
					if err := t.queueDelivery(d); err != nil {
						return err
					}
					took = append(took, d)
				}
			}
			return nil
		},
		doneFn: func(err error) {
			if err == nil {
				// Written above; now settled like a lost push, so the
				// record can go once the rest is settled.
				for _, d := range took {
					db.settleQueued(d)
				}
			}
			ch <- err
		},
	}, opOverhead)
	if err != nil {
		return err
	}
	return <-ch
}

// settleQueued settles d as queued when it is still pending, the queue
// entry being written already.
func (db *DB) settleQueued(d delivery) {
	p := d.p
	if !p.states[d.i].CompareAndSwap(recvPending, recvQueued) {
		return
	}
	if p.left.Add(-1) == 0 && p.state.CompareAndSwap(recLive, recDone) {
		db.deferWork(func(l *lazyWork) { l.remove = append(l.remove, p.key) })
	}
}

// mayQueue clears the empty-queue hint (ack.go) of d's conversation as
// soon as d is to be queued, before the queue entry is written: an ack in
// between must not take the queue for empty.
func (db *DB) mayQueue(d delivery) {
	p := d.p
	if p.group {
		db.hint.set(hintKey(p.members[d.i], p.gid, true), false)
		return
	}
	k := p.msgs[d.i]
	db.hint.set(hintKey(k.uid, k.peer, false), false)
}
