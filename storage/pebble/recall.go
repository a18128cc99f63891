package pebble

import "encoding/binary"

// Recall replaces the message that from sent with id by a recall marker
// (content and extras dropped, Recalled set) and removes it from every
// offline queue, if it was sent at or after notBefore (PROTOCOL §4.5).
// A private message no longer counts as unread for its receiver, and both
// sides' pending-reply flags follow the newest message left. done gets the
// marker, or ErrNotFound (no such message of from's), ErrTooLate or
// ErrRecalled. done runs on the committer.
func (db *DB) Recall(from uint64, id [16]byte, notBefore int64, done func(Message, error)) error {
	var m Message
	return db.submit(op{
		applyFn: func(t *tx) error {
			var err error
			m, err = t.recall(from, id, notBefore)
			return err
		},
		doneFn: func(err error) { done(m, err) },
	}, opOverhead)
}

func (t *tx) recall(from uint64, id [16]byte, notBefore int64) (Message, error) {
	f, err := t.byID(from, id)
	if err != nil {
		return Message{}, err
	}
	m, hk, ref := f.msg, f.hk, f.hv
	switch {
	case m.Recalled:
		return m, ErrRecalled
	case m.CreateTime < notBefore:
		return m, ErrTooLate
	}
	var members []uint64
	var counts privateRecall
	if m.ChatType == ChatGroup {
		if members, err = scanSecond(t.b, prefixMember, m.Group); err != nil {
			return m, err
		}
	} else if m.To != m.From {
		if counts, err = t.readPrivateRecall(&m); err != nil {
			return m, err
		}
	}
	// All reads done; from here on only writes.
	m.Recalled, m.Content, m.Extras = true, "", nil
	// The marker goes to history itself, in this batch with the queue and
	// counters it changes: written to the log, which commits first, a
	// crash between the two would leave the message recalled and still
	// queued and unread, with a retry told it was recalled already. The
	// record in the log is overwritten with the marker only after this
	// batch commits (tx.scrub), so its content does not stay there.
	marker := encodeMessage(&m)
	if f.queued {
		marker[2] |= flagQueued // a resend of its id is still told 10001
	}
	t.set(hk, marker)
	if ref[0] == messageRefV2 {
		t.scrub = append(t.scrub, logScrub{lsn: binary.BigEndian.Uint64(ref[1:]), marker: marker})
	}
	if m.ChatType == ChatGroup {
		for _, uid := range members {
			t.del(keyGroupQueue(uid, m.Group, m.Seq))
		}
		return m, nil
	}
	t.del(keyOffline(m.To, m.From, m.Seq))
	if m.To != m.From {
		counts.write(t, &m)
	}
	return m, nil
}

// privateRecall is what a recall changes in the contact records of a
// private conversation, read before anything is written.
type privateRecall struct {
	to, from         Contact // the receiver's record of the sender, and the sender's of the receiver
	toFound, fmFound bool
	toN, fromN       ContactCounts
	unread           bool   // the message was still unread by its receiver
	newest           uint64 // the sender of the newest message left, 0: none
}

func (t *tx) readPrivateRecall(m *Message) (privateRecall, error) {
	var p privateRecall
	var err error
	conv := privateConv(m.From, m.To)
	if p.to, p.toFound, err = t.contact(m.To, m.From); err != nil {
		return p, err
	}
	if p.from, p.fmFound, err = t.contact(m.From, m.To); err != nil {
		return p, err
	}
	if p.toN, err = t.counts(m.To); err != nil {
		return p, err
	}
	if p.fromN, err = t.counts(m.From); err != nil {
		return p, err
	}
	st, err := t.conv(conv)
	if err != nil {
		return p, err
	}
	// Unread messages are the receiver's newest ones from the sender
	// (contact.go, markRead): m is among them unless as many come after it.
	if p.toFound && p.to.Unread > 0 && (m.Seq > p.to.ReadSeq || p.to.ReadSeq == 0) {
		after, err := t.countFrom(conv, m.From, m.Seq, st.seq, p.to.Unread, 0)
		if err != nil {
			return p, err
		}
		p.unread = after < p.to.Unread
	}
	p.newest, err = t.newestSender(conv, st.seq, m.Seq)
	return p, err
}

// newestSender returns the sender of conv's newest message at or below
// last that is not recalled and not seq skip, or 0 when there is none.
func (t *tx) newestSender(conv convKey, last, skip uint64) (uint64, error) {
	var newest uint64
	err := t.walkBack(conv, 0, last, skip, func(from uint64, recalled bool) bool {
		if recalled {
			return true
		}
		newest = from
		return false
	})
	return newest, err
}

func (p *privateRecall) write(t *tx, m *Message) {
	if p.toFound {
		c := p.to
		if p.unread {
			c.Unread--
		}
		c.Pending = p.newest == m.From
		t.putContact(m.To, p.toN, p.to, true, c)
	}
	if p.fmFound {
		c := p.from
		c.Pending = p.newest == m.To
		t.putContact(m.From, p.fromN, p.from, true, c)
	}
}
