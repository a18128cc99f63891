package pebble

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The committer is the one goroutine that writes conversations, queues and
// contacts. Callers submit operations; it gathers every operation waiting
// into one indexed batch, commits it with the WAL synced (one fsync for
// all of them: group commit) and then reports to each operation. Running
// every read-modify-write on one goroutine makes sequence numbers gap-free
// and counters exact without locks, and commit order is submit order.
//
// A batch is atomic per operation: an operation whose apply fails after it
// wrote something is taken out and the batch is rebuilt from the others
// (tx.rebuild), so the failed one leaves nothing behind.
//
// Besides operations, the committer applies deferred work that nobody
// waits for (lazy.go): the removal of queue entries whose push was written
// and the settling of group pushes. It rides along with the next batch, or
// commits on its own without a sync when there is nothing else to do.

const (
	// commitQueueBytes bounds the bytes of operations waiting for the
	// committer (a message costs its content and extras plus
	// opOverhead). Past it, submit waits for room: its callers are
	// workers, whose own queues then fill and answer 10028.
	commitQueueBytes = 64 << 20
	// commitQueueOps bounds the number of waiting operations, for the
	// many small ones.
	commitQueueOps = 1 << 16
	// opOverhead is what an operation costs the queue beyond its payload.
	opOverhead = 256
	// maxGroup bounds one batch, so a burst cannot delay its first acks
	// behind an unbounded write.
	maxGroup = 4096
)

// tx is the committer's view of the batch being built.
type tx struct {
	db *DB
	b  *pebble.Batch // indexed: reads see the batch's own writes first
	// lb is the batch's writes to the message log (indexed as well),
	// committed, synced, before b: a history reference in the store
	// always finds its record in the log.
	lb *pebble.Batch
	// scrub lists the log records the batch's recalls replace with their
	// markers once the batch is committed (recall.go).
	scrub []logScrub
	// Scratch for keys and records: the batch copies what it is given, so
	// the hot path builds them here instead of allocating.
	key, val []byte
	// touched counts the writes of the batch and of the committer's
	// caches: an apply that failed with it unchanged left no trace.
	touched int
	// jr is the batch's journal of private messages acked as pushed
	// (lazy.go), nil until the first; pend every pending record the batch
	// writes, the journal included once sealed.
	jr   *pending
	pend []*pending
	// recent is the batch's changes to the recency orders (seal), applied
	// once it is committed.
	recent []recencyChange
}

// journal returns the batch's journal record, starting it.
func (t *tx) journal() *pending {
	if t.jr == nil {
		t.db.journalID++
		t.jr = &pending{db: t.db, key: keyJournal(t.db.journalID)}
	}
	return t.jr
}

// sealJournal writes the batch's journal record, if it has one.
func (t *tx) sealJournal() {
	if t.jr == nil {
		return
	}
	t.jr.states = make([]atomic.Uint32, len(t.jr.msgs))
	t.jr.left.Store(int32(len(t.jr.msgs)))
	t.val = encodeJournal(t.val[:0], t.jr.msgs)
	t.set(t.jr.key, t.val)
	t.pend = append(t.pend, t.jr)
	t.jr = nil
}

func (t *tx) get(key []byte) ([]byte, error) { return getCopy(t.b, key) }

func (t *tx) set(key, value []byte) { _ = t.b.Set(key, value, nil); t.touched++ }
func (t *tx) del(key []byte)        { _ = t.b.Delete(key, nil); t.touched++ }

// operation is one submitted operation. apply runs on the committer
// goroutine; it may run more than once (a batch rebuilt after another
// operation failed), so it must compute everything from the state it
// reads. An apply that fails leaves nothing in the batch: the committer
// rebuilds the batch without it. done runs on the committer goroutine after
// the commit, with apply's error or the commit's; it must not block.
//
// Hot operations (AppendPrivate) are one allocated struct implementing
// it; the rest use op.
type operation interface {
	apply(*tx) error
	done(error)
}

// op adapts two funcs to operation.
type op struct {
	applyFn func(*tx) error
	doneFn  func(error)
}

func (o op) apply(t *tx) error { return o.applyFn(t) }
func (o op) done(err error)    { o.doneFn(err) }

