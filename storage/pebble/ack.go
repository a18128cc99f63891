package pebble

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Receipt acks (PROTOCOL §7.2): an acknowledged message has reached its
// receiver, so its offline entry, if it has one, goes. Most acks find
// nothing to remove (the push was acknowledged before anything queued it),
// so the store keeps a hint of the conversations whose queue is known to
// be empty: an ack of one of those costs a map lookup and writes nothing.
// The hint is conservative: every write of a queue entry clears it for its
// conversation before the batch commits, and a failed commit forgets it
// all; only a removal that saw the conversation's queue end sets it.

// queueHint is the set of (uid, conversation) whose offline queue is
// known to be empty. Safe for concurrent use: acks read it on workers,
// the committer writes it.
type queueHint struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[[2]uint64]struct{}
		// acks are the removals submitted and not yet applied, one per
		// conversation: a later ack raises its seq instead of queueing
		// another, so a flood of acks queues at most one operation per
		// conversation.
		acks map[[2]uint64]*ackOp
		_    [32]byte
	}
}

// ackOp is one queued removal of a conversation's offline entries.
type ackOp struct{ upTo uint64 } // guarded by its shard's lock

// maxHintPerShard bounds the hint's memory (~40 B an entry, ~5 MiB in
// all); a full shard starts over, which only costs lookups.
const maxHintPerShard = 1 << 11

// groupBit marks a group in a hint key's conversation.
const groupBit = 1 << 63

func hintKey(uid, conv uint64, group bool) [2]uint64 {
	if group {
		conv |= groupBit
	}
	return [2]uint64{uid, conv}
}

func (h *queueHint) shard(k [2]uint64) int { return int((k[0] ^ k[1]*0x9E3779B97F4A7C15) >> 58) }

func (h *queueHint) empty(k [2]uint64) bool {
	s := &h.shards[h.shard(k)]
	s.mu.Lock()
	_, ok := s.m[k]
	s.mu.Unlock()
	return ok
}

func (h *queueHint) set(k [2]uint64, empty bool) {
	s := &h.shards[h.shard(k)]
	s.mu.Lock()
	switch {
	case !empty:
		delete(s.m, k)
	case s.m == nil:
		s.m = map[[2]uint64]struct{}{k: {}}
	default:
		if len(s.m) >= maxHintPerShard {
			clear(s.m)
		}
		s.m[k] = struct{}{}
	}
	s.mu.Unlock()
}

func (h *queueHint) reset() {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

// queued notes, on the committer, a queue entry written for uid in conv.
func (t *tx) queued(uid, conv uint64, group bool) { t.db.hint.set(hintKey(uid, conv, group), false) }

// Ack removes uid's offline entries of a conversation with seq up to upTo
// (PROTOCOL §7.2): the private one with peer, or group peer when group is
// set. It never blocks. When the conversation's queue is known empty it
// does nothing; otherwise the removal rides with the next batch, before
// any operation submitted after it (a pull's QueuePending), so a pull
// after the ack does not return what it covers.
func (db *DB) Ack(uid, peer uint64, group bool, upTo uint64) error {
	if upTo == 0 {
		return nil
	}
	k := hintKey(uid, peer, group)
	h := &db.hint
	sh := &h.shards[h.shard(k)]
	sh.mu.Lock()
	if _, empty := sh.m[k]; empty {
		sh.mu.Unlock()
		return nil
	}
	if a := sh.acks[k]; a != nil {
		a.upTo = max(a.upTo, upTo) // the queued removal takes this one too
		sh.mu.Unlock()
		return nil
	}
	a := &ackOp{upTo: upTo}
	if sh.acks == nil {
		sh.acks = make(map[[2]uint64]*ackOp)
	}
	sh.acks[k] = a
	sh.mu.Unlock()
	err := db.submitNoWait(op{
		applyFn: func(t *tx) error {
			sh.mu.Lock()
			if sh.acks[k] == a {
				delete(sh.acks, k) // later acks queue their own
			}
			upTo := a.upTo
			sh.mu.Unlock()
			return t.ack(uid, peer, group, upTo)
		},
		doneFn: func(error) {},
	})
	if err != nil {
		sh.mu.Lock()
		delete(sh.acks, k)
		sh.mu.Unlock()
	}
	return err
}

func (t *tx) ack(uid, peer uint64, group bool, upTo uint64) error {
	prefix := prefixOffline
	if group {
		prefix = prefixGroupQueue
	}
	lo := key2(prefix, uid, peer)
	hi := binary.BigEndian.AppendUint64(key2(prefix, uid, peer), upTo+1)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: key2(prefix, uid, peer+1)})
	if err != nil {
		return err
	}
	defer it.Close()
	var dels [][]byte
	more := false
	for ok := it.First(); ok; ok = it.Next() {
		if string(it.Key()) >= string(hi) {
			more = true
			break
		}
		dels = append(dels, append([]byte(nil), it.Key()...))
	}
	if err := it.Error(); err != nil {
		return err
	}
	for _, k := range dels {
		t.del(k)
	}
	if !more {
		t.db.hint.set(hintKey(uid, peer, group), true)
	}
	return nil
}

// LastSeq returns the last seq of a conversation (0: empty): the private
// one of uid with peer, or group peer when group is set. One seek.
func (db *DB) LastSeq(uid, peer uint64, group bool) (uint64, error) {
	if !db.enter() {
		return 0, ErrClosed
	}
	defer db.leave()
	conv := privateConv(uid, peer)
	if group {
		conv = groupConv(peer)
	}
	return db.lastSeq(conv)
}

func (db *DB) lastSeq(conv convKey) (uint64, error) {
	return lastKey(db.pdb, keyHistory(conv, 0), keyHistory(conv, math.MaxUint64), len(prefixHistory)+16+8, "seq")
}
