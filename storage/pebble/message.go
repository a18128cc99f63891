package pebble

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/imgate/imgate/storage"
)

// Flags of a message record.
const (
	flagRecalled = 1 // recalled: content and extras dropped
	// flagQueued: the message was queued offline when stored (its ack
	// said 10001), which a resend of its id is told again. Records in h|
	// (before the log) leave it to their idempotency record.
	flagQueued = 2
)

// convKey names a conversation: for private chat the two uids, lower first.
type convKey [16]byte

func privateConv(a, b uint64) convKey {
	if a > b {
		a, b = b, a
	}
	var k convKey
	binary.BigEndian.PutUint64(k[:8], a)
	binary.BigEndian.PutUint64(k[8:], b)
	return k
}

// maxConvCache bounds the committer's conversation cache (~40 B each).
const maxConvCache = 1 << 20

// convState is the committer's cache of a conversation's tail.
type convState struct {
	seq  uint64 // last assigned seq
	time int64  // its createTime
}

const (
	prefixHistory   = "h|" // h|conv(16)|seq(8) -> message reference (or, written before the log, record)
	prefixOffline   = "q|" // q|uid(8)|peer(8)|seq(8) -> empty; the message is h|conv(uid,peer)|seq
	prefixContact   = "c|" // c|owner(8)|peer(8) -> contact record
	prefixDedup     = "D|" // D|id(16)|from(8) -> lsn(8): a client-chosen id
	prefixDedupV1   = "d|" // d|from(8)|id(16) -> conv(16)|seq(8)|queued(1), written before D|: read, never written
	prefixLog       = "L|" // in the message log: L|lsn(8) -> message record
	prefixLogEnd    = "L}" // '|'+1: the exclusive upper bound of L|
	messageRecordV1 = 1
	// messageRefV2 starts a history value that refers to the log: 2,
	// lsn(8). History values that start with messageRecordV1 are the
	// record itself (stores written before the log).
	messageRefV2 = 2
)

// Each key has an append form, for the committer's scratch, and an
// allocating one for everything else.

func keyHistory(c convKey, seq uint64) []byte {
	return appendKeyHistory(make([]byte, 0, 2+16+8), c, seq)
}