type commitCounters struct{ ops, batches atomic.Uint64 }

// CommitStats returns the counters since Open. Stalls are the store's and
// its log's, each of which stops the commits.
func (db *DB) CommitStats() CommitStats {
	n, d := db.stalls.stats()
	ln, ld := db.logStalls.stats()
	return CommitStats{Ops: db.cstats.ops.Load(), Batches: db.cstats.batches.Load(), Stalls: n + ln, StallTime: d + ld}
}

// stallCounters follows Pebble's write stalls: its memtables or L0 are
// full, and writes wait for a flush or a compaction.
type stallCounters struct {
	log   *slog.Logger
	n     atomic.Uint64
	total atomic.Int64 // nanoseconds in stalls that ended
	since atomic.Int64 // Nanotime at the current stall's start; 0: none
}

func (s *stallCounters) begin(info pebble.WriteStallBeginInfo) {
	s.n.Add(1)
	s.since.Store(nanotime())
	s.log.Warn("storage: writes stalled until flushes and compactions catch up", "reason", info.Reason)
}

func (s *stallCounters) end() {
	if t0 := s.since.Swap(0); t0 != 0 {
		d := nanotime() - t0
		s.total.Add(d)
		s.log.Warn("storage: writes resumed", "stalled", time.Duration(d))
	}
}

// stats returns the stalls begun and their total length so far.
func (s *stallCounters) stats() (uint64, time.Duration) {
	d := s.total.Load()
	if t0 := s.since.Load(); t0 != 0 {
		d += nanotime() - t0
	}
	return s.n.Load(), time.Duration(d)
}

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(clockBase)) }

var clockBase = time.Now()

// queued is one waiting operation and what it costs the queue.
type queued struct {
	o    operation
	cost int
}

// commitQueue is what waits for the committer: operations (bounded in
// bytes and count) and deferred work (bounded by what can be in flight).
type commitQueue struct {
	mu      sync.Mutex
	work    sync.Cond // the committer waits here for something to do
	room    sync.Cond // submitters wait here for room
	ops     []queued
	bytes   int
	waiting int  // submitters blocked on room
	idle    bool // the committer waits on work
	closed  bool
	lazy    lazyWork
	// lazyArmed: a timer will set lazyDue and wake the committer for
	// deferred work waiting on its own; expiryArmed, expiryDue the same
	// for the expiry of pending records.
	lazyArmed, lazyDue     bool
	expiryArmed, expiryDue bool
}

func (q *commitQueue) init() {
	q.work.L = &q.mu
	q.room.L = &q.mu
}

// submit queues o for the committer, cost bytes against the queue's bound.
// It waits while the queue is full (callers are workers and HTTP handlers,
// never event loops) and fails once the DB closes.
func (db *DB) submit(o operation, cost int) error {
	q := &db.cq
	q.mu.Lock()
	for !q.closed && len(q.ops) > 0 && (q.bytes+cost > commitQueueBytes || len(q.ops) >= commitQueueOps) {
		q.waiting++
		q.room.Wait()
		q.waiting--
	}
	return db.enqueueLocked(o, cost)
}

// submitNoWait is submit for callers that must not block (an event loop
// reporting a written reply): it never waits for room. Its operations are
// small and few (one per connection at a time), so they are not bounded
// here.
func (db *DB) submitNoWait(o operation) error {
	db.cq.mu.Lock()
	return db.enqueueLocked(o, 0)
}

// enqueueLocked appends o with the queue locked, and unlocks it.
func (db *DB) enqueueLocked(o operation, cost int) error {
	q := &db.cq
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.ops = append(q.ops, queued{o, cost})
	q.bytes += cost
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.work.Signal()
	}
	return nil
}

