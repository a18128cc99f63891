package storage

import (
	"errors"
	"io"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// The committer is the one goroutine that writes conversations, queues and
// contacts. Callers submit operations; it gathers every operation waiting
// into one indexed batch, commits it with the WAL synced (one fsync for
// all of them: group commit) and then reports to each operation. Running
// every read-modify-write on one goroutine makes sequence numbers gap-free
// and counters exact without locks, and commit order is submit order.

// ErrOverloaded is returned by submissions when the commit queue is full.
var ErrOverloaded = errors.New("storage: commit queue full")

const (
	// commitQueue bounds operations waiting for the committer.
	commitQueue = 16384
	// maxGroup bounds one batch, so a burst cannot delay its first acks
	// behind an unbounded write.
	maxGroup = 4096
)

// tx is the committer's view of the batch being built.
type tx struct {
	db *DB
	b  *pebble.Batch // indexed: reads see the batch's own writes first
	// Scratch for keys and records: the batch copies what it is given, so
	// the hot path builds them here instead of allocating.
	key, val []byte
}

func (t *tx) get(key []byte) ([]byte, error) { return getCopy(t.b, key) }

func (t *tx) set(key, value []byte) { _ = t.b.Set(key, value, nil) }
func (t *tx) del(key []byte)        { _ = t.b.Delete(key, nil) }

// operation is one submitted operation. apply runs on the committer
// goroutine and must read before it writes: an apply that fails must leave
// the batch as it found it. done runs on the committer goroutine after the
// commit, with apply's error or the commit's; it must not block.
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

// CommitStats counts the committer's work, for benchmarks and metrics.
type CommitStats struct {
	Ops     uint64 // operations committed
	Batches uint64 // synced commits (fsyncs)
}

type commitCounters struct{ ops, batches atomic.Uint64 }

// CommitStats returns the counters since Open.
func (db *DB) CommitStats() CommitStats {
	return CommitStats{Ops: db.cstats.ops.Load(), Batches: db.cstats.batches.Load()}
}

// submit queues o for the committer. It blocks while the queue is full
// (callers are workers, never event loops) and fails once the DB closes.
func (db *DB) submit(o operation) error {
	db.commitMu.RLock()
	defer db.commitMu.RUnlock()
	if db.closed.Load() {
		return ErrClosed
	}
	db.commitCh <- o
	return nil
}

func (db *DB) commitLoop() {
	defer close(db.commitDone)
	ops := make([]operation, 0, 64)
	t := &tx{db: db, key: make([]byte, 0, 128), val: make([]byte, 0, 1024)}
	errs := make([]error, 0, 64)
	for first := range db.commitCh {
		ops = append(ops[:0], first)
	gather:
		for len(ops) < maxGroup {
			select {
			case o, ok := <-db.commitCh:
				if !ok {
					break gather
				}
				ops = append(ops, o)
			default:
				break gather
			}
		}
		db.trimCaches()
		t.b = db.pdb.NewIndexedBatch()
		errs = errs[:0]
		for _, o := range ops {
			errs = append(errs, o.apply(t))
		}
		t.seal()
		// Sync: an acknowledged message must survive a crash (PROTOCOL §4.2).
		err := t.b.Commit(pebble.Sync)
		_ = t.b.Close()
		if err != nil {
			db.log.Error("commit failed", "ops", len(ops), "err", err)
			// The caches may be ahead of disk now: start them afresh.
			clear(db.convs)
			clear(db.contacts)
			clear(db.counts)
		} else {
			db.cstats.ops.Add(uint64(len(ops)))
			db.cstats.batches.Add(1)
		}
		for i, o := range ops {
			e := errs[i]
			if e == nil {
				e = err
			}
			o.done(e)
			ops[i] = nil
		}
	}
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