func appendKeyHistory(k []byte, c convKey, seq uint64) []byte {
	k = append(append(k, prefixHistory...), c[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func keyOffline(uid, peer, seq uint64) []byte {
	return appendKeyOffline(make([]byte, 0, 2+24), uid, peer, seq)
}

func appendKeyOffline(k []byte, uid, peer, seq uint64) []byte {
	k = append(k, prefixOffline...)
	k = binary.BigEndian.AppendUint64(k, uid)
	k = binary.BigEndian.AppendUint64(k, peer)
	return binary.BigEndian.AppendUint64(k, seq)
}

func keyContact(owner, peer uint64) []byte {
	k := make([]byte, 0, 2+16)
	k = append(k, prefixContact...)
	k = binary.BigEndian.AppendUint64(k, owner)
	return binary.BigEndian.AppendUint64(k, peer)
}

func keyDedup(from uint64, id [16]byte) []byte {
	return appendKeyDedup(make([]byte, 0, 2+24), from, id)
}

// appendKeyDedup appends from's idempotency key of id: the id first, so
// that time-ordered ids make the keyspace an append.
func appendKeyDedup(k []byte, from uint64, id [16]byte) []byte {
	k = append(k, prefixDedup...)
	k = append(k, id[:]...)
	return binary.BigEndian.AppendUint64(k, from)
}

// keyDedupV1 is the idempotency key of stores written before D|.
func keyDedupV1(from uint64, id [16]byte) []byte {
	k := make([]byte, 0, 2+24)
	k = append(k, prefixDedupV1...)
	k = binary.BigEndian.AppendUint64(k, from)
	return append(k, id[:]...)
}

func keyLog(lsn uint64) []byte { return appendKeyLog(make([]byte, 0, 2+8), lsn) }

func appendKeyLog(k []byte, lsn uint64) []byte {
	return binary.BigEndian.AppendUint64(append(k, prefixLog...), lsn)
}

// appendMessageRef appends the history value that refers to log record lsn.
func appendMessageRef(b []byte, lsn uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, messageRefV2), lsn)
}

// messageRecord returns the message record history value v holds or
// refers to in the log lr, valid until closer is closed. A reference to a
// record the log lacks is corrupt: a record is committed before its
// reference (commit.go).
func messageRecord(lr reader, v []byte) (rec []byte, closer io.Closer, err error) {
	if len(v) == 0 {
		return nil, nil, errCorrupt
	}
	switch v[0] {
	case messageRecordV1:
		return v, nopCloser{}, nil
	case messageRefV2:
		if len(v) != 9 {
			return nil, nil, errCorrupt
		}
		rec, closer, err = lr.Get(keyLog(binary.BigEndian.Uint64(v[1:])))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, nil, fmt.Errorf("storage: log record %d: %w", binary.BigEndian.Uint64(v[1:]), errCorrupt)
		}
		return rec, closer, err
	}
	return nil, nil, errCorrupt
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// recordTime is messageTime of the record v holds or refers to.
func recordTime(lr reader, v []byte) (int64, error) {
	rec, closer, err := messageRecord(lr, v)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return messageTime(rec)
}

// recordSender is messageSender of the record v holds or refers to.
func recordSender(lr reader, v []byte) (uint64, bool, error) {
	rec, closer, err := messageRecord(lr, v)
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	return messageSender(rec)
}

// logCursor reads the records a run of history values refer to through
// one iterator over the log: a page of history or of a queue refers to
// records in lsn order (seq order is lsn order within a conversation),
// which one iterator reaches by seeking on, where a Get per record would
// set up its own iterator and read the table's index and filter each
// time. Close it when done.
type logCursor struct {
	lr reader
	it *pebble.Iterator
}

// message decodes the record history value v holds or refers to.
func (c *logCursor) message(v []byte) (Message, error) {
	if len(v) == 0 || v[0] != messageRefV2 {
		return decodeRecord(c.lr, v) // a record before the log, or corrupt
	}
	if len(v) != 9 {
		return Message{}, errCorrupt
	}
	if c.it == nil {
		var err error
		if c.it, err = c.lr.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixLog), UpperBound: []byte(prefixLogEnd)}); err != nil {
			return Message{}, err
		}
	}
	key := keyLog(binary.BigEndian.Uint64(v[1:]))
	if !c.it.SeekGE(key) || !bytes.Equal(c.it.Key(), key) {
		if err := c.it.Error(); err != nil {
			return Message{}, err
		}
		return Message{}, fmt.Errorf("storage: log record %d: %w", binary.BigEndian.Uint64(v[1:]), errCorrupt)
	}
	return decodeMessage(c.it.Value())
}

func (c *logCursor) Close() {
	if c.it != nil {
		_ = c.it.Close()
	}
}

// decodeRecord is decodeMessage of the record v holds or refers to.
func decodeRecord(lr reader, v []byte) (Message, error) {
	rec, closer, err := messageRecord(lr, v)
	if err != nil {
		return Message{}, err
	}
	defer closer.Close()
	return decodeMessage(rec)
}

// encodeMessage: version(1) chatType(1) flags(1) msgType(uvarint)
// createTime(8) seq(8) from(8) to(8) id(16) group(8), then fromID, toID,
// content, extras, groupID as uvarint length and bytes.
func encodeMessage(m *Message) []byte {
	return appendMessageRecord(make([]byte, 0, 64+len(m.FromID)+len(m.ToID)+len(m.Content)+len(m.Extras)+len(m.GroupID)), m)
}

