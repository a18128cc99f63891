package pebble

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Read cursors (PROTOCOL §7.5). A private conversation's is the owner's
// contact record (ReadSeq, with the unread count it implies); a group
// member's is its own record:
//
//	G|uid(8B)|gid(8B) -> readSeq(uvarint)
const prefixGroupRead = "G|"

func keyGroupRead(uid, gid uint64) []byte { return key2(prefixGroupRead, uid, gid) }

// Read marks uid's conversation (with peer, or group peer when group is
// set) read up to seq upTo (PROTOCOL §7.5): the read cursor never
// decreases, unread follows it, and the offline entries up to upTo go.
// done runs on the committer after the commit.
func (db *DB) Read(uid, peer uint64, group bool, upTo uint64, done func(ReadResult, error)) error {
	var res ReadResult
	return db.submit(op{
		applyFn: func(t *tx) error {
			res = ReadResult{}
			if group {
				old, err := t.groupReadSeq(uid, peer)
				if err != nil {
					return err
				}
				res.ReadSeq = max(old, upTo)
				if res.Advanced = upTo > old; res.Advanced {
					t.set(keyGroupRead(uid, peer), binary.AppendUvarint(nil, upTo))
				}
			} else {
				before, found, err := t.contact(uid, peer)
				if err != nil {
					return err
				}
				if found {
					if err := t.markRead(uid, peer, upTo); err != nil {
						return err
					}
					after, _, err := t.contact(uid, peer)
					if err != nil {
						return err
					}
					res.ReadSeq, res.Advanced = after.ReadSeq, after.ReadSeq > before.ReadSeq
				}
			}
			return t.ack(uid, peer, group, upTo)
		},
		doneFn: func(err error) { done(res, err) },
	}, opOverhead)
}

func (t *tx) groupReadSeq(uid, gid uint64) (uint64, error) {
	return decodeReadSeq(t.get(keyGroupRead(uid, gid)))
}

// GroupReadSeq returns uid's read cursor in group gid (0: none).
func (db *DB) GroupReadSeq(uid, gid uint64) (uint64, error) {
	if !db.enter() {
		return 0, ErrClosed
	}
	defer db.leave()
	return decodeReadSeq(db.get(keyGroupRead(uid, gid)))
}

func decodeReadSeq(v []byte, err error) (uint64, error) {
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, w := binary.Uvarint(v)
	if w <= 0 {
		return 0, errCorrupt
	}
	return n, nil
}

// GroupUnread counts the messages of group gid after readSeq up to last
// that are not uid's and not recalled (PROTOCOL §7.4, §7.5). It reads at
// most the newest groupUnreadWalk of them; past that, the older ones count
// as unread without being read.
func (db *DB) GroupUnread(uid, gid, readSeq, last uint64) (uint64, error) {
	if !db.enter() {
		return 0, ErrClosed
	}
	defer db.leave()
	if last <= readSeq {
		return 0, nil
	}
	conv := groupConv(gid)
	lo := readSeq
	if last-readSeq > groupUnreadWalk {
		lo = last - groupUnreadWalk
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: keyHistory(conv, lo+1), UpperBound: keyHistory(conv, min(last, math.MaxUint64-1)+1)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := lo - readSeq // beyond the walk: counted unread
	for ok := it.First(); ok; ok = it.Next() {
		from, recalled, err := recordSender(db.ldb, it.Value())
		if err != nil {
			return 0, err
		}
		if from != uid && !recalled {
			n++
		}
	}
	return n, it.Error()
}
