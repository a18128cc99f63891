package pebble

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/imgate/imgate/storage"
)

// Options configures a DB. The zero value is usable.
type Options struct {
	// Logger receives Pebble's error reports and lifecycle lines; nil
	// discards them.
	Logger *slog.Logger
	// InMemory keeps everything in memory (tests and benchmarks only);
	// the directory is then ignored.
	InMemory bool
	// Now is the clock of the expiry of pending deliveries (lazy.go);
	// nil means time.Now. Tests inject their own.
	Now func() time.Time
	// Commits, if set, is told of every synced commit (its operations
	// and duration); nil observes nothing.
	Commits storage.CommitObserver
}

type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// blockCacheSize is Pebble's block cache, shared by the store and its
// log: hot conversations' tails, contacts, tokens and recent records stay
// in memory. A conversation's records are spread over log blocks it
// shares with every conversation active at the time, so a pull reads a
// block per message where history used to read a block per ~30: at 64 MiB
// `bench offline -pairs 200 -messages 1000` pulled 0.38x the messages/s
// of the store before the log, at 128 MiB 1.00x (BENCHMARKS.md, issue 15).
const blockCacheSize = 128 << 20

// lockStripes is the number of striped locks that serialise read-then-write
// sequences on the same keys. A power of two; 256 makes collisions between
// unrelated registrations rare.
const lockStripes = 256

// DB is the durable store. Create it with Open and close it with Close.
type DB struct {
	_   noCopy
	pdb *pebble.DB
	// ldb is the message log (DIR/messages): the records of messages under
	// L|lsn, an lsn a store-wide sequence, so that every flush lands
	// after everything before it and compactions move its tables instead
	// of rewriting them (BENCHMARKS.md, issue 15). History keeps 9-byte
	// references to them.
	ldb     *pebble.DB
	dir     string
	log     *slog.Logger
	recent  recencyCache // owners' contacts in recency order (recency.go)
	seed    maphash.Seed
	stripes [lockStripes]sync.Mutex
	nextUID atomic.Uint64
	users   userCache
	groups  groupCache
	closed  atomic.Bool
	// readers counts reads in progress (enter, leave), which Close waits
	// for.
	readers atomic.Int64
	// assignMu is the assignment lock (LockAssignment).
	assignMu sync.Mutex

	// Committer (commit.go). convs is owned by the committer goroutine.
	cq         commitQueue
	commitDone chan struct{}
	cstats     commitCounters
	stalls     *stallCounters
	logStalls  *stallCounters         // the message log's
	commits    storage.CommitObserver // Options.Commits
	convs      map[convKey]convState
	contacts   map[[16]byte]cachedContact // owner|peer; see tx.contact
	counts     map[uint64]ContactCounts
	partners   map[uint64]uint64 // visitor -> partner (l|); see tx.partner
	// Contacts and counters changed by the batch being built: each is
	// written once, when the batch is sealed (tx.seal).
	dirty       map[[16]byte]dirtyContact
	dirtyCounts map[uint64]struct{}
	lastGroup   uint64      // last gid assigned; owned by the committer
	lastLSN     uint64      // last log record written; owned by the committer
	sweep       sweepCursor // where the next SweepTokens starts (token.go)
	journalID   uint64      // last journal record id (lazy.go); owned by the committer
	live        []*pending  // committed pending records, oldest first (lazy.go); owned by the committer
	now         func() time.Time
	epoch       string    // the store's identity (Epoch)
	hint        queueHint // conversations whose offline queue is empty (ack.go)
	memberVer   membershipVersions
	// batchMembers are the groups whose members the batch being built
	// changes; owned by the committer.
	batchMembers map[uint64]struct{}
}

// tunedOptions is the Pebble configuration of every DB: a write-heavy
// LSM (one durable commit per batch of chats), with cache as the block
// cache. Open adds the logger, listeners and file system.
// BenchmarkSteadyStateCompaction measures layouts and sizes with it.
func tunedOptions(cache *pebble.Cache) *pebble.Options {
	po := &pebble.Options{Cache: cache}
	// Bloom filters on every level: most point reads here (idempotency
	// records, tokens of strangers) look for keys that do not exist, and
	// without a filter each of them reads a block from every level.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// Write-heavy tuning (BenchmarkAppendPrivate/group over 1.5 M messages):
	// Pebble's 4 MiB memtables and L0 compaction at 4 files left
	// compactions 72% of the CPU (~24 000 msgs/s); 8 MiB memtables, L0
	// compacting at 8 files into a 256 MiB base level give ~90 000-100 000.
	// 16 MiB memtables measured no better (deeper skiplists), and turning
	// off snappy worse (75 000: more bytes to compact).
	po.MemTableSize = 8 << 20
	po.MemTableStopWritesThreshold = 4
	// L0 is compacted into the base level at 8 sublevels. At 32, 60 s of
	// `bench chat -pairs 200 -inflight 16` gave 1.13x the acks/s, but
	// reads merge up to that many sublevels at every load: `bench offline`
	// pulled 0.79x the messages/s at 1.6x the pull p99 (BENCHMARKS.md,
	// issue 15). The write gain was measured at saturation; the read
	// cost applies at any load.
	po.L0CompactionThreshold = 8
	// Writes stop (every ack waits) when L0 is this many sublevels deep.
	// At 32, 60 s of `bench chat -pairs 200 -inflight 16` on 2 cores
	// stalled 3-6 times for 2.7-5.2 s in all; at 128 not once in 5 runs,
	// for 1.26x the acks/s (BENCHMARKS.md, issue 15). Reads over a deep L0
	// merge more sublevels, which costs a read; a stall stops every user.
	po.L0StopWritesThreshold = 128
	po.LBaseMaxBytes = 256 << 20
	return po
}

