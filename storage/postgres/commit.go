package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/imgate/imgate/storage"
)

// Group commit. Every write is an operation queued to one committer
// goroutine, which takes everything queued (up to maxBatchOps), runs the
// operations one after another in one transaction and commits once: the
// cost of a synchronous commit (the server's WAL flush) is shared by the
// batch. Each operation's done runs after the COMMIT returned.
//
// An operation checks before it writes: an error it returns with the
// transaction still usable (a domain error: storage.ErrNotFound…) fails
// that operation alone, and it must have written nothing. An error that
// aborted the transaction (a constraint, a lost connection) rolls the
// batch back; the batch then runs again one operation per transaction, so
// the faulty one fails alone. Serialization failures and deadlocks
// (SQLSTATE 40001, 40P01: other nodes writing the same rows) roll back and
// retry the batch.

// Bounds of the commit queue.
const (
	maxBatchOps    = 512
	maxQueueBytes  = 64 << 20 // ErrOverloaded past this
	opOverhead     = 256      // bytes an operation costs besides its payload
	txTimeout      = 30 * time.Second
	maxRetries     = 10
	lazyDelay      = 20 * time.Millisecond // settled pushes wait this long for a batch to ride with
	sweepEvery     = 250 * time.Millisecond
	pendingExpiry  = 2 * time.Second // PROTOCOL §4.2: an unsettled push is queued after this
	sweepBatchRows = 10000
)

// batch is the transaction the committer runs operations in.
type batch struct {
	ctx context.Context
	tx  pgx.Tx
	db  *DB
}

// op is one queued write.
type op struct {
	apply func(b *batch) error // in the transaction; writes nothing when it fails
	done  func(err error)      // after the commit, on the committer; must not block
	cost  int
}

type commitQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	ops    []op
	bytes  int
	closed bool
	lazy   lazyWork // settled pushes waiting for a batch
	lazyAt time.Time
	wake   bool // a caller waits for the lazy work (QueuePending)
}

func (q *commitQueue) init() { q.cond = sync.NewCond(&q.mu) }

// submit queues o. It fails with ErrClosed after Close and ErrOverloaded
// when the queue holds maxQueueBytes.
func (db *DB) submit(o op) error {
	if o.cost <= 0 {
		o.cost = opOverhead
	}
	q := &db.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return storage.ErrClosed
	}
	if q.bytes+o.cost > maxQueueBytes && len(q.ops) > 0 {
		return storage.ErrOverloaded
	}
	q.ops = append(q.ops, o)
	q.bytes += o.cost
	q.cond.Signal()
	return nil
}

// submitWait queues apply and waits for its commit.
func (db *DB) submitWait(cost int, apply func(b *batch) error) error {
	ch := make(chan error, 1)
	if err := db.submit(op{apply: apply, done: func(err error) { ch <- err }, cost: cost}); err != nil {
		return err
	}
	return <-ch
}

// commitLoop is the committer.
func (db *DB) commitLoop() {
	defer db.wg.Done()
	q := &db.q
	ticker := time.NewTicker(lazyDelay)
	defer ticker.Stop()
	go func() {
		// The ticker wakes the committer for lazy work and the sweep.
		for {
			select {
			case <-db.stop:
				return
			case <-ticker.C:
				q.mu.Lock()
				q.cond.Signal()
				q.mu.Unlock()
			}
		}
	}()
	var ops []op
	var lazy lazyWork
	lastSweep := time.Time{}
	for {
		q.mu.Lock()
		for len(q.ops) == 0 && !q.closed && !q.lazyDue() && time.Since(lastSweep) < sweepEvery {
			q.cond.Wait()
		}
		closed := q.closed && len(q.ops) == 0
		n := min(len(q.ops), maxBatchOps)
		ops = append(ops[:0], q.ops[:n]...)
		for _, o := range ops {
			q.bytes -= o.cost
		}
		q.ops = append(q.ops[:0], q.ops[n:]...)
		lazy.take(&q.lazy)
		q.wake = false
		q.mu.Unlock()

		sweep := time.Since(lastSweep) >= sweepEvery
		if sweep {
			lastSweep = time.Now()
		}
		if len(ops) > 0 || !lazy.empty() || sweep {
			db.commit(ops, &lazy, sweep)
		}
		clear(ops)
		if closed {
			return
		}
	}
}

