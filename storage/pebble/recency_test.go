package pebble

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// contactsOrder lists owner's contacts as Contacts walks them.
func contactsOrder(t testing.TB, db *DB, owner uint64) []uint64 {
	t.Helper()
	var got []uint64
	if err := db.Contacts(owner, func(c Contact) bool { got = append(got, c.Peer); return true }); err != nil {
		t.Fatal(err)
	}
	return got
}

// recordsOrder is the order the contact records themselves give: newest
// last contact first, ties by peer descending.
func recordsOrder(t testing.TB, db *DB, owner uint64, peers []uint64) []uint64 {
	t.Helper()
	type pc struct {
		peer uint64
		at   int64
	}
	var all []pc
	for _, p := range peers {
		c, err := db.Contact(owner, p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, pc{p, c.LastContact})
	}
	slices.SortFunc(all, func(a, b pc) int {
		if a.at != b.at {
			if a.at > b.at {
				return -1
			}
			return 1
		}
		if a.peer > b.peer {
			return -1
		}
		return 1
	})
	out := make([]uint64, len(all))
	for i, x := range all {
		out[i] = x.peer
	}
	return out
}

// dropRecency forgets owner's loaded orders, as the cache's bound would.
func (db *DB) dropRecency(owner uint64) {
	rc := &db.recent
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if o, ok := rc.owners[owner]; ok {
		o.mu.Lock()
		loading := o.loading
		o.mu.Unlock()
		if !loading {
			rc.drop(owner, o)
		}
	}
}

// PROTOCOL §1.3, §7.4: the orders built while messages commit agree with
// the records once the writers stop, whether the owner was loaded before,
// during (changes replayed over the scan) or after them.
func TestSection7_4_RecencyLoadedDuringCommits(t *testing.T) {
	db := openTest(t, t.TempDir())
	const owner, peers, rounds = 1, 40, 25
	var ids []uint64
	for p := uint64(2); p < 2+peers; p++ {
		ids = append(ids, p)
	}
	var wg sync.WaitGroup
	for _, p := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				ch := make(chan AppendResult, 1)
				m := Message{ID: msgID(), From: p, To: owner, ChatType: ChatPrivate, Content: "m", CreateTime: int64(1000 + i*peers + int(p))}
				if err := db.AppendPrivate(m, AppendOptions{}, func(r AppendResult) { ch <- r }); err != nil {
					t.Error(err)
					return
				}
				if r := <-ch; r.Err != nil {
					t.Error(r.Err)
					return
				}
			}
		}()
	}
	loads := make(chan struct{})
	go func() {
		defer close(loads)
		// Loads and drops while the writers run: some loads scan while
		// batches commit.
		for range 200 {
			_ = contactsOrder(t, db, owner)
			db.dropRecency(owner)
			if _, err := db.RecentCount(owner, 0); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	<-loads
	got := contactsOrder(t, db, owner)
	if want := recordsOrder(t, db, owner, ids); !slices.Equal(got, want) {
		t.Fatalf("contacts order %v, records say %v", got, want)
	}
	// The peers' own orders (one contact each) and a fresh load agree.
	db.dropRecency(owner)
	if again := contactsOrder(t, db, owner); !slices.Equal(again, got) {
		t.Fatalf("reloaded order %v, kept order %v", again, got)
	}
	if n, err := db.RecentCount(owner, 0); err != nil || n != peers {
		t.Fatalf("RecentCount = %d, %v; want %d", n, err, peers)
	}
}

// The orders hold a bounded number of contacts: loading more owners drops
// others, and an owner larger than the bound is served and not kept.
func TestSection7_4_RecencyBounded(t *testing.T) {
	db := openTest(t, t.TempDir())
	db.recent.limit = 10
	// Owners 1..6 with 3 contacts each (peers 100..102), owner 7 with 12.
	for owner := uint64(1); owner <= 7; owner++ {
		n := uint64(3)
		if owner == 7 {
			n = 12
		}
		for p := uint64(100); p < 100+n; p++ {
			touchSync(t, db, owner, p, int64(p), TouchOptions{})
		}
	}
	for owner := uint64(1); owner <= 6; owner++ {
		if got := contactsOrder(t, db, owner); fmt.Sprint(got) != "[102 101 100]" {
			t.Fatalf("owner %d: %v", owner, got)
		}
		db.recent.mu.Lock()
		entries, held := db.recent.entries, len(db.recent.owners)
		db.recent.mu.Unlock()
		if entries > 10 || entries != 3*held {
			t.Fatalf("after owner %d: %d entries in %d owners, bound 10", owner, entries, held)
		}
	}
	if got := contactsOrder(t, db, 7); len(got) != 12 || got[0] != 111 || got[11] != 100 {
		t.Fatalf("owner 7: %v", got)
	}
	db.recent.mu.Lock()
	_, kept := db.recent.owners[7]
	db.recent.mu.Unlock()
	if kept {
		t.Fatal("an owner over the bound was kept")
	}
	// A message moves a kept owner's contact to the front.
	touchSync(t, db, 6, 100, 500, TouchOptions{})
	if got := contactsOrder(t, db, 6); fmt.Sprint(got) != "[100 102 101]" {
		t.Fatalf("owner 6 after a touch: %v", got)
	}
}

// doc.go: opening a directory of an earlier version deletes its r| and
// o| keys (migration recency-memory-v1); the orders come from c|.
func TestSection7_4_RecencyMigrationDropsIndexKeys(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const owner = 1
	for p := uint64(2); p <= 4; p++ {
		appendOpts(t, db, Message{ID: msgID(), From: p, To: owner, ChatType: ChatPrivate, Content: "m", CreateTime: 100 * int64(p)}, AppendOptions{})
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// What an earlier version left: index keys, no marker.
	pdb, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	_ = pdb.Set(keyConv(owner, 200, 2), nil, nil)
	_ = pdb.Set([]byte(prefixRecent+"stale"), nil, nil)
	_ = pdb.Delete([]byte(prefixMigrated+"recency-memory-v1"), nil)
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	for _, p := range []string{prefixRecent, prefixConvs} {
		upper := []byte(p)
		upper[len(upper)-1]++
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(p), UpperBound: upper})
		if err != nil {
			t.Fatal(err)
		}
		if it.First() {
			t.Errorf("%s keys left after the migration: %q", p, it.Key())
		}
		_ = it.Close()
	}
	var got []uint64
	if err := db.Conversations(owner, 0, func(c Contact) bool { got = append(got, c.Peer); return true }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[4 3 2]" {
		t.Fatalf("conversations after the migration: %v", got)
	}
	got = got[:0]
	if err := db.Conversations(owner, 400, func(c Contact) bool { got = append(got, c.Peer); return true }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[3 2]" {
		t.Fatalf("conversations before 400: %v", got)
	}
}

