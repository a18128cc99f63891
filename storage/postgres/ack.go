package postgres

import (
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Receipt acks (PROTOCOL §7.2): an acknowledged message has reached its
// receiver, so its offline entry, if it has one, goes. Acks are not
// rate-limited, so they are gathered: an ack adds its conversation's
// bound to a set, and at most one operation waiting for the committer
// applies the whole set, one range delete of queue's primary key per
// conversation. Pending rows (pushes not yet settled) are left to their
// settling, as storage/pebble leaves its pending records. So an ack and a
// settling never lock the same rows: in a cluster they come from
// different gateways' transactions, which would otherwise deadlock (and
// stall a second) when they meet. The price: a push settled as lost on
// another gateway after an ack that covers it queues an acknowledged
// message again — a duplicate, never a loss.
//
// storage/pebble also keeps a hint of the conversations whose queue is
// known empty, so that most acks write nothing at all. A hint in one
// process cannot see the queue rows another node writes, so here every
// gathered conversation costs its delete (an index probe when empty).

// ackKey names one conversation of a user's.
type ackKey struct {
	uid, peer uint64
	group     bool
}

// ackQueue is the acks not yet applied. Safe for concurrent use.
type ackQueue struct {
	mu     sync.Mutex
	upTo   map[ackKey]uint64
	queued bool // an operation will apply upTo
}

// sqlAck removes a conversation's queue rows up to a seq.
const sqlAck = `DELETE FROM queue WHERE uid = $1 AND grp = $2 AND peer = $3 AND seq <= $4 AND NOT pending`

func queueAck(q *pgx.Batch, uid, peer uint64, group bool, upTo uint64) {
	if upTo != 0 {
		q.Queue(sqlAck, i64(uid), group, i64(peer), i64(upTo))
	}
}

// Ack removes uid's offline entries of a conversation with seq up to upTo
// (PROTOCOL §7.2): the private one with peer, or group peer when group is
// set. It never blocks; the removal is ordered before any operation
// submitted after it (a pull's QueuePending).
func (db *DB) Ack(uid, peer uint64, group bool, upTo uint64) error {
	if upTo == 0 {
		return nil
	}
	a := &db.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	k := ackKey{uid, peer, group}
	if a.upTo == nil {
		a.upTo = make(map[ackKey]uint64)
	}
	a.upTo[k] = max(a.upTo[k], upTo)
	if a.queued {
		return nil // the waiting operation takes this one too
	}
	var took map[ackKey]uint64
	err := db.submitNoWait(op{
		apply: func(b *batch) error {
			// Take what was gathered; a batch that runs again applies
			// what it took before, and what came since.
			a.mu.Lock()
			if took == nil {
				took, a.upTo = a.upTo, nil
			} else {
				for k, v := range a.upTo {
					took[k] = max(took[k], v)
				}
				a.upTo = nil
			}
			a.queued = false
			a.mu.Unlock()
			var q pgx.Batch
			for k, v := range took {
				queueAck(&q, k.uid, k.peer, k.group, v)
			}
			if q.Len() == 0 {
				return nil
			}
			return b.tx.SendBatch(b.ctx, &q).Close()
		},
		done: func(error) {},
	})
	if err != nil {
		delete(a.upTo, k)
		return err
	}
	a.queued = true
	return nil
}

// submitNoWait is submit for callers that must not fail for a full queue
// (an event loop reporting a written reply, an ack): their operations are
// small and few, so they are not bounded.
func (db *DB) submitNoWait(o op) error {
	q := &db.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return storage.ErrClosed
	}
	q.ops = append(q.ops, o)
	q.bytes += o.cost
	q.cond.Signal()
	return nil
}

// sqlLastSeq reads a conversation's last seq.
const sqlLastSeq = `SELECT last_seq FROM conversations WHERE conv_a = $1 AND conv_b = $2`

// LastSeq returns the last seq of a conversation (0: empty): the private
// one of uid with peer, or group peer when group is set. One row.
func (db *DB) LastSeq(uid, peer uint64, group bool) (uint64, error) {
	if db.closed.Load() {
		return 0, storage.ErrClosed
	}
	a, c := convOf(uid, peer)
	if group {
		a, c = 0, i64(peer)
	}
	ctx, cancel := readCtx()
	defer cancel()
	var n int64
	err := db.pool.QueryRow(ctx, sqlLastSeq, a, c).Scan(&n)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("postgres: last seq: %w", err)
	}
	return uint64(n), nil
}
