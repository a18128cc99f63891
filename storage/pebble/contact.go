package pebble

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Contacts (PROTOCOL §1.3, §4.6). Besides c|owner|peer, two records keep
// every count a chat list shows cheap to read:
//
//	n|owner(8B)                          -> contacts(uvarint) pending(uvarint)
//	                                        [waiting(uvarint) assigned(uvarint ms)]
//	l|visitor(8B)                        -> uid(8B) of the agent or consultant last talked to
//
// Both are maintained by the committer together with c|, in the same
// batch, so they never disagree with the contact records. c| and n| are
// written when the batch is sealed, once per record however many messages
// of the batch changed it. The orders by last contact and by last message
// are in memory, derived from c| (recency.go); earlier versions kept them
// on disk, under prefixRecent and prefixConvs:
//
//	r|owner(8B)|lastContact(8B)|peer(8B) -> empty (no longer written)
//	o|owner(8B)|lastMessage(8B)|peer(8B) -> empty (no longer written)
const (
	prefixRecent  = "r|"
	prefixCounts  = "n|"
	prefixPartner = "l|"
	prefixConvs   = "o|"
)

// keyConv is an o| key of older versions (recency.go replaced the r| and
// o| indexes; migration recency-memory-v1 deletes them).
func keyConv(owner uint64, t int64, peer uint64) []byte {
	k := make([]byte, 0, 2+24)
	k = append(k, prefixConvs...)
	k = binary.BigEndian.AppendUint64(k, owner)
	k = binary.BigEndian.AppendUint64(k, uint64(t))
	return binary.BigEndian.AppendUint64(k, peer)
}

// Conversations calls fn with owner's private conversations that hold a
// message, newest last message first, starting with those whose last
// message is older than before (0: all), until fn returns false
// (PROTOCOL §7.4). It reads only the records it passes to fn.
func (db *DB) Conversations(owner uint64, before int64, fn func(Contact) bool) error {
	if !db.enter() {
		return ErrClosed
	}
	defer db.leave()
	return db.walkRecency(owner, true, before, fn)
}

func keyCounts(owner uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 10), prefixCounts...), owner)
}

func keyPartner(visitor uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 10), prefixPartner...), visitor)
}

func (t *tx) counts(owner uint64) (ContactCounts, error) {
	if n, ok := t.db.counts[owner]; ok {
		return n, nil
	}
	v, err := t.get(keyCounts(owner))
	if errors.Is(err, ErrNotFound) {
		return ContactCounts{}, nil
	}
	if err != nil {
		return ContactCounts{}, err
	}
	return decodeCounts(v)
}

func decodeCounts(v []byte) (ContactCounts, error) {
	a, w := binary.Uvarint(v)
	if w <= 0 {
		return ContactCounts{}, errCorrupt
	}
	b, w2 := binary.Uvarint(v[w:])
	if w2 <= 0 {
		return ContactCounts{}, errCorrupt
	}
	n := ContactCounts{Contacts: a, Pending: b}
	if v = v[w+w2:]; len(v) == 0 {
		return n, nil // written before waiting and assigned were kept
	}
	if n.Waiting, w = binary.Uvarint(v); w <= 0 {
		return ContactCounts{}, errCorrupt
	}
	at, w2 := binary.Uvarint(v[w:])
	if w2 <= 0 {
		return ContactCounts{}, errCorrupt
	}
	n.Assigned = int64(at)
	return n, nil
}

func encodeCounts(n ContactCounts) []byte {
	b := make([]byte, 0, 4*binary.MaxVarintLen64)
	b = binary.AppendUvarint(binary.AppendUvarint(b, n.Contacts), n.Pending)
	return binary.AppendUvarint(binary.AppendUvarint(b, n.Waiting), uint64(n.Assigned))
}

// putContact writes owner's record of c.Peer, given what it was before
// (found=false: not a contact yet) and owner's counts n as read in this
// batch, and keeps n| in step. It only writes: callers read first.
func (t *tx) putContact(owner uint64, n ContactCounts, old Contact, found bool, c Contact) {
	before := n
	if !found {
		n.Contacts++
	}
	switch {
	case c.Pending && (!found || !old.Pending):
		n.Pending++
	case !c.Pending && found && old.Pending && n.Pending > 0:
		n.Pending--
	}
	switch {
	case c.Waiting && (!found || !old.Waiting):
		n.Waiting++
	case !c.Waiting && found && old.Waiting && n.Waiting > 0:
		n.Waiting--
	}
	t.writeContact(owner, &c)
	if n != before || !found {
		// Counters change only when a contact appears or a flag flips:
		// most messages leave them alone and write nothing here.
		t.db.dirtyCounts[owner] = struct{}{}
	}
	t.db.counts[owner] = n
	t.touched++
}