// walkSpan is a walk long enough to outlast any batching of its reads.
const walkSpan = 64

// A long walk keeps the order, ties of time included, and stops when fn
// says so.
func TestSection7_4_RecencyWalkAcrossChunks(t *testing.T) {
	db := openTest(t, t.TempDir())
	const owner = 1
	n := 2*walkSpan + 5
	var ids []uint64
	for i := range n {
		p := uint64(10 + i)
		ids = append(ids, p)
		touchSync(t, db, owner, p, int64(1000+i/7), TouchOptions{}) // runs of equal times
	}
	got := contactsOrder(t, db, owner)
	if want := recordsOrder(t, db, owner, ids); !slices.Equal(got, want) {
		t.Fatalf("order %v, records say %v", got, want)
	}
	seen := 0
	_ = db.Contacts(owner, func(Contact) bool { seen++; return seen < walkSpan+1 })
	if seen != walkSpan+1 {
		t.Fatalf("walk went on to %d after fn said stop", seen)
	}
}

// A change committed after a load's scan and before it is installed is
// replayed over the scan, not lost.
func TestSection7_4_RecencyChangeDuringLoad(t *testing.T) {
	db := openTest(t, t.TempDir())
	const owner = 1
	touchSync(t, db, owner, 2, 100, TouchOptions{})
	touchSync(t, db, owner, 3, 200, TouchOptions{})
	once := true
	db.recent.scanned = func(uint64) {
		if once {
			once = false
			touchSync(t, db, owner, 2, 300, TouchOptions{}) // commits while loading
			touchSync(t, db, owner, 4, 250, TouchOptions{}) // a new contact too
		}
	}
	if got := contactsOrder(t, db, owner); fmt.Sprint(got) != "[2 4 3]" {
		t.Fatalf("order after changes during the load: %v, want [2 4 3]", got)
	}
	if n, err := db.RecentCount(owner, 250); err != nil || n != 2 {
		t.Fatalf("RecentCount(250) = %d, %v; want 2", n, err)
	}
}

