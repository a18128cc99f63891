package postgres

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/imgate/imgate/storage"
)

// Delivery (PROTOCOL §4.2, storage's package doc). A message stored for an
// online receiver gets its queue row at once, marked pending: pulls do not
// see it. Its push settles it: written deletes the row, lost makes it an
// ordinary queue entry. Both ride with the next batch (lazyWork). A row
// still pending pendingExpiry after it was written, whichever node wrote
// it and whether or not that node still runs, is made ordinary by the
// expiry sweep (expirePending), so a crash loses nothing acked. At Open,
// every row still pending is made ordinary at once (recoverPending): the
// pushes of a gateway that crashed are in the queues before its clients
// are back to pull them. A gateway sharing the database that was pushing
// at that moment may see a receiver get one of its messages twice (push
// and pull): at least once, never lost.

// queueKey names one queue row.
type queueKey struct {
	uid  int64
	grp  bool
	peer int64
	seq  int64
}

// Receiver states of a pushes.
const (
	recvPending uint32 = iota
	recvSettled
)

// pushes is storage.Pushes of one message: its receivers' queue rows.
type pushes struct {
	db     *DB
	keys   []queueKey
	states []atomic.Uint32
}

func newPushes(db *DB, keys []queueKey) *pushes {
	return &pushes{db: db, keys: keys, states: make([]atomic.Uint32, len(keys))}
}

// Settle settles receiver i (storage.Pushes). It never blocks.
func (p *pushes) Settle(i int, written bool) {
	if i < 0 || i >= len(p.keys) || !p.states[i].CompareAndSwap(recvPending, recvSettled) {
		return
	}
	q := &p.db.q
	q.mu.Lock()
	if q.lazy.empty() {
		q.lazyAt = p.db.now()
	}
	if written {
		q.lazy.written = append(q.lazy.written, p.keys[i])
	} else {
		q.lazy.lost = append(q.lazy.lost, p.keys[i])
	}
	q.mu.Unlock()
}

var _ storage.Pushes = (*pushes)(nil)

// apply writes the settled pushes: a written one's pending row goes, a
// lost one's becomes visible. A row the sweep already made visible stays:
// the receiver may get the message twice, never not at all.
func (l *lazyWork) apply(b *batch) error {
	if len(l.written) > 0 {
		uids, grps, peers, seqs := columns(l.written)
		if _, err := b.tx.Exec(b.ctx, `DELETE FROM queue q USING unnest($1::bigint[], $2::boolean[], $3::bigint[], $4::bigint[]) AS k(uid, grp, peer, seq)
			WHERE q.uid = k.uid AND q.grp = k.grp AND q.peer = k.peer AND q.seq = k.seq AND q.pending`, uids, grps, peers, seqs); err != nil {
			return err
		}
	}
	if len(l.lost) > 0 {
		uids, grps, peers, seqs := columns(l.lost)
		if _, err := b.tx.Exec(b.ctx, `UPDATE queue q SET pending = false FROM unnest($1::bigint[], $2::boolean[], $3::bigint[], $4::bigint[]) AS k(uid, grp, peer, seq)
			WHERE q.uid = k.uid AND q.grp = k.grp AND q.peer = k.peer AND q.seq = k.seq AND q.pending`, uids, grps, peers, seqs); err != nil {
			return err
		}
	}
	return nil
}

func columns(ks []queueKey) (uids []int64, grps []bool, peers, seqs []int64) {
	uids, grps = make([]int64, len(ks)), make([]bool, len(ks))
	peers, seqs = make([]int64, len(ks)), make([]int64, len(ks))
	for i, k := range ks {
		uids[i], grps[i], peers[i], seqs[i] = k.uid, k.grp, k.peer, k.seq
	}
	return
}

// expirePending makes the pushes pending for pendingExpiry ordinary queue
// entries, at most sweepBatchRows per batch (the next sweep takes more).
func (db *DB) expirePending(b *batch) error {
	cutoff := db.now().Add(-pendingExpiry).UnixMilli()
	_, err := b.tx.Exec(b.ctx, `UPDATE queue SET pending = false WHERE (uid, grp, peer, seq) IN (
		SELECT uid, grp, peer, seq FROM queue WHERE pending AND created <= $1 LIMIT $2)`, cutoff, sweepBatchRows)
	return err
}

// QueuePending makes every push to uid still pending an ordinary queue
// entry, and commits that with the settled pushes waiting for a batch.
func (db *DB) QueuePending(uid uint64) error {
	db.q.mu.Lock()
	db.q.wake = true
	db.q.mu.Unlock()
	return db.submitWait(opOverhead, func(b *batch) error {
		_, err := b.tx.Exec(b.ctx, `UPDATE queue SET pending = false WHERE uid = $1 AND pending`, int64(uid))
		return err
	})
}

// recoverPending makes every pending row an ordinary queue entry: what a
// crash left unsettled (Open).
func (db *DB) recoverPending(ctx context.Context) error {
	tag, err := db.pool.Exec(ctx, `UPDATE queue SET pending = false WHERE pending`)
	if err != nil {
		return fmt.Errorf("postgres: queueing pushes left pending: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		db.log.Info("queued pushes left pending by the previous run", "pushes", n)
	}
	return nil
}