// next waits for work and takes up to maxGroup operations and all deferred
// work into the committer's slices. ok is false once the DB is closed and
// everything was taken.
//
// expireIn, when positive, is when the oldest pending record expires: an
// idle committer wakes then (with nothing taken) to expire it.
func (db *DB) next(ops []queued, lz *lazyWork, expireIn time.Duration) (_ []queued, ok bool) {
	q := &db.cq
	q.mu.Lock()
	// Deferred work alone waits lazyDelay for operations to ride along
	// with (lazy.go), so that it does not cost a commit of its own.
	for len(q.ops) == 0 && !q.closed && (q.lazy.empty() || !q.lazyDue) && !q.expiryDue {
		if !q.lazy.empty() && !q.lazyArmed {
			q.lazyArmed = true
			time.AfterFunc(lazyDelay, db.wakeForLazy)
		}
		if expireIn > 0 && !q.expiryArmed {
			q.expiryArmed = true
			time.AfterFunc(expireIn, db.wakeForExpiry)
		}
		q.idle = true
		q.work.Wait()
	}
	q.lazyDue, q.expiryDue = false, false
	if len(q.ops) == 0 && q.lazy.empty() && q.closed {
		q.mu.Unlock()
		return ops, false
	}
	n := min(len(q.ops), maxGroup)
	ops = append(ops, q.ops[:n]...)
	for i := range n {
		q.bytes -= q.ops[i].cost
	}
	rest := copy(q.ops, q.ops[n:])
	clear(q.ops[rest:])
	q.ops = q.ops[:rest]
	if cap(q.ops) > 4*maxGroup && rest < maxGroup {
		q.ops = append(make([]queued, 0, maxGroup), q.ops...)
	}
	q.lazy.moveTo(lz)
	wake := q.waiting > 0
	q.mu.Unlock()
	if wake {
		q.room.Broadcast()
	}
	return ops, true
}

// wakeForExpiry wakes an idle committer to expire pending records.
func (db *DB) wakeForExpiry() {
	db.wakeDue(func(q *commitQueue) { q.expiryArmed, q.expiryDue = false, true })
}

// wakeDue runs set on the queue, locked, and wakes an idle committer: a
// timer's work is due.
func (db *DB) wakeDue(set func(*commitQueue)) {
	q := &db.cq
	q.mu.Lock()
	set(q)
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.work.Signal()
	}
}

func (db *DB) commitLoop() {
	defer close(db.commitDone)
	var ops []queued
	var lz lazyWork
	t := &tx{db: db, key: make([]byte, 0, 128), val: make([]byte, 0, 1024)}
	errs := make([]error, 0, 64)
	failed := make([]bool, 0, 64)
	var expireIn time.Duration
	for {
		var ok bool
		if ops, ok = db.next(ops[:0], &lz, expireIn); !ok {
			return
		}
		expireIn = db.expire(db.now().UnixNano(), &lz)
		if len(ops) == 0 && lz.empty() {
			continue // woken for an expiry not due yet
		}
		db.trimCaches()
		errs, failed = errs[:0], failed[:0]
		for range ops {
			errs = append(errs, nil)
			failed = append(failed, false)
		}
		t.build(ops, &lz, errs, failed)
		// Sync: an acknowledged message must survive a crash (PROTOCOL
		// §4.2). Deferred work alone is not acknowledged to anyone: if it
		// is lost in a crash, the records it settles are still there, and
		// the next Open queues their receivers.
		opt := pebble.Sync
		if len(ops) == 0 {
			opt = pebble.NoSync
		}
		began := time.Now()
		var err error
		if !t.lb.Empty() {
			// The store remembers how far the log goes (keyLogEnd): a store
			// opened without its log must not give its lsns again.
			_ = t.b.Set(keyLogEnd, binary.BigEndian.AppendUint64(t.key[:0], db.lastLSN), nil)
			// Records first: a crash between the two commits leaves
			// records nothing refers to (their messages were not acked),
			// never a reference without its record.
			err = t.lb.Commit(opt)
		}
		if err == nil {
			err = t.b.Commit(opt)
		}
		if err == nil && len(t.scrub) > 0 {
			db.scrubLog(t.scrub)
		}
		clear(t.scrub)
		t.scrub = t.scrub[:0]
		took := time.Since(began)
		_ = t.b.Close()
		_ = t.lb.Close()
		t.b, t.lb = nil, nil
		if err != nil {
			db.log.Error("commit failed", "ops", len(ops), "err", err)
			db.resetCaches()
			// The deferred work is not lost with the batch: it goes
			// again with the next one.
			db.deferWork(func(l *lazyWork) { lz.moveTo(l) })
		} else {
			if len(ops) > 0 {
				db.cstats.ops.Add(uint64(len(ops)))
				db.cstats.batches.Add(1)
				if db.commits != nil {
					db.commits.ObserveCommit(len(ops), took)
				}
			}
			db.applyRecency(t.recent)
			db.track(t.pend, db.now().UnixNano())
			if expireIn == 0 && len(db.live) > 0 {
				// The first records to follow since the committer last
				// looked: the next wait must end when they are due.
				expireIn = pendingExpiry
			}
		}
		clear(t.pend)
		t.pend = t.pend[:0]
		t.recent = t.recent[:0]
		if cap(t.recent) > maxGroup {
			t.recent = nil
		}
		clear(db.batchMembers) // the versions say it from now on (doneFn)
		lz.reset()
		for i, q := range ops {
			e := errs[i]
			if e == nil {
				e = err
			}
			q.o.done(e)
			ops[i] = queued{}
		}
	}
}

