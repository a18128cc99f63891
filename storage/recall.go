package storage

import "errors"

// Errors of Recall.
var (
	ErrTooLate  = errors.New("storage: recall window passed")
	ErrRecalled = errors.New("storage: already recalled")
)

// Recall replaces the message that from sent with id by a recall marker
// (content and extras dropped, Recalled set) and removes it from every
// offline queue, if it was sent at or after notBefore (PROTOCOL §4.5).
// done gets the marker, or ErrNotFound (no such message of from's),
// ErrTooLate or ErrRecalled. done runs on the committer.
func (db *DB) Recall(from uint64, id [16]byte, notBefore int64, done func(Message, error)) error {
	var m Message
	return db.submit(op{
		applyFn: func(t *tx) error {
			v, err := t.get(keyDedup(from, id))
			if err != nil {
				return err
			}
			if len(v) != 25 {
				return errCorrupt
			}
			hk := append([]byte(prefixHistory), v[:24]...)
			rec, err := t.get(hk)
			if err != nil {
				return err
			}
			if m, err = decodeMessage(rec); err != nil {
				return err
			}
			switch {
			case m.Recalled:
				return ErrRecalled
			case m.CreateTime < notBefore:
				return ErrTooLate
			}
			var members []uint64
			if m.ChatType == ChatGroup {
				if members, err = scanSecond(t.b, prefixMember, m.Group); err != nil {
					return err
				}
			}
			m.Recalled, m.Content, m.Extras = true, "", nil
			t.set(hk, encodeMessage(&m))
			if m.ChatType == ChatGroup {
				for _, uid := range members {
					t.del(keyGroupQueue(uid, m.Group, m.Seq))
				}
			} else {
				t.del(keyOffline(m.To, m.From, m.Seq))
			}
			return nil
		},
		doneFn: func(err error) { done(m, err) },
	})
}
