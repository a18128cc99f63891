package postgres

import "github.com/imgate/imgate/storage"

// Not written yet: delete each stub as its method lands.

func (db *DB) Register(r storage.Registration) (storage.User, error) { return storage.User{}, errTODO }

func (db *DB) UserByID(id string) (storage.User, error) { return storage.User{}, errTODO }

func (db *DB) UserByUID(uid uint64) (storage.User, error) { return storage.User{}, errTODO }

func (db *DB) TokenInfo(token string, now int64) (storage.TokenInfo, error) {
	return storage.TokenInfo{}, errTODO
}

func (db *DB) TokenUser(token string, now int64) (storage.User, error) {
	return storage.User{}, errTODO
}

func (db *DB) RevokeTokens(id, terminal string, now int64) (storage.User, int, error) {
	return storage.User{}, 0, errTODO
}

func (db *DB) SweepTokens(now int64, max int) (purged int, err error) { return 0, errTODO }

func (db *DB) GroupByID(id string) (uint64, error) { return 0, errTODO }

func (db *DB) Join(groupID string, uid uint64, now int64, maxMembers int, done func(gid uint64, result int, err error)) error {
	return errTODO
}

func (db *DB) Leave(gid, uid uint64, done func(left bool, err error)) error { return errTODO }

func (db *DB) IsMember(gid, uid uint64) (bool, error) { return false, errTODO }

func (db *DB) Members(gid uint64) ([]uint64, error) { return nil, errTODO }

func (db *DB) UserGroups(uid uint64) ([]uint64, error) { return nil, errTODO }

func (db *DB) MembershipVersion(gid uint64) uint64 { return 0 }