// Open opens or creates the store in dir.
func Open(dir string, opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cache := pebble.NewCache(blockCacheSize)
	defer cache.Unref() // the DB holds its own reference
	po := tunedOptions(cache)
	// The store holds history references, contacts and queues, small
	// entries whose conversation-ordered keys overlap every table of the
	// base level: each L0 compaction rewrites that level, so the fewer and
	// larger the flushes, the less is rewritten per message. With 32 MiB
	// memtables the compactions wrote 22 bytes per message over 9 M
	// messages at 150 000/s, against 100 with 8 MiB (2.3 against 3.4 µs of
	// CPU per message; BenchmarkSteadyStateCompaction, layout "log").
	// The log keeps 8 MiB: its flushes are moved down, never rewritten.
	po.MemTableSize = storeMemTableSize
	po.Logger = pebbleLogger{log}
	stalls := &stallCounters{log: log}
	po.EventListener = &pebble.EventListener{WriteStallBegin: stalls.begin, WriteStallEnd: stalls.end}
	if opts.InMemory {
		po.FS = memFS()
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		if opts.InMemory {
			return nil, fmt.Errorf("storage: open %s: %w", dir, err)
		}
		return nil, openError(dir, err) // says when another process holds dir
	}
	// The message log is a Pebble directory of its own: in the store's
	// LSM, conversation-ordered history overlaps every table of the base
	// level, and compactions that took the log's tables along rewrote
	// them as well (BenchmarkSteadyStateCompaction).
	lpo := tunedOptions(cache)
	// Its own logger and listener: Pebble fills a listener's defaults
	// with the logger of the DB that opens it first.
	llog := log.With("pebble_dir", logDir)
	logStalls := &stallCounters{log: llog}
	lpo.Logger = pebbleLogger{llog}
	lpo.EventListener = &pebble.EventListener{WriteStallBegin: logStalls.begin, WriteStallEnd: logStalls.end}
	if opts.InMemory {
		lpo.FS = memFS()
	}
	ldb, err := pebble.Open(filepath.Join(dir, logDir), lpo)
	if err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("storage: open the message log %s: %w", filepath.Join(dir, logDir), err)
	}
	db := &DB{pdb: pdb, ldb: ldb, dir: dir, log: log, seed: maphash.MakeSeed(), now: opts.Now, stalls: stalls, logStalls: logStalls, commits: opts.Commits}
	if err := db.load(); err != nil {
		_ = pdb.Close()
		_ = ldb.Close()
		return nil, err
	}
	db.cq.init()
	// Journal ids only need to differ from any record still on disk, and
	// recoverPending removed those: the clock makes them unique across
	// restarts as well.
	db.journalID = uint64(time.Now().UnixNano())
	db.commitDone = make(chan struct{})
	db.convs = make(map[convKey]convState)
	db.contacts = make(map[[16]byte]cachedContact)
	db.counts = make(map[uint64]ContactCounts)
	db.partners = make(map[uint64]uint64)
	db.batchMembers = make(map[uint64]struct{})
	db.dirty = make(map[[16]byte]dirtyContact)
	db.dirtyCounts = make(map[uint64]struct{})
	go db.commitLoop()
	return db, nil
}

// storeMemTableSize is the store's memtable (the log's is tunedOptions'):
// up to MemTableStopWritesThreshold of them are held while they flush.
const storeMemTableSize = 32 << 20

// keyLogEnd holds the last lsn the store's batches wrote to the log.
var keyLogEnd = []byte("N|")

// logDir is the message log's directory inside the store's.
const logDir = "messages"