// seal writes every contact record and counter the batch changed, once
// each, and notes the contacts whose times moved for the recency orders
// (applied once the batch is committed: recency.go).
// It runs after the batch's last operation, before the commit.
func (t *tx) seal() {
	for k, d := range t.db.dirty {
		owner, peer := binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint64(k[8:])
		c := t.db.contacts[k].c
		t.val = appendContact(t.val[:0], &c) // the batch copies it
		t.set(keyContact(owner, peer), t.val)
		if !d.found || d.last != c.LastContact || d.lastMsg != c.LastMessage {
			// The orders follow once the batch is committed (recency.go).
			t.recent = append(t.recent, recencyChange{owner, peer, recencyTimes{c.LastContact, c.LastMessage}})
		}
	}
	for owner := range t.db.dirtyCounts {
		n := t.db.counts[owner]
		t.set(keyCounts(owner), encodeCounts(n))
	}
	clear(t.db.dirty)
	clear(t.db.dirtyCounts)
}

// Touch makes a and b contacts of each other (if they are not) with
// activity at now: an assignment or a registration with a receiver
// (PROTOCOL §1.2, §1.3). done runs on the committer after the commit.
func (db *DB) Touch(a, b uint64, now int64, opts TouchOptions, done func(error)) error {
	if a == b {
		return errors.New("storage: a user is not their own contact")
	}
	if opts.Visitor != 0 && opts.Visitor != a && opts.Visitor != b {
		return errors.New("storage: the visitor of a touch is one of its users")
	}
	return db.submit(op{
		applyFn: func(t *tx) error {
			type side struct {
				owner uint64
				c     Contact
				found bool
				n     ContactCounts
			}
			var sides [2]side
			for i, p := range [2][2]uint64{{a, b}, {b, a}} {
				c, found, err := t.contact(p[0], p[1])
				if err != nil {
					return err
				}
				n, err := t.counts(p[0])
				if err != nil {
					return err
				}
				sides[i] = side{p[0], c, found, n}
			}
			var sv serve
			if opts.Visitor != 0 {
				partner := a
				if partner == opts.Visitor {
					partner = b
				}
				var err error
				if sv, err = t.readServe(opts.Visitor, partner); err != nil {
					return err
				}
			}
			// All reads done; from here on only writes.
			for _, s := range sides {
				c := s.c
				c.LastContact = max(c.LastContact, now)
				if opts.Visitor != 0 && s.owner != opts.Visitor {
					if sv.changed() {
						c.Waiting = true // a new partner: assigned, unanswered
					}
					if opts.Assigned {
						s.n.Assigned = max(s.n.Assigned, now)
					}
				}
				t.putContact(s.owner, s.n, s.c, s.found, c)
			}
			sv.write(t)
			return nil
		},
		doneFn: done,
	}, opOverhead)
}

// serve is what making a visitor's partner changes: the previous partner,
// if another, stops having the visitor waiting.
type serve struct {
	visitor, partner uint64
	old              uint64 // previous partner, 0 if none
	oldC             Contact
	oldFound         bool
	oldN             ContactCounts
}

func (s *serve) changed() bool { return s.visitor != 0 && s.old != s.partner }

// readServe reads what writing partner as visitor's partner changes.
func (t *tx) readServe(visitor, partner uint64) (serve, error) {
	s := serve{visitor: visitor, partner: partner}
	old, err := t.partner(visitor)
	if err != nil || old == partner || old == 0 {
		s.old = old
		return s, err
	}
	s.old = old
	if s.oldC, s.oldFound, err = t.contact(old, visitor); err != nil {
		return serve{}, err
	}
	if s.oldN, err = t.counts(old); err != nil {
		return serve{}, err
	}
	return s, nil
}

// write records the partner and lets the previous one go. Only writes.
func (s *serve) write(t *tx) {
	if !s.changed() {
		return
	}
	if s.old != 0 && s.oldFound && s.oldC.Waiting {
		c := s.oldC
		c.Waiting = false
		t.putContact(s.old, s.oldN, s.oldC, true, c)
	}
	t.set(keyPartner(s.visitor), binary.BigEndian.AppendUint64(nil, s.partner))
	t.db.partners[s.visitor] = s.partner
}

// partner returns visitor's partner (0: none) through the committer's
// cache, which l| records are only written through (serve.write).
func (t *tx) partner(visitor uint64) (uint64, error) {
	if p, ok := t.db.partners[visitor]; ok {
		return p, nil
	}
	v, err := t.get(keyPartner(visitor))
	if errors.Is(err, ErrNotFound) {
		t.db.partners[visitor] = 0
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, errCorrupt
	}
	p := binary.BigEndian.Uint64(v)
	t.db.partners[visitor] = p
	return p, nil
}