// appendMessageRecord appends encodeMessage's record to b.
func appendMessageRecord(b []byte, m *Message) []byte {
	var flags byte
	if m.Recalled {
		flags |= flagRecalled
	}
	b = append(b, messageRecordV1, byte(m.ChatType), flags)
	b = binary.AppendUvarint(b, uint64(m.MsgType))
	b = binary.BigEndian.AppendUint64(b, uint64(m.CreateTime))
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, m.To)
	b = append(b, m.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, m.Group)
	for _, s := range [...]string{m.FromID, m.ToID, m.Content, string(m.Extras), m.GroupID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// messageTime reads only the createTime of a message record.
func messageTime(b []byte) (int64, error) {
	if len(b) < 3 || b[0] != messageRecordV1 {
		return 0, errCorrupt
	}
	_, w := binary.Uvarint(b[3:])
	if w <= 0 || len(b) < 3+w+8 {
		return 0, errCorrupt
	}
	return int64(binary.BigEndian.Uint64(b[3+w:])), nil
}

// messageSender reads only the sender and the recalled flag of a message
// record.
func messageSender(b []byte) (from uint64, recalled bool, err error) {
	if len(b) < 3 || b[0] != messageRecordV1 {
		return 0, false, errCorrupt
	}
	_, w := binary.Uvarint(b[3:])
	if w <= 0 || len(b) < 3+w+24 {
		return 0, false, errCorrupt
	}
	return binary.BigEndian.Uint64(b[3+w+16:]), b[2]&flagRecalled != 0, nil
}

func decodeMessage(b []byte) (Message, error) {
	var m Message
	if len(b) < 3 || b[0] != messageRecordV1 {
		return m, errCorrupt
	}
	m.ChatType = int(b[1])
	m.Recalled = b[2]&flagRecalled != 0
	mt, w := binary.Uvarint(b[3:])
	if w <= 0 || mt > math.MaxInt32 {
		return m, errCorrupt
	}
	m.MsgType = int(mt)
	b = b[3+w:]
	if len(b) < 56 {
		return m, errCorrupt
	}
	m.CreateTime = int64(binary.BigEndian.Uint64(b))
	m.Seq = binary.BigEndian.Uint64(b[8:])
	m.From = binary.BigEndian.Uint64(b[16:])
	m.To = binary.BigEndian.Uint64(b[24:])
	copy(m.ID[:], b[32:48])
	m.Group = binary.BigEndian.Uint64(b[48:])
	b = b[56:]
	var extras string
	for _, p := range [...]*string{&m.FromID, &m.ToID, &m.Content, &extras, &m.GroupID} {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return Message{}, errCorrupt
		}
		*p = string(b[w : w+int(n)])
		b = b[w+int(n):]
	}
	if extras != "" {
		m.Extras = []byte(extras)
	}
	return m, nil
}

// Contact record versions: v1 has no read seq, v2 no last message.
const (
	contactRecordV1 = 1
	contactRecordV2 = 2
	contactRecordV3 = 3
)

// Contact record flags.
const (
	contactPending = 1 << 0
	contactWaiting = 1 << 1
)

// encodeContact: version(1) flags(1) lastContact(8) unread(uvarint)
// readSeq(uvarint) lastMessage(uvarint) lastSeq(uvarint).
func encodeContact(c *Contact) []byte { return appendContact(make([]byte, 0, 32), c) }

// appendContact appends encodeContact's record to b.
func appendContact(b []byte, c *Contact) []byte {
	b = append(b, contactRecordV3)
	var flags byte
	if c.Pending {
		flags |= contactPending
	}
	if c.Waiting {
		flags |= contactWaiting
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(c.LastContact))
	b = binary.AppendUvarint(b, c.Unread)
	b = binary.AppendUvarint(b, c.ReadSeq)
	b = binary.AppendUvarint(b, uint64(c.LastMessage))
	return binary.AppendUvarint(b, c.LastSeq)
}

func decodeContact(peer uint64, b []byte) (Contact, error) {
	if len(b) < 10 || b[0] < contactRecordV1 || b[0] > contactRecordV3 {
		return Contact{}, errCorrupt
	}
	c := Contact{Peer: peer, Pending: b[1]&contactPending != 0, Waiting: b[1]&contactWaiting != 0, LastContact: int64(binary.BigEndian.Uint64(b[2:]))}
	n, w := binary.Uvarint(b[10:])
	if w <= 0 {
		return Contact{}, errCorrupt
	}
	c.Unread = n
	if b[0] == contactRecordV1 {
		return c, nil
	}
	rest := b[10+w:]
	var fields [3]uint64
	nf := 1 // v2: the read seq
	if b[0] == contactRecordV3 {
		nf = 3 // and the last message's time and seq
	}
	for i := range nf {
		v, w := binary.Uvarint(rest)
		if w <= 0 {
			return Contact{}, errCorrupt
		}
		fields[i], rest = v, rest[w:]
	}
	c.ReadSeq, c.LastMessage, c.LastSeq = fields[0], int64(fields[1]), fields[2]
	return c, nil
}