// load reads what the store keeps in memory and runs its migrations and
// recovery, at Open.
func (db *DB) load() error {
	if db.now == nil {
		db.now = time.Now
	}
	db.users.seed = db.seed
	last, err := db.lastUID()
	if err != nil {
		return err
	}
	db.nextUID.Store(last + 1)
	if db.lastGroup, err = db.lastGID(); err != nil {
		return err
	}
	if err := db.migrate(); err != nil {
		return err
	}
	if db.epoch, err = db.loadEpoch(); err != nil {
		return fmt.Errorf("storage: epoch: %w", err)
	}
	if err := db.recoverPending(); err != nil {
		return fmt.Errorf("storage: settle pending group deliveries: %w", err)
	}
	if db.lastLSN, err = lastLSN(db.ldb); err != nil {
		return err
	}
	switch v, err := getCopy(db.pdb, keyLogEnd); {
	case errors.Is(err, ErrNotFound): // a store from before the log
	case err != nil:
		return err
	case len(v) != 8:
		return fmt.Errorf("storage: log end %x: %w", v, errCorrupt)
	case binary.BigEndian.Uint64(v) > db.lastLSN:
		// Records are committed before the store refers to them: a log
		// that ends before the store's references is not this store's.
		return fmt.Errorf("storage: the message log %s ends at record %d but the store refers to records up to %d: "+
			"it is missing or from another copy; restore the data directory with its messages/ directory together",
			filepath.Join(db.dir, logDir), db.lastLSN, binary.BigEndian.Uint64(v))
	}
	return nil
}

// lastLSN returns the last record's lsn in the log, 0 if it is empty.
func lastLSN(ldb *pebble.DB) (uint64, error) {
	return lastKey(ldb, []byte(prefixLog), []byte(prefixLogEnd), len(prefixLog)+8, "log record")
}

// lastKey returns the big-endian number that ends the last key of r in
// [lower, upper), 0 when there is none; the keys are n bytes long. what
// names them in an error.
func lastKey(r reader, lower, upper []byte, n int, what string) (uint64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("storage: last %s: %w", what, err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	k := it.Key()
	if len(k) != n {
		return 0, fmt.Errorf("storage: last %s: bad key %q", what, k)
	}
	return binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

// Close flushes and closes the store. Calls after the first return nil.
func (db *DB) Close() error {
	q := &db.cq
	q.mu.Lock()
	if !db.closed.CompareAndSwap(false, true) {
		q.mu.Unlock()
		return nil
	}
	q.closed = true // the committer finishes what is queued, then exits
	q.mu.Unlock()
	q.work.Broadcast()
	q.room.Broadcast()
	<-db.commitDone
	// Reads that entered before closed was set finish first: Pebble
	// panics on a closed DB.
	for db.readers.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	// A clean close flushes the memtable so that the next Open replays no WAL.
	for _, p := range []*pebble.DB{db.ldb, db.pdb} {
		if err := p.Flush(); err != nil {
			db.log.Error("storage flush on close", "err", err)
		}
	}
	return errors.Join(db.pdb.Close(), db.ldb.Close())
}

// enter admits a read unless the store is closed (then the read returns
// ErrClosed); leave ends it.
func (db *DB) enter() bool {
	db.readers.Add(1)
	if db.closed.Load() {
		db.readers.Add(-1)
		return false
	}
	return true
}

func (db *DB) leave() { db.readers.Add(-1) }

// Ping reports whether the store is open and readable.
func (db *DB) Ping() error {
	if db.closed.Load() {
		return ErrClosed
	}
	_, closer, err := db.pdb.Get(keyUser(0))
	if err == nil {
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("storage: ping: %w", err)
	}
	return nil
}

// get returns a copy of the value at key, or ErrNotFound.
func (db *DB) get(key []byte) ([]byte, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return getCopy(db.pdb, key)
}

func (db *DB) lastUID() (uint64, error) {
	return lastKey(db.pdb, []byte(prefixUser), []byte(prefixUserEnd), len(prefixUser)+8, "uid")
}

// pebbleLogger forwards Pebble's reports to slog: its Infof lines are
// per-compaction detail (debug), Errorf is an operator's concern. Pebble's
// text is the line's message and library=pebble names its source (not
// component: main's logger already carries component=storage), so a JSON
// line has one "msg".
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(nil, slog.LevelDebug) { //nolint:staticcheck // no context here
		l.log.Debug(fmt.Sprintf(format, args...), "library", "pebble")
	}
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "library", "pebble")
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	l.log.Error(text, "library", "pebble", "fatal", true)
	panic(text)
}

// keyEpoch holds the store's epoch: 32 hex characters drawn when the store
// was created (or first opened by a version that keeps one).
var keyEpoch = []byte("e|")

// Epoch identifies this store (PROTOCOL §7.7): seqs a client holds from
// another epoch came from another store.
func (db *DB) Epoch() string { return db.epoch }

func (db *DB) loadEpoch() (string, error) {
	v, err := getCopy(db.pdb, keyEpoch)
	if err == nil {
		return string(v), nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	e := hex.EncodeToString(b[:])
	return e, db.pdb.Set(keyEpoch, []byte(e), pebble.Sync)
}
