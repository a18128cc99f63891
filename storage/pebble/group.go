package pebble

import (
	"encoding/binary"
	"errors"
	"github.com/imgate/imgate/storage"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Groups (PROTOCOL §5). A group's protocol id maps to a dense internal gid,
// like users; membership is kept from both sides:
//
//	I|<group id>            -> gid(8B)
//	M|gid(8B)               -> members(uvarint) | group id
//	m|gid(8B)|uid(8B)       -> joinedAt ms(8B)
//	g|uid(8B)|gid(8B)       -> empty
//	Q|uid(8B)|gid(8B)|seq(8B) -> empty: group offline queue; the message is h|groupConv(gid)|seq
//
// A group's conversation key is 0xFF×8 | gid: no private key starts so.
const (
	prefixGroupID    = "I|"
	prefixGroupMeta  = "M|"
	prefixGroupMeta2 = "M}" // '|'+1: exclusive upper bound of M|
	prefixMember     = "m|"
	prefixUserGroup  = "g|"
	prefixGroupQueue = "Q|"
)

func groupConv(gid uint64) convKey {
	var k convKey
	binary.BigEndian.PutUint64(k[:8], math.MaxUint64)
	binary.BigEndian.PutUint64(k[8:], gid)
	return k
}

func key2(prefix string, a, b uint64) []byte {
	k := make([]byte, 0, len(prefix)+16)
	k = append(k, prefix...)
	k = binary.BigEndian.AppendUint64(k, a)
	return binary.BigEndian.AppendUint64(k, b)
}

func keyGroupQueue(uid, gid, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(key2(prefixGroupQueue, uid, gid), seq)
}

func keyGroupMeta(gid uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixGroupMeta), gid)
}

func (db *DB) lastGID() (uint64, error) {
	return lastKey(db.pdb, []byte(prefixGroupMeta), []byte(prefixGroupMeta2), len(prefixGroupMeta)+8, "gid")
}

// GroupByID returns the gid of a group id, or ErrNotFound.
func (db *DB) GroupByID(id string) (uint64, error) {
	if !db.enter() {
		return 0, ErrClosed
	}
	defer db.leave()
	if gid, ok := db.groups.gid(id); ok {
		return gid, nil
	}
	v, err := db.get(append([]byte(prefixGroupID), id...))
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, errCorrupt
	}
	gid := binary.BigEndian.Uint64(v)
	db.groups.putGID(id, gid)
	return gid, nil
}

// Join adds uid to the group with protocol id groupID, creating the group
// on first join, unless it already has maxMembers members (JoinFull).
// Joining twice is a no-op that succeeds. done runs on the committer.
func (db *DB) Join(groupID string, uid uint64, now int64, maxMembers int, done func(gid uint64, result int, err error)) error {
	var gid uint64
	var result int
	return db.submit(op{
		applyFn: func(t *tx) error {
			gid, result = 0, JoinOK
			v, err := t.get(append([]byte(prefixGroupID), groupID...))
			var members uint64
			switch {
			case err == nil && len(v) == 8:
				gid = binary.BigEndian.Uint64(v)
				meta, err := t.get(keyGroupMeta(gid))
				if err != nil {
					return err
				}
				members, _ = binary.Uvarint(meta)
				if _, err := t.get(key2(prefixMember, gid, uid)); err == nil {
					return nil // already a member
				} else if !errors.Is(err, ErrNotFound) {
					return err
				}
			case errors.Is(err, ErrNotFound):
				if maxMembers <= 0 {
					result = JoinFull // no room for a first member: no group
					return nil
				}
				t.db.lastGroup++
				gid = t.db.lastGroup
				t.set(append([]byte(prefixGroupID), groupID...), binary.BigEndian.AppendUint64(nil, gid))
			case err != nil:
				return err
			default:
				return errCorrupt
			}
			if members >= uint64(maxMembers) {
				result = JoinFull
				return nil
			}
			t.set(keyGroupMeta(gid), append(binary.AppendUvarint(nil, members+1), groupID...))
			t.set(key2(prefixMember, gid, uid), binary.BigEndian.AppendUint64(nil, uint64(now)))
			t.set(key2(prefixUserGroup, uid, gid), nil)
			t.db.batchMembers[gid] = struct{}{}
			return nil
		},
		doneFn: func(err error) {
			if err == nil && gid != 0 {
				db.groups.invalidate(gid)
				db.memberVer.bump(gid)
			}
			done(gid, result, err)
		},
	}, opOverhead)
}

// Leave removes uid from group gid; leaving a group one is not in is a
// no-op (left is false). Queued messages of the group for uid are dropped
// with it. done runs on the committer after the commit.
func (db *DB) Leave(gid, uid uint64, done func(left bool, err error)) error {
	left := false
	return db.submit(op{
		applyFn: func(t *tx) error {
			left = false
			if _, err := t.get(key2(prefixMember, gid, uid)); errors.Is(err, ErrNotFound) {
				return nil
			} else if err != nil {
				return err
			}
			meta, err := t.get(keyGroupMeta(gid))
			if err != nil {
				return err
			}
			members, w := binary.Uvarint(meta)
			if w <= 0 || members == 0 {
				return errCorrupt
			}
			t.set(keyGroupMeta(gid), append(binary.AppendUvarint(nil, members-1), meta[w:]...))
			t.del(key2(prefixMember, gid, uid))
			t.del(key2(prefixUserGroup, uid, gid))
			t.del(keyGroupRead(uid, gid))
			t.touched++
			t.db.batchMembers[gid] = struct{}{}
			left = true
			return t.b.DeleteRange(key2(prefixGroupQueue, uid, gid), key2(prefixGroupQueue, uid, gid+1), nil)
		},
		doneFn: func(err error) {
			if err == nil {
				db.groups.invalidate(gid)
				db.memberVer.bump(gid)
			}
			done(left && err == nil, err)
		},
	}, opOverhead)
}