// contact reads owner's record of peer inside the batch; found=false if
// they are not contacts yet.
//
// Contact records are written only by the committer, so its cache of them
// is authoritative once loaded: a hot conversation costs map lookups, not
// Pebble reads (BenchmarkAppendPrivate).
func (t *tx) contact(owner, peer uint64) (Contact, bool, error) {
	k := pairKey(owner, peer)
	if cc, ok := t.db.contacts[k]; ok {
		return cc.c, cc.found, nil
	}
	v, err := t.get(keyContact(owner, peer))
	if errors.Is(err, ErrNotFound) {
		t.db.contacts[k] = cachedContact{Contact{Peer: peer}, false}
		return Contact{Peer: peer}, false, nil
	}
	if err != nil {
		return Contact{}, false, err
	}
	c, err := decodeContact(peer, v)
	if err == nil {
		t.db.contacts[k] = cachedContact{c, true}
	}
	return c, err == nil, err
}

// writeContact changes owner's record to c. The record must have been read
// in this batch (tx.contact). It is written once, when the batch is sealed:
// a pair exchanging many messages within one group commit costs one write.
func (t *tx) writeContact(owner uint64, c *Contact) {
	k := pairKey(owner, c.Peer)
	if _, ok := t.db.dirty[k]; !ok {
		prev := t.db.contacts[k]
		t.db.dirty[k] = dirtyContact{last: prev.c.LastContact, lastMsg: prev.c.LastMessage, found: prev.found}
	}
	t.db.contacts[k] = cachedContact{*c, true}
	t.touched++
}

// dirtyContact is what a contact changed by the current batch was on disk
// before it: seal reports a change of its times to the recency orders.
type dirtyContact struct {
	last    int64 // LastContact: its place in the order by last contact
	lastMsg int64 // LastMessage: its place in the order by last message
	found   bool
}

type cachedContact struct {
	c     Contact
	found bool
}

func pairKey(a, b uint64) [16]byte {
	var k [16]byte
	binary.BigEndian.PutUint64(k[:8], a)
	binary.BigEndian.PutUint64(k[8:], b)
	return k
}

// conv returns the conversation's tail, from the cache or the last history
// key on disk.
func (t *tx) conv(c convKey) (convState, error) {
	if st, ok := t.db.convs[c]; ok {
		return st, nil
	}
	return tail(t.b, t.lb, c)
}

// tail reads a conversation's last history record in r (the DB or the
// batch) and the log lr; zero when the conversation is empty.
func tail(r, lr reader, c convKey) (convState, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: keyHistory(c, 0), UpperBound: keyHistory(c, math.MaxUint64)})
	if err != nil {
		return convState{}, err
	}
	defer it.Close()
	if !it.Last() {
		return convState{}, it.Error()
	}
	k := it.Key()
	ct, err := recordTime(lr, it.Value())
	if err != nil {
		return convState{}, fmt.Errorf("storage: conversation tail: %w", err)
	}
	return convState{seq: binary.BigEndian.Uint64(k[len(k)-8:]), time: ct}, nil
}

// duplicate looks up an earlier message of from with id: ok is true and
// res holds it if there is one.
func (t *tx) duplicate(from uint64, id [16]byte) (res AppendResult, ok bool, err error) {
	f, err := t.byID(from, id)
	if errors.Is(err, ErrNotFound) {
		return AppendResult{}, false, nil
	}
	if err != nil {
		return AppendResult{}, false, err
	}
	return AppendResult{Msg: f.msg, Duplicate: true, Online: !f.queued}, true, nil
}

// found is a message byID found: its record decoded, its history key and
// value, and whether it was queued offline when stored.
type found struct {
	msg    Message
	hk, hv []byte
	queued bool
}