// MarkRead marks the whole conversation of owner with peer read (PROTOCOL
// §1.3 op 1 with isConcurrent, op 2): unread zero, the read seq at the
// conversation's last. done runs on the committer after the commit.
func (db *DB) MarkRead(owner, peer uint64, done func(error)) error {
	return db.submit(op{
		applyFn: func(t *tx) error { return t.markRead(owner, peer, math.MaxUint64) },
		doneFn:  done,
	}, opOverhead)
}

// markRead marks owner's conversation with peer read up to seq upTo
// (MaxUint64: all of it). Unread messages are always the newest ones from
// peer, recalled ones aside (a read marks a prefix read, and a new message
// is the newest), so the unread left are those from peer after upTo,
// counted from the conversation's end back to upTo and at most the unread
// count before: the cost is bounded by what stays unread. The read seq
// never decreases.
func (t *tx) markRead(owner, peer uint64, upTo uint64) error {
	c, found, err := t.contact(owner, peer)
	if err != nil || !found {
		return err
	}
	conv := privateConv(owner, peer)
	st, err := t.conv(conv)
	if err != nil {
		return err
	}
	n := c
	if upTo >= st.seq {
		n.Unread, n.ReadSeq = 0, max(c.ReadSeq, st.seq)
	} else {
		if upTo <= c.ReadSeq && c.ReadSeq != 0 {
			return nil // read that far already
		}
		left, err := t.countFrom(conv, peer, upTo, st.seq, c.Unread, 0)
		if err != nil {
			return err
		}
		n.Unread, n.ReadSeq = left, max(c.ReadSeq, upTo)
	}
	if n != c {
		t.writeContact(owner, &n)
	}
	return nil
}

// countFrom counts the messages of conv from sender with seq in (lo, hi],
// recalled ones and seq skip aside, scanning from hi down and stopping at
// limit.
func (t *tx) countFrom(conv convKey, sender, lo, hi, limit, skip uint64) (uint64, error) {
	if limit == 0 || hi <= lo {
		return 0, nil
	}
	var n uint64
	err := t.walkBack(conv, lo, hi, skip, func(from uint64, recalled bool) bool {
		if from == sender && !recalled {
			n++
		}
		return n < limit
	})
	return n, err
}

// walkBack calls fn with the sender and recalled flag of conv's messages
// with seq in (lo, hi] but skip, newest first, while fn returns true.
func (t *tx) walkBack(conv convKey, lo, hi, skip uint64, fn func(from uint64, recalled bool) bool) error {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: keyHistory(conv, lo+1), UpperBound: keyHistory(conv, min(hi, math.MaxUint64-1)+1)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		k := it.Key()
		if binary.BigEndian.Uint64(k[len(k)-8:]) == skip {
			continue
		}
		from, recalled, err := recordSender(t.lb, it.Value())
		if err != nil {
			return err
		}
		if !fn(from, recalled) {
			break
		}
	}
	return it.Error()
}

// Counts returns owner's contact totals.
func (db *DB) Counts(owner uint64) (ContactCounts, error) {
	if !db.enter() {
		return ContactCounts{}, ErrClosed
	}
	defer db.leave()
	v, err := db.get(keyCounts(owner))
	if errors.Is(err, ErrNotFound) {
		return ContactCounts{}, nil
	}
	if err != nil {
		return ContactCounts{}, err
	}
	return decodeCounts(v)
}

// RecentCount counts owner's contacts with activity at or after since,
// from the order by last contact (recency.go).
func (db *DB) RecentCount(owner uint64, since int64) (int, error) {
	if !db.enter() {
		return 0, ErrClosed
	}
	defer db.leave()
	return db.recentCount(owner, since)
}

// Contacts calls fn with owner's contacts, most recent first, until fn
// returns false. Each record is read as the walk reaches it.
func (db *DB) Contacts(owner uint64, fn func(Contact) bool) error {
	if !db.enter() {
		return ErrClosed
	}
	defer db.leave()
	return db.walkRecency(owner, false, 0, fn)
}

// LastPartner returns the agent or consultant visitor last talked to, or 0.
func (db *DB) LastPartner(visitor uint64) (uint64, error) {
	if !db.enter() {
		return 0, ErrClosed
	}
	defer db.leave()
	v, err := db.get(keyPartner(visitor))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil || len(v) != 8 {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}

// LockAssignment takes the assignment lock (storage.Store): one process
// holds a Pebble directory, so a mutex is the whole store's lock.
func (db *DB) LockAssignment() (unlock func(), err error) {
	db.assignMu.Lock()
	return db.assignMu.Unlock, nil
}
