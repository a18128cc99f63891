package postgres

import (
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Contacts (PROTOCOL §1.3, §4.3, §7.4). A contact is a row of contacts,
// one per direction of a pair; the owner's totals are its contact_counts
// row, moved by deltas in the transaction that changes the contacts, so
// they are never counted. A visitor's partner is its partners row.
//
// A write of a contact reads it FOR UPDATE first (latest committed
// version, locked until the batch commits, whichever node writes it), and
// computes the new record and the totals' deltas from it exactly as
// storage/pebble does (putContact). A contact not found is created by a
// plain INSERT: if another node created it meanwhile, the INSERT fails,
// the batch runs again one operation per transaction, and the operation
// finds it then. Partners are read and written the same way.

// contactArray is the SQL of a contact row as a bigint array (scanned by
// contactFrom); prefix qualifies the columns.
func contactArray(prefix string) string {
	return fmt.Sprintf(`ARRAY[%[1]sunread, %[1]spending::int, %[1]swaiting::int, %[1]slast_contact, %[1]sread_seq, %[1]slast_message, %[1]slast_seq]::bigint[]`, prefix)
}

// contactState is a contact as read before a write: found false when the
// two are not contacts yet.
type contactState struct {
	found bool
	c     storage.Contact
}

// contactFrom decodes contactArray's array; nil is a contact not found.
func contactFrom(peer uint64, a []int64) (contactState, error) {
	if a == nil {
		return contactState{c: storage.Contact{Peer: peer}}, nil
	}
	if len(a) != 7 {
		return contactState{}, fmt.Errorf("postgres: contact array of %d fields", len(a))
	}
	return contactState{found: true, c: storage.Contact{
		Peer: peer, Unread: uint64(a[0]), Pending: a[1] != 0, Waiting: a[2] != 0, LastContact: a[3],
		ReadSeq: uint64(a[4]), LastMessage: a[5], LastSeq: uint64(a[6]),
	}}, nil
}

// SQL of contact writes.
const (
	sqlUpdateContact = `UPDATE contacts SET unread = $3, pending = $4, waiting = $5, last_contact = $6,
		read_seq = $7, last_message = $8, last_seq = $9 WHERE owner = $1 AND peer = $2`
	sqlInsertContact = `INSERT INTO contacts (owner, peer, unread, pending, waiting, last_contact, read_seq, last_message, last_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	// sqlCountDeltas moves an owner's totals; a total never goes below
	// zero (as storage/pebble's putContact).
	sqlCountDeltas = `INSERT INTO contact_counts AS n (owner, contacts, pending, waiting, assigned)
		VALUES ($1, greatest($2::bigint, 0), greatest($3::bigint, 0), greatest($4::bigint, 0), $5)
		ON CONFLICT (owner) DO UPDATE SET contacts = greatest(n.contacts + $2, 0), pending = greatest(n.pending + $3, 0),
			waiting = greatest(n.waiting + $4, 0), assigned = greatest(n.assigned, EXCLUDED.assigned)`
	sqlInsertPartner = `INSERT INTO partners (visitor, partner) VALUES ($1, $2)`
	sqlUpdatePartner = `UPDATE partners SET partner = $2 WHERE visitor = $1`
)

// countDelta is what one operation moves an owner's totals by.
type countDelta struct {
	owner                      uint64
	contacts, pending, waiting int64
	assigned                   int64 // the new last-assigned time; 0: unchanged
	touched                    bool  // a contact appeared: the row is written even with no delta
}

// writes gathers an operation's writes of contacts, totals and partners,
// computed in Go from what it read, and sends them in one round trip.
type writes struct {
	q      pgx.Batch
	deltas []countDelta
}

func (w *writes) delta(owner uint64) *countDelta {
	for i := range w.deltas {
		if w.deltas[i].owner == owner {
			return &w.deltas[i]
		}
	}
	w.deltas = append(w.deltas, countDelta{owner: owner})
	return &w.deltas[len(w.deltas)-1]
}

// contact writes owner's record c, given what it was (old), and moves
// owner's totals as storage/pebble's putContact does.
func (w *writes) contact(owner uint64, old contactState, c storage.Contact) {
	d := w.delta(owner)
	if !old.found {
		d.contacts++
		d.touched = true
	}
	switch {
	case c.Pending && (!old.found || !old.c.Pending):
		d.pending++
	case !c.Pending && old.found && old.c.Pending:
		d.pending--
	}
	switch {
	case c.Waiting && (!old.found || !old.c.Waiting):
		d.waiting++
	case !c.Waiting && old.found && old.c.Waiting:
		d.waiting--
	}
	args := []any{i64(owner), i64(c.Peer), i64(c.Unread), c.Pending, c.Waiting, c.LastContact, i64(c.ReadSeq), c.LastMessage, i64(c.LastSeq)}
	switch {
	case !old.found:
		w.q.Queue(sqlInsertContact, args...)
	case old.c != c:
		w.q.Queue(sqlUpdateContact, args...)
	}
}

// assigned raises owner's last-assigned time to at.
func (w *writes) assigned(owner uint64, at int64) {
	d := w.delta(owner)
	d.assigned = max(d.assigned, at)
}

// send queues the totals and sends everything gathered.
func (w *writes) send(b *batch) error {
	for _, d := range w.deltas {
		if d.touched || d.contacts != 0 || d.pending != 0 || d.waiting != 0 || d.assigned != 0 {
			w.q.Queue(sqlCountDeltas, i64(d.owner), d.contacts, d.pending, d.waiting, d.assigned)
		}
	}
	if w.q.Len() == 0 {
		return nil
	}
	return b.tx.SendBatch(b.ctx, &w.q).Close()
}

// serve is what making partner visitor's partner changes (storage/pebble's
// serve): the previous partner, if another, stops having visitor waiting.
type serve struct {
	visitor, partner uint64
	found            bool         // visitor had a partners row
	old              uint64       // the previous partner, 0: none
	oldC             contactState // old's record of visitor, when old is another
}

func (s *serve) changed() bool { return s.visitor != 0 && s.old != s.partner }

// write records the partner and lets the previous one go.
func (s *serve) write(w *writes) {
	if !s.changed() {
		return
	}
	if s.old != 0 && s.oldC.found && s.oldC.c.Waiting {
		c := s.oldC.c
		c.Waiting = false
		w.contact(s.old, s.oldC, c)
	}
	if s.found {
		w.q.Queue(sqlUpdatePartner, i64(s.visitor), i64(s.partner))
	} else {
		w.q.Queue(sqlInsertPartner, i64(s.visitor), i64(s.partner))
	}
}

// refreshOld re-reads the previous partner's record of the visitor when
// the statement that locked the visitor's partners row found none. That
// statement may have waited for the lock while another gateway changed
// the partner: it then sees the partners row as committed, but keeps its
// snapshot for everything else, which misses a contact record inserted
// by that change (READ COMMITTED). A new statement sees it; the partners
// lock is held, so nothing moves meanwhile. Without this, two gateways
// assigning one visitor at once could both leave it waiting for them.
func refreshOld(b *batch, visitor, partner uint64, old *int64, oldC []int64) ([]int64, error) {
	if visitor == 0 || old == nil || *old == 0 || uint64(*old) == partner || oldC != nil {
		return oldC, nil
	}
	var a []int64
	err := b.tx.QueryRow(b.ctx, sqlOldPartnerRecord, *old, i64(visitor)).Scan(&a)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return a, err
}

var sqlOldPartnerRecord = `SELECT ` + contactArray("") + ` FROM contacts WHERE owner = $1 AND peer = $2 FOR UPDATE`

// serveFrom builds a serve from what sqlLockPair (or the append) read:
// the visitor's partner (nil: no row) and the previous partner's record of
// the visitor (nil: none, or the partner is not changing).
func serveFrom(visitor, partner uint64, old *int64, oldC []int64) (serve, error) {
	s := serve{visitor: visitor, partner: partner}
	if visitor == 0 {
		return s, nil
	}
	if old != nil {
		s.found, s.old = true, uint64(*old)
	}
	var err error
	if s.old != 0 && s.old != partner {
		s.oldC, err = contactFrom(visitor, oldC)
	}
	return s, err
}

// The locks of a pair's contacts and of a visitor's partner, read in the
// statement that takes them. $1, $2: the pair (the first one's record of
// the second is kt, the other kf), $3: the visitor (0: none), $4: the
// visitor's new partner. ko is the previous partner's record of the
// visitor, when the partner changes.
const lockPairCTEs = `kt AS (
		SELECT ` + "%[1]s" + ` FROM contacts WHERE owner = $1::bigint AND peer = $2::bigint FOR UPDATE
	), kf AS (
		SELECT ` + "%[1]s" + ` FROM contacts WHERE owner = $2 AND peer = $1 FOR UPDATE
	), pt AS (
		SELECT partner FROM partners WHERE visitor = $3::bigint AND $3 <> 0 FOR UPDATE
	), ko AS (
		SELECT ` + "%[2]s" + ` FROM contacts k JOIN pt ON k.owner = pt.partner
		WHERE k.peer = $3 AND pt.partner <> $4::bigint FOR UPDATE OF k
	)`

var sqlLockPair = `WITH ` + fmt.Sprintf(lockPairCTEs, contactArray(""), contactArray("k.")) + `
	SELECT (SELECT * FROM kt), (SELECT * FROM kf), (SELECT partner FROM pt), (SELECT * FROM ko)`

// Touch makes a and b contacts of each other (if they are not) with
// activity at now (PROTOCOL §1.2, §1.3). done runs on the committer after
// the commit.
func (db *DB) Touch(a, b uint64, now int64, opts storage.TouchOptions, done func(error)) error {
	if a == b {
		return errors.New("storage: a user is not their own contact")
	}
	if opts.Visitor != 0 && opts.Visitor != a && opts.Visitor != b {
		return errors.New("storage: the visitor of a touch is one of its users")
	}
	return db.submit(op{apply: func(bt *batch) error { return db.touch(bt, a, b, now, opts) }, done: done})
}

func (db *DB) touch(bt *batch, a, b uint64, now int64, opts storage.TouchOptions) error {
	partner := uint64(0)
	if opts.Visitor != 0 {
		partner = a
		if partner == opts.Visitor {
			partner = b
		}
	}
	var ab, ba, oldC []int64
	var old *int64
	if err := bt.tx.QueryRow(bt.ctx, sqlLockPair, i64(a), i64(b), i64(opts.Visitor), i64(partner)).Scan(&ab, &ba, &old, &oldC); err != nil {
		return err
	}
	oldC, err := refreshOld(bt, opts.Visitor, partner, old, oldC)
	if err != nil {
		return err
	}
	sides := [2]struct {
		owner uint64
		st    contactState
	}{{owner: a}, {owner: b}}
	if sides[0].st, err = contactFrom(b, ab); err != nil {
		return err
	}
	if sides[1].st, err = contactFrom(a, ba); err != nil {
		return err
	}
	sv, err := serveFrom(opts.Visitor, partner, old, oldC)
	if err != nil {
		return err
	}
	var w writes
	for _, s := range sides {
		c := s.st.c
		c.LastContact = max(c.LastContact, now)
		if opts.Visitor != 0 && s.owner != opts.Visitor {
			if sv.changed() {
				c.Waiting = true // a new partner: assigned, unanswered
			}
			if opts.Assigned {
				w.assigned(s.owner, now)
			}
		}
		w.contact(s.owner, s.st, c)
	}
	sv.write(&w)
	return w.send(bt)
}

// sqlMarkRead reads the whole conversation: unread zero, the read seq at
// its last (a contact's last_seq is its conversation's, written with every
// message of the pair).
const sqlMarkRead = `UPDATE contacts SET unread = 0, read_seq = greatest(read_seq, last_seq)
	WHERE owner = $1 AND peer = $2 AND (unread <> 0 OR read_seq < last_seq)`

// MarkRead marks the whole conversation of owner with peer read (PROTOCOL
// §1.3): unread zero, the read seq at the conversation's last. A stranger
// is left alone. done runs on the committer after the commit.
func (db *DB) MarkRead(owner, peer uint64, done func(error)) error {
	return db.submit(op{apply: func(b *batch) error {
		_, err := b.tx.Exec(b.ctx, sqlMarkRead, i64(owner), i64(peer))
		return err
	}, done: done})
}

// SQL of the contact reads.
const (
	contactColumns  = `peer, unread, pending, waiting, last_contact, read_seq, last_message, last_seq`
	sqlContact      = `SELECT ` + contactColumns + ` FROM contacts WHERE owner = $1 AND peer = $2`
	sqlCounts       = `SELECT contacts, pending, waiting, assigned FROM contact_counts WHERE owner = $1`
	sqlPartner      = `SELECT partner FROM partners WHERE visitor = $1`
	sqlRecentCount  = `SELECT count(*) FROM contacts WHERE owner = $1 AND last_contact >= $2`
	sqlContactsPage = `SELECT ` + contactColumns + ` FROM contacts
		WHERE owner = $1 AND (last_contact, peer) < ($2, $3) ORDER BY last_contact DESC, peer DESC LIMIT $4`
	sqlConversationsPage = `SELECT ` + contactColumns + ` FROM contacts
		WHERE owner = $1 AND last_seq > 0 AND (last_message, peer) < ($2, $3) ORDER BY last_message DESC, peer DESC LIMIT $4`
)

func scanContact(row pgx.Row) (storage.Contact, error) {
	var c storage.Contact
	var peer, unread, readSeq, lastSeq int64
	if err := row.Scan(&peer, &unread, &c.Pending, &c.Waiting, &c.LastContact, &readSeq, &c.LastMessage, &lastSeq); err != nil {
		return c, err
	}
	c.Peer, c.Unread, c.ReadSeq, c.LastSeq = uint64(peer), uint64(unread), uint64(readSeq), uint64(lastSeq)
	return c, nil
}

// Contact returns owner's record of peer, or ErrNotFound.
func (db *DB) Contact(owner, peer uint64) (storage.Contact, error) {
	if db.closed.Load() {
		return storage.Contact{}, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	c, err := scanContact(db.pool.QueryRow(ctx, sqlContact, i64(owner), i64(peer)))
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return storage.Contact{}, storage.ErrNotFound
		}
		return storage.Contact{}, fmt.Errorf("postgres: contact %d of %d: %w", peer, owner, err)
	}
	return c, nil
}

// Counts returns owner's contact totals: its contact_counts row.
func (db *DB) Counts(owner uint64) (storage.ContactCounts, error) {
	if db.closed.Load() {
		return storage.ContactCounts{}, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	var n storage.ContactCounts
	var contacts, pending, waiting int64
	err := db.pool.QueryRow(ctx, sqlCounts, i64(owner)).Scan(&contacts, &pending, &waiting, &n.Assigned)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return storage.ContactCounts{}, nil
	case err != nil:
		return storage.ContactCounts{}, fmt.Errorf("postgres: counts of %d: %w", owner, err)
	}
	n.Contacts, n.Pending, n.Waiting = uint64(contacts), uint64(pending), uint64(waiting)
	return n, nil
}

// RecentCount counts owner's contacts with activity at or after since: a
// range of contacts_recent.
func (db *DB) RecentCount(owner uint64, since int64) (int, error) {
	if db.closed.Load() {
		return 0, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	var n int64
	if err := db.pool.QueryRow(ctx, sqlRecentCount, i64(owner), since).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: recent contacts of %d: %w", owner, err)
	}
	return int(n), nil
}

// LastPartner returns the agent or consultant visitor last talked to, or 0.
func (db *DB) LastPartner(visitor uint64) (uint64, error) {
	if db.closed.Load() {
		return 0, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	var p int64
	err := db.pool.QueryRow(ctx, sqlPartner, i64(visitor)).Scan(&p)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("postgres: partner of %d: %w", visitor, err)
	}
	return uint64(p), nil
}

// Contacts calls fn with owner's contacts, most recent activity first
// (peer descending on ties, as storage/pebble), until fn returns false. It
// reads keyset pages of contacts_recent, growing, so a caller that stops
// early reads little; no connection is held while fn runs.
func (db *DB) Contacts(owner uint64, fn func(storage.Contact) bool) error {
	return db.walkContacts(sqlContactsPage, owner, math.MaxInt64, func(c *storage.Contact) int64 { return c.LastContact }, fn)
}

// Conversations calls fn with owner's private conversations that hold a
// message, newest last message first, starting with those whose last
// message is older than before (0: all), until fn returns false (PROTOCOL
// §7.4): keyset pages of contacts_conversations.
func (db *DB) Conversations(owner uint64, before int64, fn func(storage.Contact) bool) error {
	from := int64(math.MaxInt64)
	if before > 0 {
		from = before
	}
	return db.walkContacts(sqlConversationsPage, owner, from, func(c *storage.Contact) int64 { return c.LastMessage }, fn)
}

// Walk page sizes: the first is what a chat list shows, then they grow.
const (
	firstWalkPage = 32
	maxWalkPage   = 1024
)

// walkContacts pages sql (owner, then the (time, peer) row bound
// exclusive, then the limit) from (from, 0) down; key gives a contact's
// time in the walk's order.
func (db *DB) walkContacts(sql string, owner uint64, from int64, key func(*storage.Contact) int64, fn func(storage.Contact) bool) error {
	if db.closed.Load() {
		return storage.ErrClosed
	}
	t, peer := from, int64(0)
	if from == math.MaxInt64 {
		peer = math.MaxInt64
	}
	for limit := firstWalkPage; ; limit = min(4*limit, maxWalkPage) {
		page, err := db.contactPage(sql, owner, t, peer, limit)
		if err != nil {
			return fmt.Errorf("postgres: contacts of %d: %w", owner, err)
		}
		for i := range page {
			if !fn(page[i]) {
				return nil
			}
		}
		if len(page) < limit {
			return nil
		}
		last := &page[len(page)-1]
		t, peer = key(last), i64(last.Peer)
	}
}

func (db *DB) contactPage(sql string, owner uint64, t, peer int64, limit int) ([]storage.Contact, error) {
	ctx, cancel := readCtx()
	defer cancel()
	rows, err := db.pool.Query(ctx, sql, i64(owner), t, peer, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Contact, error) { return scanContact(row) })
}

// i64 is a uid, gid or seq as a bigint; beyond the bigint range (never a
// stored value) it saturates.
func i64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}