// byID finds from's message with id, or returns ErrNotFound. A client's
// id is in its idempotency record (D|, or d| of a store written before
// the log); an id the store made names its log record (storeID), which
// must be from's, carry that id, and be referred to from history (a
// record a crash left unreferenced was never acked, and its id never
// given to anyone).
func (t *tx) byID(from uint64, id [16]byte) (f found, err error) {
	var lsn uint64
	switch v, err := t.get(keyDedup(from, id)); {
	case err == nil && len(v) == 8:
		lsn = binary.BigEndian.Uint64(v)
	case err == nil:
		return f, errCorrupt
	case !errors.Is(err, ErrNotFound):
		return f, err
	default:
		v, err := t.get(keyDedupV1(from, id))
		if err == nil {
			if len(v) != 25 {
				return f, errCorrupt
			}
			f.hk = append([]byte(prefixHistory), v[:24]...)
			if f.hv, err = t.get(f.hk); err != nil {
				return f, fmt.Errorf("storage: dedup target: %w", err)
			}
			f.msg, err = decodeRecord(t.lb, f.hv)
			f.queued = v[24] != 0
			return f, err
		}
		if !errors.Is(err, ErrNotFound) {
			return f, err
		}
		lsn = binary.BigEndian.Uint64(id[6:14]) // perhaps made by the store
	}
	rec, err := getCopy(t.lb, keyLog(lsn))
	if err != nil {
		return f, err // ErrNotFound: no such message
	}
	if f.msg, err = decodeMessage(rec); err != nil {
		return f, err
	}
	if f.msg.ID != id || f.msg.From != from {
		return f, ErrNotFound
	}
	f.queued = rec[2]&flagQueued != 0
	conv := privateConv(f.msg.From, f.msg.To)
	if f.msg.ChatType == ChatGroup {
		conv = groupConv(f.msg.Group)
	}
	f.hk = keyHistory(conv, f.msg.Seq)
	f.hv, err = t.get(f.hk)
	switch {
	case errors.Is(err, ErrNotFound):
		return f, ErrNotFound // a record no history refers to
	case err != nil:
		return f, err
	case bytes.Equal(f.hv, appendMessageRef(nil, lsn)):
		return f, nil
	case len(f.hv) > 2 && f.hv[0] == messageRecordV1:
		// Recalled: history holds the marker (recall.go).
		m, err := decodeMessage(f.hv)
		if err != nil || m.ID != id || m.From != from {
			return f, cmp.Or(err, ErrNotFound)
		}
		f.msg, f.queued = m, f.hv[2]&flagQueued != 0
		return f, nil
	}
	return f, ErrNotFound // history refers to another record
}

// storeID is the id the store gives a message whose sender chose none: the
// milliseconds of its createTime (6 bytes), its lsn (8) and two zero
// bytes. Time-ordered and unique (PROTOCOL §0): the lsn is, and after a
// restore from a copy that reuses lsns the milliseconds differ. byID
// finds the message from it without an idempotency record.
func storeID(createTime int64, lsn uint64) (id [16]byte) {
	binary.BigEndian.PutUint64(id[:8], uint64(createTime)<<16)
	binary.BigEndian.PutUint64(id[6:14], lsn)
	return id
}

// appendCore assigns m its seq and createTime after the conversation's
// tail st (and its id, unless its sender chose one: storeID), writes its
// record to the log and the history reference to it, and, for a
// client's id, the idempotency record.
func (t *tx) appendCore(conv convKey, st convState, m *Message, queued, clientID bool) {
	m.Seq = st.seq + 1
	m.CreateTime = max(m.CreateTime, st.time)
	t.cacheConv(conv, convState{seq: m.Seq, time: m.CreateTime})
	t.db.lastLSN++
	lsn := t.db.lastLSN
	if !clientID {
		m.ID = storeID(m.CreateTime, lsn)
	}
	t.key = appendKeyLog(t.key[:0], lsn)
	t.val = appendMessageRecord(t.val[:0], m)
	if queued {
		t.val[2] |= flagQueued
	}
	_ = t.lb.Set(t.key, t.val, nil)
	t.touched++
	t.key = appendKeyHistory(t.key[:0], conv, m.Seq)
	t.val = appendMessageRef(t.val[:0], lsn)
	t.set(t.key, t.val)
	if clientID {
		t.key = appendKeyDedup(t.key[:0], m.From, m.ID)
		t.val = binary.BigEndian.AppendUint64(t.val[:0], lsn)
		t.set(t.key, t.val)
	}
}

// cacheConv records a conversation's new tail.
func (t *tx) cacheConv(c convKey, st convState) { t.db.convs[c] = st; t.touched++ }

// AppendPrivate stores a private message durably: history, idempotency
// record, the receiver's offline queue entry when opts.Offline (else the
// batch's journal holds it until its push is settled: AppendResult.
// Delivery.Settle) and both contact records; a message to oneself gets
// no queue entry and no contact. It returns at once; done runs on the
// committer goroutine after the WAL is synced and must not block.
// m.CreateTime is raised if needed so times never go back within a
// conversation. A message whose (From, ID) was stored before is not stored
// again: done gets the stored message with Duplicate set.
func (db *DB) AppendPrivate(m Message, opts AppendOptions, done func(AppendResult)) error {
	return db.AppendPrivateTo(m, opts, AppendedFunc(done))
}