// lazyDue reports whether lazy work has waited long enough. q.mu is held.
func (q *commitQueue) lazyDue() bool {
	return !q.lazy.empty() && (q.wake || time.Since(q.lazyAt) >= lazyDelay)
}

// commit runs ops, the lazy work and, when sweep is set, the expiry of
// pending pushes, in one transaction; on an aborting error it falls back
// to one transaction per operation.
func (db *DB) commit(ops []op, lazy *lazyWork, sweep bool) {
	errs := make([]error, len(ops))
	began := time.Now()
	err := db.runBatch(func(b *batch) error {
		if err := lazy.apply(b); err != nil {
			return err
		}
		if sweep {
			if err := db.expirePending(b); err != nil {
				return err
			}
		}
		for i, o := range ops {
			errs[i] = o.apply(b)
			if errs[i] != nil && aborted(b) {
				return errs[i]
			}
		}
		return nil
	})
	if err == nil {
		if len(ops) > 0 || !lazy.empty() {
			db.cstats.batches.Add(1) // a sweep that found nothing is no commit of ours
		}
		db.cstats.ops.Add(uint64(len(ops)))
		if db.commits != nil && len(ops) > 0 {
			db.commits.ObserveCommit(len(ops), time.Since(began))
		}
		lazy.reset()
		for i, o := range ops {
			o.done(errs[i])
		}
		return
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		// The server did not answer (down, unreachable, too slow) or the
		// store is closing: running the operations one by one would wait
		// for it once per operation. They fail now; nothing was acked.
		// The settled pushes stay for the next batch.
		if len(ops) > 0 {
			db.log.Error("commit failed: the server did not answer", "ops", len(ops), "err", err)
		} else {
			db.log.Debug("sweep failed: the server did not answer", "err", err)
		}
		for _, o := range ops {
			o.done(err)
		}
		return
	}
	db.log.Warn("commit failed; running its operations one by one", "ops", len(ops), "err", err)
	if !lazy.empty() {
		if err := db.runBatch(lazy.apply); err != nil {
			db.log.Error("settling pushes failed: the expiry sweep queues them", "err", err)
		} else {
			db.cstats.batches.Add(1)
		}
		lazy.reset()
	}
	for _, o := range ops {
		var opErr error
		err := db.runBatch(func(b *batch) error {
			opErr = o.apply(b)
			if opErr != nil && aborted(b) {
				return opErr
			}
			return nil
		})
		if err != nil {
			o.done(err)
			continue
		}
		db.cstats.ops.Add(1)
		db.cstats.batches.Add(1)
		o.done(opErr)
	}
}

// runBatch runs fn in a transaction and commits it, retrying on
// serialization failures and deadlocks.
func (db *DB) runBatch(fn func(b *batch) error) error {
	for attempt := 0; ; attempt++ {
		err := db.runOnce(fn)
		if err == nil || !retryable(err) || attempt == maxRetries {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
}

func (db *DB) runOnce(fn func(b *batch) error) error {
	if err := db.ctx.Err(); err != nil {
		return storage.ErrClosed
	}
	ctx, cancel := context.WithTimeout(db.ctx, txTimeout)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return err
	}
	b := &batch{ctx: ctx, tx: tx, db: db}
	if err := fn(b); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

// aborted reports whether b's transaction can no longer run statements.
func aborted(b *batch) bool {
	return b.tx.Conn().PgConn().TxStatus() != 'T'
}

// retryable reports a conflict with a concurrent transaction.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// lazyWork is settled pushes waiting for a batch (delivery.go).
type lazyWork struct {
	written []queueKey // delete: the push was written
	lost    []queueKey // make visible to pulls: the push was lost
}

func (l *lazyWork) empty() bool { return len(l.written) == 0 && len(l.lost) == 0 }

func (l *lazyWork) reset() {
	l.written, l.lost = l.written[:0], l.lost[:0]
}

// take moves src's work to l.
func (l *lazyWork) take(src *lazyWork) {
	l.written = append(l.written, src.written...)
	l.lost = append(l.lost, src.lost...)
	src.reset()
}
