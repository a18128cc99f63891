package pebble

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/btree"
)

// Recency orders (PROTOCOL §1.3, §4.6, §7.4): an owner's contacts by last
// contact (Contacts, RecentCount) and its conversations with a message by
// their last message (Conversations). They are kept in memory, derived
// from the c| records, which hold both times: an owner's orders are built
// by one scan of c|owner| the first time they are asked for, and kept up
// to date from then on by the committer after each commit. Nothing about
// them is on disk, so a message writes its history, idempotency and two
// contact records, and no index key: an index on disk (r| and o|, before)
// cost every message a delete and a set per side and order, 8 of its 12
// keys at a steady rate, which every flush and compaction then carried.
//
// Consistency: the committer applies a batch's changes only once the
// batch is committed (visible), so a reader never sees an order ahead of
// the records. An owner being loaded records the changes committed
// meanwhile and replays them over its scan, which started after the owner
// was registered: every commit the scan missed is among them, in order,
// and each change sets a peer's times outright, so replaying one the scan
// already saw is harmless.
//
// Memory: the orders of all loaded owners together hold at most
// maxRecencyBytes (maxRecencyEntries contacts of about recencyEntryBytes
// each; a walk's snapshot shares the trees' nodes until they change); past it,
// owners are dropped (arbitrary ones: map order) and loaded again when
// next asked for. An owner with more contacts than that alone is scanned
// for each request and not kept.

const (
	// recencyEntryBytes is what a contact costs the orders: an item in
	// each tree and its map entry, rounded up.
	recencyEntryBytes = 96
	// maxRecencyBytes bounds the memory of the orders of all owners.
	maxRecencyBytes = 24 << 20
	// maxRecencyEntries is that bound in contacts (256 Ki).
	maxRecencyEntries = maxRecencyBytes / recencyEntryBytes
	// recencyDegree is the B-trees' degree.
	recencyDegree = 16
)

// recencyItem is one contact in an order: the order's time, then peer.
type recencyItem struct {
	t    int64
	peer uint64
}

func recencyLess(a, b recencyItem) bool {
	return a.t < b.t || (a.t == b.t && a.peer < b.peer)
}

// size is how many contacts o holds.
func (o *ownerRecency) size() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.at)
}

// recencyTimes are a contact's two times as its orders hold them.
type recencyTimes struct{ last, lastMsg int64 }

// recencyChange is a committed change of a contact's times.
type recencyChange struct {
	owner, peer uint64
	recencyTimes
}

// ownerRecency is one owner's two orders.
type ownerRecency struct {
	mu      sync.Mutex
	loaded  chan struct{} // closed when the scan is done (err says how)
	err     error
	loading bool
	pending []recencyChange // committed while loading, replayed after
	// counted is what o adds to recencyCache.entries; guarded by the
	// cache's lock, not o.mu.
	counted int
	byLast  *btree.BTreeG[recencyItem]
	byMsg   *btree.BTreeG[recencyItem] // only contacts with a message
	at      map[uint64]recencyTimes
}

// set moves peer to times in both orders. o.mu is held.
func (o *ownerRecency) set(peer uint64, t recencyTimes) {
	if old, ok := o.at[peer]; ok {
		if old == t {
			return
		}
		o.byLast.Delete(recencyItem{old.last, peer})
		if old.lastMsg != 0 {
			o.byMsg.Delete(recencyItem{old.lastMsg, peer})
		}
	}
	o.at[peer] = t
	o.byLast.ReplaceOrInsert(recencyItem{t.last, peer})
	if t.lastMsg != 0 {
		o.byMsg.ReplaceOrInsert(recencyItem{t.lastMsg, peer})
	}
}

// recencyCache holds the loaded owners.
type recencyCache struct {
	mu      sync.Mutex
	owners  map[uint64]*ownerRecency
	entries int // contacts in the loaded owners
	limit   int // bound of entries; zero means maxRecencyEntries (tests set less)
	// scanned, if set, runs after a load's scan, before its replay;
	// installing after the load, before it is counted (tests).
	scanned, installing func(owner uint64)
}

func (rc *recencyCache) max() int {
	if rc.limit > 0 {
		return rc.limit
	}
	return maxRecencyEntries
}

func newOwnerRecency() *ownerRecency {
	return &ownerRecency{
		loaded:  make(chan struct{}),
		loading: true,
		byLast:  btree.NewG(recencyDegree, recencyLess),
		byMsg:   btree.NewG(recencyDegree, recencyLess),
		at:      make(map[uint64]recencyTimes),
	}
}

// recency returns owner's orders, loading them if needed.
func (db *DB) recency(owner uint64) (*ownerRecency, error) {
	rc := &db.recent
	rc.mu.Lock()
	if rc.owners == nil {
		rc.owners = make(map[uint64]*ownerRecency)
	}
	o, ok := rc.owners[owner]
	if !ok {
		o = newOwnerRecency()
		rc.owners[owner] = o
	}
	rc.mu.Unlock()
	if ok {
		<-o.loaded
		if o.err != nil {
			return nil, o.err
		}
		return o, nil
	}
	err := db.loadRecency(owner, o)
	if rc.installing != nil {
		rc.installing(owner)
	}
	rc.mu.Lock()
	if rc.owners[owner] == o {
		if err != nil || o.size() > rc.max() {
			// Failed, or too large to keep: this request uses it, the
			// next scans again.
			rc.drop(owner, o)
		} else {
			// Count it as it is now (commits since the load may have
			// grown it: applyRecency counted those already).
			o.mu.Lock()
			rc.entries += len(o.at) - o.counted
			o.counted = len(o.at)
			o.mu.Unlock()
			rc.evict(owner)
		}
	}
	rc.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return o, nil
}