// A load that fails (a corrupt record) answers the error and is not kept:
// the next request scans again.
func TestSection7_4_RecencyFailedLoadNotKept(t *testing.T) {
	db := openTest(t, t.TempDir())
	const owner = 1
	touchSync(t, db, owner, 2, 100, TouchOptions{})
	good, err := getCopy(db.pdb, keyContact(owner, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(keyContact(owner, 3), []byte{0xff}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Contacts(owner, func(Contact) bool { return true }); err == nil {
		t.Fatal("a corrupt contact record loaded")
	}
	if err := db.pdb.Set(keyContact(owner, 3), good, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if got := contactsOrder(t, db, owner); fmt.Sprint(got) != "[3 2]" {
		t.Fatalf("after the record was repaired: %v, want [3 2]", got)
	}
}

// heldEntries is what the loaded owners hold against what the cache counts.
func heldEntries(db *DB) (counted, held int) {
	rc := &db.recent
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, o := range rc.owners {
		o.mu.Lock()
		held += len(o.at)
		o.mu.Unlock()
	}
	return rc.entries, held
}

// A commit applied to an owner between its load and its install is
// counted once, and given back when the owner turns out too large to keep.
func TestSection7_4_RecencyCountedThroughInstall(t *testing.T) {
	db := openTest(t, t.TempDir())
	db.recent.limit = 3
	const owner = 1
	for p := uint64(100); p < 104; p++ {
		touchSync(t, db, owner, p, int64(p), TouchOptions{})
	}
	once := true
	db.recent.installing = func(uint64) {
		if once {
			once = false
			touchSync(t, db, owner, 99, 500, TouchOptions{}) // applied to the loaded, uncounted owner
		}
	}
	if got := contactsOrder(t, db, owner); len(got) != 5 || got[0] != 99 {
		t.Fatalf("order: %v", got)
	}
	if counted, held := heldEntries(db); counted != held {
		t.Fatalf("the cache counts %d contacts, its owners hold %d", counted, held)
	}
}

// An owner loaded but not yet counted that another owner's install evicts
// leaves the count exact (the eviction takes back only what was counted).
func TestSection7_4_RecencyEvictUncounted(t *testing.T) {
	for trial := range 20 { // which owner an eviction picks is map order
		db := openTest(t, t.TempDir())
		db.recent.limit = 4
		const c, b, a = 10, 20, 30
		for p := uint64(100); p < 102; p++ {
			touchSync(t, db, c, p, int64(p), TouchOptions{})
			touchSync(t, db, b, p, int64(p), TouchOptions{})
		}
		for p := uint64(100); p < 103; p++ {
			touchSync(t, db, a, p, int64(p), TouchOptions{})
		}
		_ = contactsOrder(t, db, c) // counted: 2
		db.recent.installing = func(owner uint64) {
			if owner == b {
				_ = contactsOrder(t, db, a) // 2 + 3 > 4: evicts c or the uncounted b
			}
		}
		if got := contactsOrder(t, db, b); fmt.Sprint(got) != "[101 100]" {
			t.Fatalf("trial %d: b's order %v", trial, got)
		}
		db.recent.installing = nil
		if counted, held := heldEntries(db); counted != held || counted > 4 {
			t.Fatalf("trial %d: the cache counts %d contacts, its owners hold %d (bound 4)", trial, counted, held)
		}
	}
}

// every order agrees with the records and the count with what is held.
func TestSection7_4_RecencyConcurrentOwners(t *testing.T) {
	db := openTest(t, t.TempDir())
	db.recent.limit = 12
	const owners, peers = 8, 6
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				owner := uint64(1 + (w*150+i)%owners)
				peer := uint64(100 + i%peers)
				ch := make(chan AppendResult, 1)
				m := Message{ID: msgID(), From: peer, To: owner, ChatType: ChatPrivate, Content: "m", CreateTime: int64(1000 + i)}
				if err := db.AppendPrivate(m, AppendOptions{}, func(r AppendResult) { ch <- r }); err != nil {
					t.Error(err)
					return
				}
				if r := <-ch; r.Err != nil {
					t.Error(r.Err)
					return
				}
			}
		}()
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				owner := uint64(1 + (r+i)%owners)
				_ = contactsOrder(t, db, owner)
				if _, err := db.RecentCount(owner, 1000); err != nil {
					t.Error(err)
				}
				if err := db.Conversations(owner, 0, func(Contact) bool { return true }); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if counted, held := heldEntries(db); counted != held || counted > 12 {
		t.Fatalf("the cache counts %d contacts, its owners hold %d (bound 12)", counted, held)
	}
	for owner := uint64(1); owner <= owners; owner++ {
		var ids []uint64
		for p := uint64(100); p < 100+peers; p++ {
			if _, err := db.Contact(owner, p); err == nil {
				ids = append(ids, p)
			}
		}
		if got, want := contactsOrder(t, db, owner), recordsOrder(t, db, owner, ids); !slices.Equal(got, want) {
			t.Fatalf("owner %d: order %v, records say %v", owner, got, want)
		}
	}
}

// A contact that moves during a walk is walked once, where it was when
// the walk started: one whose time goes back (a message older than an
// assignment), one not yet walked that moves to the top, in the order by
// last contact and in the order by last message.
func TestSection7_4_RecencyWalkWhileMoving(t *testing.T) {
	const owner = 1
	n := walkSpan + 6
	msg := func(t *testing.T, db *DB, peer uint64, at int64) {
		appendOpts(t, db, Message{ID: msgID(), From: peer, To: owner, ChatType: ChatPrivate, Content: "m", CreateTime: at}, AppendOptions{})
	}
	newest, oldest := uint64(10+n-1), uint64(10)
	for _, tc := range []struct {
		name          string
		conversations bool
		moved         uint64
		move          func(t *testing.T, db *DB)
	}{
		{"contacts, back", false, newest, func(t *testing.T, db *DB) { msg(t, db, newest, 5) }},
		{"contacts, up", false, oldest, func(t *testing.T, db *DB) { touchSync(t, db, owner, oldest, 5000, TouchOptions{}) }},
		{"conversations, up", true, oldest, func(t *testing.T, db *DB) { msg(t, db, oldest, 9000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, t.TempDir())
			touchRange(t, db, owner, 10, n, 1000)
			if tc.conversations {
				for i := range n {
					msg(t, db, uint64(10+i), int64(2000+i))
				}
			}
			seen := map[uint64]int{}
			fn := func(c Contact) bool {
				if len(seen) == 0 {
					tc.move(t, db)
				}
				seen[c.Peer]++
				return true
			}
			var err error
			if tc.conversations {
				err = db.Conversations(owner, 0, fn)
			} else {
				err = db.Contacts(owner, fn)
			}
			if err != nil {
				t.Fatal(err)
			}
			if seen[tc.moved] != 1 || len(seen) != n {
				t.Fatalf("walked %d of %d, the moved one %d times", len(seen), n, seen[tc.moved])
			}
		})
	}
}

// An owner that grew past the bound between its load and its install is
// not kept.
func TestSection7_4_RecencyBoundAtInstall(t *testing.T) {
	db := openTest(t, t.TempDir())
	db.recent.limit = 3
	const owner = 1
	for p := uint64(100); p < 103; p++ {
		touchSync(t, db, owner, p, int64(p), TouchOptions{})
	}
	once := true
	db.recent.installing = func(uint64) {
		if once {
			once = false
			touchSync(t, db, owner, 99, 500, TouchOptions{})
		}
	}
	if got := contactsOrder(t, db, owner); len(got) != 4 {
		t.Fatalf("order: %v", got)
	}
	if counted, held := heldEntries(db); counted != held || counted > 3 {
		t.Fatalf("the cache counts %d contacts, its owners hold %d (bound 3)", counted, held)
	}
}

// touchRange makes peers first, first+1, … (n of them) contacts of owner,
// with last contacts t0, t0+1, ….
func touchRange(t testing.TB, db *DB, owner, first uint64, n int, t0 int64) {
	t.Helper()
	for i := range n {
		touchSync(t, db, owner, first+uint64(i), t0+int64(i), TouchOptions{})
	}
}
