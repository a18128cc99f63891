package postgres

import (
	"errors"

	"github.com/imgate/imgate/storage"
)

// Not written yet: delete each stub as its method lands.

var errTODO = errors.New("postgres: not implemented yet")

func (db *DB) AppendPrivate(m storage.Message, opts storage.AppendOptions, done func(storage.AppendResult)) error {
	return errTODO
}

func (db *DB) AppendPrivateTo(m storage.Message, opts storage.AppendOptions, done storage.Appended) error {
	return errTODO
}

func (db *DB) AppendGroup(m storage.Message, online, offline []uint64, ver uint64, opts storage.AppendOptions, done func(storage.AppendResult)) error {
	return errTODO
}

func (db *DB) Recall(from uint64, id [16]byte, notBefore int64, done func(storage.Message, error)) error {
	return errTODO
}

func (db *DB) History(a, b uint64, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	return nil, false, errTODO
}

func (db *DB) GroupHistory(gid uint64, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	return nil, false, errTODO
}

func (db *DB) ReadOffline(uid uint64, q storage.QueueQuery) (storage.QueuePage, error) {
	return storage.QueuePage{}, errTODO
}

func (db *DB) RemoveOffline(uid uint64, rs []storage.Removal, done func(error)) error { return errTODO }

func (db *DB) Ack(uid, peer uint64, group bool, upTo uint64) error { return errTODO }

func (db *DB) LastSeq(uid, peer uint64, group bool) (uint64, error) { return 0, errTODO }

func (db *DB) Read(uid, peer uint64, group bool, upTo uint64, done func(storage.ReadResult, error)) error {
	return errTODO
}

func (db *DB) GroupReadSeq(uid, gid uint64) (uint64, error) { return 0, errTODO }

func (db *DB) GroupUnread(uid, gid, readSeq, last uint64) (uint64, error) { return 0, errTODO }

func (db *DB) Touch(a, b uint64, now int64, opts storage.TouchOptions, done func(error)) error {
	return errTODO
}

func (db *DB) MarkRead(owner, peer uint64, done func(error)) error { return errTODO }

func (db *DB) Counts(owner uint64) (storage.ContactCounts, error) {
	return storage.ContactCounts{}, errTODO
}

func (db *DB) Contact(owner, peer uint64) (storage.Contact, error) { return storage.Contact{}, errTODO }

func (db *DB) Contacts(owner uint64, fn func(storage.Contact) bool) error { return errTODO }

func (db *DB) Conversations(owner uint64, before int64, fn func(storage.Contact) bool) error {
	return errTODO
}

func (db *DB) RecentCount(owner uint64, since int64) (int, error) { return 0, errTODO }

func (db *DB) LastPartner(visitor uint64) (uint64, error) { return 0, errTODO }
