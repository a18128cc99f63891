package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/imgate/imgate/storage"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// flagRecalled marks a recalled message in its record.
const flagRecalled = 1

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
	prefixHistory   = "h|" // h|conv(16)|seq(8) -> message record
	prefixOffline   = "q|" // q|uid(8)|peer(8)|seq(8) -> empty; the message is h|conv(uid,peer)|seq
	prefixContact   = "c|" // c|owner(8)|peer(8) -> contact record
	prefixDedup     = "d|" // d|from(8)|id(16) -> conv(16)|seq(8)
	messageRecordV1 = 1
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

func appendKeyDedup(k []byte, from uint64, id [16]byte) []byte {
	k = append(k, prefixDedup...)
	k = binary.BigEndian.AppendUint64(k, from)
	return append(k, id[:]...)
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
	return tail(t.b, c)
}

// tail reads a conversation's last history record in r (the DB or the
// batch); zero when the conversation is empty.
func tail(r reader, c convKey) (convState, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: keyHistory(c, 0), UpperBound: keyHistory(c, math.MaxUint64)})
	if err != nil {
		return convState{}, err
	}
	defer it.Close()
	if !it.Last() {
		return convState{}, it.Error()
	}
	k := it.Key()
	ct, err := messageTime(it.Value())
	if err != nil {
		return convState{}, fmt.Errorf("storage: conversation tail: %w", err)
	}
	return convState{seq: binary.BigEndian.Uint64(k[len(k)-8:]), time: ct}, nil
}

// duplicate looks up an earlier message of from with id: ok is true and
// res holds it if there is one.
func (t *tx) duplicate(from uint64, id [16]byte) (res AppendResult, ok bool, err error) {
	v, err := t.get(keyDedup(from, id))
	if errors.Is(err, ErrNotFound) {
		return AppendResult{}, false, nil
	}
	if err != nil {
		return AppendResult{}, false, err
	}
	if len(v) != 25 {
		return AppendResult{}, false, errCorrupt
	}
	stored, err := t.get(append([]byte(prefixHistory), v[:24]...))
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("storage: dedup target: %w", err)
	}
	sm, err := decodeMessage(stored)
	return AppendResult{Msg: sm, Duplicate: true, Online: v[24] == 0}, err == nil, err
}

// appendCore assigns m its seq and createTime after the conversation's
// tail st and writes the history record and the
// idempotency record (which remembers whether it was queued offline).
func (t *tx) appendCore(conv convKey, st convState, m *Message, queued bool) {
	m.Seq = st.seq + 1
	m.CreateTime = max(m.CreateTime, st.time)
	t.cacheConv(conv, convState{seq: m.Seq, time: m.CreateTime})
	t.key = appendKeyHistory(t.key[:0], conv, m.Seq)
	t.val = appendMessageRecord(t.val[:0], m)
	t.set(t.key, t.val)
	var q byte
	if queued {
		q = 1
	}
	// The dedup value is the history key without its prefix, then q.
	t.val = append(append(t.val[:0], t.key[len(prefixHistory):]...), q)
	t.key = appendKeyDedup(t.key[:0], m.From, m.ID)
	t.set(t.key, t.val)
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
		t.appendCore(conv, st, &m, false)
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
	t.appendCore(conv, st, &m, opts.Offline)
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