// IsMember reports whether uid is a member of gid.
func (db *DB) IsMember(gid, uid uint64) (bool, error) {
	if !db.enter() {
		return false, ErrClosed
	}
	defer db.leave()
	_, err := db.get(key2(prefixMember, gid, uid))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Members returns the uids of gid's members in uid order. The slice is
// shared: callers must not modify it.
func (db *DB) Members(gid uint64) ([]uint64, error) {
	if !db.enter() {
		return nil, ErrClosed
	}
	defer db.leave()
	m, gen, ok := db.groups.memberList(gid)
	if ok {
		return m, nil
	}
	m, err := scanSecond(db.pdb, prefixMember, gid)
	if err != nil {
		return nil, err
	}
	db.groups.fill(gid, m, gen)
	return m, nil
}

// UserGroups returns the gids of uid's groups in gid order.
func (db *DB) UserGroups(uid uint64) ([]uint64, error) {
	if !db.enter() {
		return nil, ErrClosed
	}
	defer db.leave()
	return scanSecond(db.pdb, prefixUserGroup, uid)
}

// scanSecond lists the second id of every prefix|a|b key.
func scanSecond(r reader, prefix string, a uint64) ([]uint64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: key2(prefix, a, 0), UpperBound: key2(prefix, a+1, 0)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []uint64
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		out = append(out, binary.BigEndian.Uint64(k[len(k)-8:]))
	}
	return out, it.Error()
}

// AppendGroup stores a group message durably: history, idempotency record,
// the group queue entry of every uid in offline, and a pending record of
// the members in online (lazy.go), each of whose pushes is settled with
// res.Delivery.Member(i).Settle, i its index in online.
// m.Group must be set and m.To zero; online and offline are in ascending
// uid order and do not overlap.
// done runs on the committer.
//
// ver is MembershipVersion(m.Group) read before the members were: when a
// join or leave committed since, or is in the batch, the members are read
// again inside the batch, so a member who joined meanwhile gets a queue
// entry and one who left none.
func (db *DB) AppendGroup(m Message, online, offline []uint64, ver uint64, opts AppendOptions, done func(AppendResult)) error {
	var res AppendResult
	return db.submit(op{
		applyFn: func(t *tx) error {
			res = AppendResult{}
			conv := groupConv(m.Group)
			offline := offline
			if _, changed := t.db.batchMembers[m.Group]; changed || db.memberVer.get(m.Group) != ver {
				var err error
				if offline, err = t.regroup(m.Group, m.From, online, offline); err != nil {
					return err
				}
			}
			if opts.ClientID {
				if dup, ok, err := t.duplicate(m.From, m.ID); err != nil || ok {
					res = dup
					return err
				}
			}
			st, err := t.conv(conv)
			if err != nil {
				return err
			}
			msg := m
			// A group ack is always 10000: the record is not marked queued.
			t.appendCore(conv, st, &msg, false, opts.ClientID)
			for _, uid := range offline {
				t.set(keyGroupQueue(uid, msg.Group, msg.Seq), nil)
				t.queued(uid, msg.Group, true)
			}
			res = AppendResult{Msg: msg}
			if len(online) > 0 {
				p := &pending{db: t.db, key: keyPending(msg.Group, msg.Seq), group: true, gid: msg.Group, seq: msg.Seq, members: online}
				p.states = make([]atomic.Uint32, len(online))
				p.left.Store(int32(len(online)))
				t.set(p.key, encodeUIDs(nil, online))
				t.pend = append(t.pend, p)
				res.Delivery = storage.NewDelivery(p, 0)
			}
			return nil
		},
		doneFn: func(err error) {
			res.Err = err
			done(res)
		},
	}, messageCost(&m)+8*(len(online)+len(offline)))
}

// GroupHistory is History for a group conversation.
func (db *DB) GroupHistory(gid uint64, q HistoryQuery) ([]Message, bool, error) {
	if !db.enter() {
		return nil, false, ErrClosed
	}
	defer db.leave()
	return db.history(groupConv(gid), q)
}

// regroup reads gid's members inside the batch and returns the offline
// list to queue for: the members in neither online nor offline (joined
// since they were read) are added, and the members of offline no longer
// in the group (left since) dropped. from, the sender, is nobody's
// delivery. online stays as it is: queueing a push no connection wrote
// checks membership then (queueGroup).
func (t *tx) regroup(gid, from uint64, online, offline []uint64) ([]uint64, error) {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: key2(prefixMember, gid, 0), UpperBound: key2(prefixMember, gid+1, 0)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	known := make(map[uint64]bool, len(online)+len(offline))
	for _, u := range online {
		known[u] = true
	}
	for _, u := range offline {
		known[u] = false
	}
	var out []uint64
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		uid := binary.BigEndian.Uint64(k[len(k)-8:])
		on, seen := known[uid]
		switch {
		case uid == from, seen && on:
		default: // offline when read, or joined since
			out = append(out, uid)
		}
	}
	return out, it.Error()
}

// membershipVersions counts the committed joins and leaves of each group,
// so that a group message can tell whether the members it was given are
// still the group's (AppendGroup).
type membershipVersions struct {
	mu sync.Mutex
	m  map[uint64]uint64
}

func (v *membershipVersions) get(gid uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[gid]
}

func (v *membershipVersions) bump(gid uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[uint64]uint64)
	}
	v.m[gid]++
}

// MembershipVersion is the number of joins and leaves of gid committed
// since the store opened: read it before Members, and give it to
// AppendGroup.
func (db *DB) MembershipVersion(gid uint64) uint64 { return db.memberVer.get(gid) }