// drop forgets owner's orders o. rc.mu is held.
func (rc *recencyCache) drop(owner uint64, o *ownerRecency) {
	rc.entries -= o.counted
	o.counted = 0
	delete(rc.owners, owner)
}

// evict drops loaded owners other than keep until the entries are within
// the bound (an owner larger than the bound alone may stay until the next
// eviction that does not keep it). rc.mu is held.
func (rc *recencyCache) evict(keep uint64) {
	for k, v := range rc.owners {
		if rc.entries <= rc.max() {
			return
		}
		if k == keep {
			continue
		}
		v.mu.Lock()
		loading := v.loading
		v.mu.Unlock()
		if !loading {
			rc.drop(k, v)
		}
	}
}

// loadRecency fills o, registered in the cache as loading, and ends its
// loading whatever happens: waiters are released even by a panic.
func (db *DB) loadRecency(owner uint64, o *ownerRecency) (err error) {
	defer func() {
		o.mu.Lock()
		if o.loading { // the scan failed or panicked
			if err == nil {
				err = errLoading
			}
			o.err, o.pending, o.loading = err, nil, false
		}
		o.mu.Unlock()
		if err != nil {
			rc := &db.recent
			rc.mu.Lock()
			if rc.owners[owner] == o {
				rc.drop(owner, o) // the next request scans again
			}
			rc.mu.Unlock()
		}
		close(o.loaded)
	}()
	// Registered before the scan starts: every commit from now on is
	// recorded in o.pending (applyRecency) until loading ends, and the
	// replay and that end are one step under o.mu, so none falls between.
	err = db.scanContacts(owner, o)
	if db.recent.scanned != nil {
		db.recent.scanned(owner)
	}
	if err != nil {
		return err
	}
	o.mu.Lock()
	for _, ch := range o.pending {
		o.set(ch.peer, ch.recencyTimes)
	}
	o.pending, o.loading = nil, false
	o.mu.Unlock()
	return nil
}

// errLoading is a load's error while it runs; one that ends in a panic
// leaves it for the requests that waited.
var errLoading = errors.New("storage: loading contacts' recency failed")

// scanContacts fills o from owner's c| records.
func (db *DB) scanContacts(owner uint64, o *ownerRecency) error {
	lower := binary.BigEndian.AppendUint64([]byte(prefixContact), owner)
	upper := binary.BigEndian.AppendUint64([]byte(prefixContact), owner+1)
	if owner == ^uint64(0) {
		upper = []byte("c}")
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefixContact)+16 {
			return errCorrupt
		}
		peer := binary.BigEndian.Uint64(k[len(prefixContact)+8:])
		c, err := decodeContact(peer, it.Value())
		if err != nil {
			return err
		}
		o.mu.Lock()
		o.set(peer, recencyTimes{c.LastContact, c.LastMessage})
		o.mu.Unlock()
	}
	return it.Error()
}

// applyRecency applies committed changes to the loaded owners' orders. It
// runs on the committer, after the commit and before anyone hears of it.
func (db *DB) applyRecency(changes []recencyChange) {
	if len(changes) == 0 {
		return
	}
	rc := &db.recent
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.owners) == 0 {
		return
	}
	for _, ch := range changes {
		o, ok := rc.owners[ch.owner]
		if !ok {
			continue
		}
		o.mu.Lock()
		if o.loading {
			o.pending = append(o.pending, ch)
		} else {
			// Counted or not yet (a load about to install it counts
			// the rest), the count follows the contacts.
			before := len(o.at)
			o.set(ch.peer, ch.recencyTimes)
			rc.entries += len(o.at) - before
			o.counted += len(o.at) - before
		}
		o.mu.Unlock()
	}
	if rc.entries > rc.max() {
		rc.evict(0) // owners grew past the bound (uid 0 is nobody)
	}
}

// walkRecency calls fn with owner's contact records in the order byMsg
// (msgs) or byLast, newest first, starting below before (0: from the
// newest), until fn returns false. A peer whose record is gone is
// skipped. The walk follows a snapshot of the order taken at its start (a
// copy-on-write clone, so the committer is not held up), as an iterator
// over an index on disk would: a contact that moves meanwhile is walked
// once, where it was; its record is read as the walk reaches it.
func (db *DB) walkRecency(owner uint64, msgs bool, before int64, fn func(Contact) bool) error {
	o, err := db.recency(owner)
	if err != nil {
		return err
	}
	o.mu.Lock()
	tree := o.byLast
	if msgs {
		tree = o.byMsg
	}
	snap := tree.Clone()
	o.mu.Unlock()
	var werr error
	visit := func(it recencyItem) bool {
		if before > 0 && it.t >= before {
			return true // (before, 0) itself, if a peer 0 were there
		}
		c, err := db.Contact(owner, it.peer)
		if errors.Is(err, ErrNotFound) {
			return true
		}
		if err != nil {
			werr = err
			return false
		}
		return fn(c)
	}
	if before > 0 {
		snap.DescendLessOrEqual(recencyItem{before, 0}, visit)
	} else {
		snap.Descend(visit)
	}
	return werr
}

// recentCount counts owner's contacts with a last contact at or after
// since.
func (db *DB) recentCount(owner uint64, since int64) (int, error) {
	o, err := db.recency(owner)
	if err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	o.byLast.AscendGreaterOrEqual(recencyItem{since, 0}, func(recencyItem) bool {
		n++
		return true
	})
	return n, nil
}
