package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Migrations that rewrite records run once, at Open, and leave a marker:
//
//	V|<name> -> empty: the migration named is done
const prefixMigrated = "V|"

// migrations run in order; each is idempotent until its marker is set.
var migrations = []struct {
	name string
	run  func(*DB) (int, error)
}{
	{"contacts-v2", (*DB).migrateContactsV2},
	{"waiting-v1", (*DB).migrateWaiting},
	{"recent-v1", (*DB).migrateRecent},
	{"recency-memory-v1", (*DB).migrateRecencyMemory},
}

func (db *DB) migrate() error {
	for _, m := range migrations {
		key := append([]byte(prefixMigrated), m.name...)
		if _, err := getCopy(db.pdb, key); err == nil {
			continue
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		n, err := m.run(db)
		if err != nil {
			return fmt.Errorf("storage: migration %s: %w", m.name, err)
		}
		// Sync: the records it rewrote are durable with the marker.
		if err := db.pdb.Set(key, nil, pebble.Sync); err != nil {
			return err
		}
		db.log.Info("storage migrated", "migration", m.name, "records", n)
	}
	return nil
}

// migrateContactsV2 rewrites the contact records of release a9f4499 (v1)
// that count unread messages: v1 counted a recalled message as unread
// forever. Unread messages are the owner's newest ones from the peer, so
// the recount walks back from the conversation's end over the last
// `unread` messages of the peer, leaves the recalled ones out, and records
// the read seq just before the oldest of them. Records with nothing unread
// stay v1 (their read seq is unknown, which markRead handles).
func (db *DB) migrateContactsV2() (int, error) {
	return db.rewriteContacts(func(b *pebble.Batch, owner uint64, v []byte, c *Contact) (bool, error) {
		if v[0] != contactRecordV1 || c.Unread == 0 {
			return false, nil
		}
		var err error
		c.Unread, c.ReadSeq, err = db.recountUnread(privateConv(owner, c.Peer), c.Peer, c.Unread)
		return err == nil, err
	})
}

// rewriteContacts calls fix with every contact record (its raw value and
// decoded form) and writes back, in batches, those fix changed and
// reports true for; fix may add its own writes to b. It returns how many
// it rewrote. Undecodable records are left alone.
func (db *DB) rewriteContacts(fix func(b *pebble.Batch, owner uint64, v []byte, c *Contact) (bool, error)) (int, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixContact), UpperBound: []byte("c}")})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := db.pdb.NewBatch()
	defer func() { _ = b.Close() }()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 2+16 || len(v) == 0 {
			continue
		}
		owner, peer := binary.BigEndian.Uint64(k[2:]), binary.BigEndian.Uint64(k[10:])
		c, err := decodeContact(peer, v)
		if err != nil {
			continue
		}
		changed, err := fix(b, owner, v, &c)
		if err != nil {
			return n, err
		}
		if !changed {
			continue
		}
		_ = b.Set(append([]byte(nil), k...), encodeContact(&c), nil)
		if n++; b.Len() > 1<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return n, err
			}
			b.Reset()
		}
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	return n, b.Commit(pebble.NoSync)
}

// recountUnread walks conv back from its end over the last unread messages
// of peer and returns how many of them are not recalled, and the seq just
// before the oldest.
func (db *DB) recountUnread(conv convKey, peer, unread uint64) (left, readSeq uint64, err error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: keyHistory(conv, 0), UpperBound: keyHistory(conv, 1<<63)})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	var seen uint64
	for ok := it.Last(); ok && seen < unread; ok = it.Prev() {
		from, recalled, err := recordSender(db.ldb, it.Value())
		if err != nil {
			return 0, 0, err
		}
		if from != peer {
			continue
		}
		seen++
		if !recalled {
			left++
		}
		k := it.Key()
		readSeq = binary.BigEndian.Uint64(k[len(k)-8:]) - 1
	}
	return left, readSeq, it.Error()
}

// migrateWaiting sets Contact.Waiting and ContactCounts.Waiting, which
// earlier releases did not keep: for each visitor's partner (l|), the
// partner's record of the visitor is waiting if the visitor wrote last
// (Pending) or nobody wrote yet (assigned, unanswered).
func (db *DB) migrateWaiting() (int, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixPartner), UpperBound: []byte("l}")})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := db.pdb.NewBatch()
	defer func() { _ = b.Close() }()
	waiting := make(map[uint64]uint64) // partner -> visitors waiting
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 2+8 || len(v) != 8 {
			continue
		}
		visitor, partner := binary.BigEndian.Uint64(k[2:]), binary.BigEndian.Uint64(v)
		c, err := db.Contact(partner, visitor)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if !c.Pending {
			empty, err := db.convEmpty(privateConv(partner, visitor))
			if err != nil {
				return n, err
			}
			if !empty {
				continue // the partner wrote last: answered
			}
		}
		c.Waiting = true
		_ = b.Set(keyContact(partner, visitor), encodeContact(&c), nil)
		waiting[partner]++
		n++
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	for partner, w := range waiting {
		c, err := db.Counts(partner)
		if err != nil {
			return n, err
		}
		c.Waiting = w
		_ = b.Set(keyCounts(partner), encodeCounts(c), nil)
	}
	return n, b.Commit(pebble.NoSync)
}

// convEmpty reports whether conv holds no message.
func (db *DB) convEmpty(conv convKey) (bool, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: keyHistory(conv, 0), UpperBound: keyHistory(conv, math.MaxUint64)})
	if err != nil {
		return false, err
	}
	defer it.Close()
	return !it.First(), it.Error()
}

// migrateRecent gives contact records without a last message (all records
// of earlier versions) the time and seq of their conversation's newest
// message, which orders conversations (PROTOCOL §7.4). One seek per
// contact.
func (db *DB) migrateRecent() (int, error) {
	return db.rewriteContacts(func(b *pebble.Batch, owner uint64, _ []byte, c *Contact) (bool, error) {
		if c.LastMessage != 0 {
			return false, nil
		}
		conv := privateConv(owner, c.Peer)
		last, err := db.lastSeq(conv)
		if err != nil || last == 0 {
			return false, err
		}
		at, err := db.timeAt(conv, last)
		if err != nil {
			return false, err
		}
		c.LastMessage, c.LastSeq = at, last
		return true, nil
	})
}

// migrateRecencyMemory deletes the r| and o| indexes of earlier versions:
// the recency orders are now derived in memory from the c| records
// (recency.go), and the keys would only cost compactions.
func (db *DB) migrateRecencyMemory() (int, error) {
	b := db.pdb.NewBatch()
	defer func() { _ = b.Close() }()
	for _, p := range []string{prefixRecent, prefixConvs} {
		upper := []byte(p)
		upper[len(upper)-1]++
		if err := b.DeleteRange([]byte(p), upper, nil); err != nil {
			return 0, err
		}
	}
	return 0, b.Commit(pebble.NoSync)
}