// logScrub is a log record a recall replaced with its marker in history.
type logScrub struct {
	lsn    uint64
	marker []byte
}

// scrubLog overwrites recalled messages' records in the log with their
// markers, after the batch that recalled them committed. Not synced: the
// next synced commit of the log carries it, and a crash before that only
// leaves the content in a record that nothing refers to any more.
func (db *DB) scrubLog(ss []logScrub) {
	b := db.ldb.NewBatch()
	defer func() { _ = b.Close() }()
	for _, s := range ss {
		_ = b.Set(keyLog(s.lsn), s.marker, nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		db.log.Error("storage: scrub recalled records from the log", "records", len(ss), "err", err)
	}
}

// build applies ops and the deferred work lz to a new batch. An operation
// whose apply fails is marked in failed with its error in errs; if it had
// written anything, the batch and the caches are thrown away and built
// again without it, so a failed operation leaves no partial writes.
func (t *tx) build(ops []queued, lz *lazyWork, errs []error, failed []bool) {
	db := t.db
	lastGroup, lastLSN := db.lastGroup, db.lastLSN
	for {
		t.b = db.pdb.NewIndexedBatch()
		t.lb = db.ldb.NewIndexedBatch()
		clear(t.scrub)
		t.scrub = t.scrub[:0]
		t.touched = 0
		t.jr = nil
		clear(t.pend)
		t.pend = t.pend[:0]
		// Deferred work first: it was noted before these operations were
		// submitted, and they must see it (an ack removing what an expiry
		// just queued, a pull's QueuePending).
		t.applyLazy(lz)
		clean := true
		for i, q := range ops {
			if failed[i] {
				continue
			}
			before := t.touched
			err := q.o.apply(t)
			errs[i] = err
			if err == nil {
				continue
			}
			failed[i] = true
			if t.touched != before {
				clean = false
				break
			}
		}
		if clean {
			t.seal()
			t.sealJournal()
			return
		}
		// Start over without the failed operation.
		_ = t.b.Close()
		_ = t.lb.Close()
		db.resetCaches()
		db.lastGroup, db.lastLSN = lastGroup, lastLSN
	}
}

// resetCaches forgets the committer's caches: after a failed commit or a
// discarded batch they may be ahead of disk. They reload on demand.
func (db *DB) resetCaches() {
	clear(db.convs)
	clear(db.contacts)
	clear(db.counts)
	clear(db.partners)
	clear(db.batchMembers)
	db.hint.reset() // it may describe writes that never committed
	clear(db.dirty)
	clear(db.dirtyCounts)
}

// trimCaches bounds the committer's caches. It runs between batches only:
// within a batch the caches hold every conversation tail and contact the
// batch has changed, which seal and later reads rely on. An evicted entry
// is reloaded from disk on demand.
func (db *DB) trimCaches() {
	if len(db.convs) >= maxConvCache {
		clear(db.convs)
	}
	if len(db.contacts) >= maxConvCache {
		clear(db.contacts)
	}
	if len(db.counts) >= maxConvCache {
		clear(db.counts)
	}
	if len(db.partners) >= maxConvCache {
		clear(db.partners)
	}
}

// getCopy returns a copy of the value at key in r (the DB or a batch), or
// ErrNotFound. Pebble's value lives only until its closer is closed.
func getCopy(r interface {
	Get([]byte) ([]byte, io.Closer, error)
}, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}