// AppendPrivateTo is AppendPrivate reporting to done: a caller that
// recycles its Appended appends without allocating.
func (db *DB) AppendPrivateTo(m Message, opts AppendOptions, done Appended) error {
	o := appendOpPool.Get().(*appendPrivateOp)
	*o = appendPrivateOp{m: m, opts: opts, cb: done}
	if err := db.submit(o, messageCost(&m)); err != nil {
		appendOpPool.Put(o)
		return err
	}
	return nil
}

// appendPrivateOp is AppendPrivate's operation, recycled once done has
// run: nothing refers to it after that.
var appendOpPool = sync.Pool{New: func() any { return new(appendPrivateOp) }}

type appendPrivateOp struct {
	m    Message
	opts AppendOptions
	res  AppendResult
	cb   Appended
}

func (o *appendPrivateOp) apply(t *tx) (err error) {
	o.res, err = t.appendPrivate(o.m, o.opts)
	return err
}

func (o *appendPrivateOp) done(err error) {
	o.res.Err = err
	o.cb.Appended(o.res)
	*o = appendPrivateOp{}
	appendOpPool.Put(o)
}

// messageCost is what a message costs the commit queue, in bytes.
func messageCost(m *Message) int { return opOverhead + len(m.Content) + len(m.Extras) }

func (t *tx) appendPrivate(m Message, opts AppendOptions) (AppendResult, error) {
	conv := privateConv(m.From, m.To)
	if opts.ClientID {
		if dup, ok, err := t.duplicate(m.From, m.ID); err != nil || ok {
			return dup, err
		}
	}
	st, err := t.conv(conv)
	if err != nil {
		return AppendResult{}, err
	}
	if m.To == m.From {
		// A note to oneself: stored and shown on one's other
		// terminals, but nobody's contact, unread or queue.
		t.appendCore(conv, st, &m, false, opts.ClientID)
		return AppendResult{Msg: m}, nil
	}
	toC, toFound, err := t.contact(m.To, m.From)
	if err != nil {
		return AppendResult{}, err
	}
	fromC, fromFound, err := t.contact(m.From, m.To)
	if err != nil {
		return AppendResult{}, err
	}
	toN, err := t.counts(m.To)
	if err != nil {
		return AppendResult{}, err
	}
	fromN, err := t.counts(m.From)
	if err != nil {
		return AppendResult{}, err
	}
	var sv serve
	if opts.Visitor != 0 {
		partner := m.To
		if opts.Visitor == m.To {
			partner = m.From
		}
		if sv, err = t.readServe(opts.Visitor, partner); err != nil {
			return AppendResult{}, err
		}
	}
	// All reads done; from here on only writes, which cannot fail.
	t.appendCore(conv, st, &m, opts.Offline, opts.ClientID)
	var d storage.Delivery
	if opts.Offline {
		t.key = appendKeyOffline(t.key[:0], m.To, m.From, m.Seq)
		t.set(t.key, nil)
		t.queued(m.To, m.From, false)
	} else {
		// Acked as pushed: the batch's journal holds it until its push
		// is settled (lazy.go), so no crash can lose it.
		j := t.journal()
		d = storage.NewDelivery(j, len(j.msgs))
		j.msgs = append(j.msgs, offlineKey{m.To, m.From, m.Seq})
		t.touched++
	}
	newTo := toC
	newTo.Unread++
	newTo.Pending = true
	newTo.LastContact = m.CreateTime
	newTo.LastMessage, newTo.LastSeq = m.CreateTime, m.Seq
	newFrom := fromC
	newFrom.Pending = false
	newFrom.LastContact = m.CreateTime
	newFrom.LastMessage, newFrom.LastSeq = m.CreateTime, m.Seq
	switch opts.Visitor {
	case m.From:
		newTo.Waiting = true // the visitor wrote: they wait for a reply
	case m.To:
		newFrom.Waiting = false // answered
	}
	t.putContact(m.To, toN, toC, toFound, newTo)
	t.putContact(m.From, fromN, fromC, fromFound, newFrom)
	sv.write(t)
	return AppendResult{Msg: m, Delivery: d}, nil
}
