package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// User types of PROTOCOL §1.1.
const (
	UserVisitor    = 0
	UserAgent      = 1
	UserConsultant = 2
)

// User is a registered user's profile.
type User struct {
	UID      uint64 // internal dense id, assigned at first registration
	ID       string // the protocol's user id
	Type     int
	Nick     string
	Avatar   string
	Terminal string
	Sign     string
	Created  int64 // ms since the epoch
	Updated  int64 // ms since the epoch
}

// Registration is one initUser call: the profile to upsert and, when Token
// is not empty, the token to bind to it until TokenExpire.
type Registration struct {
	User        User // UID, Created are ignored
	Token       string
	TokenExpire int64 // ms since the epoch
	Now         int64 // ms since the epoch
}

// userRecordV1 is the version byte of encodeUser's format.
const userRecordV1 = 1

// encodeUser: version(1) type(1) created(8) updated(8) then id, nick,
// avatar, terminal, sign, each as uvarint length and bytes.
func encodeUser(u *User) []byte {
	n := 18 + len(u.ID) + len(u.Nick) + len(u.Avatar) + len(u.Terminal) + len(u.Sign) + 5*binary.MaxVarintLen16
	b := make([]byte, 0, n)
	b = append(b, userRecordV1, byte(u.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(u.Created))
	b = binary.BigEndian.AppendUint64(b, uint64(u.Updated))
	for _, s := range [...]string{u.ID, u.Nick, u.Avatar, u.Terminal, u.Sign} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errCorrupt = errors.New("storage: corrupt record")

func decodeUser(uid uint64, b []byte) (User, error) {
	if len(b) < 18 || b[0] != userRecordV1 {
		return User{}, errCorrupt
	}
	u := User{
		UID:     uid,
		Type:    int(b[1]),
		Created: int64(binary.BigEndian.Uint64(b[2:])),
		Updated: int64(binary.BigEndian.Uint64(b[10:])),
	}
	b = b[18:]
	for _, p := range [...]*string{&u.ID, &u.Nick, &u.Avatar, &u.Terminal, &u.Sign} {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return User{}, errCorrupt
		}
		*p = string(b[w : w+int(n)])
		b = b[w+int(n):]
	}
	return u, nil
}

// Register upserts the user's profile and, if r.Token is set, binds it to
// the user. Both happen in one synced batch, or neither does. A token bound
// to another user and not yet expired fails with ErrTokenTaken and changes
// nothing. It returns the stored user.
func (db *DB) Register(r Registration) (User, error) {
	unlock := db.lock(r.User.ID, r.Token)
	defer unlock()

	u := r.User
	prev, err := db.UserByID(u.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if r.Token != "" {
		v, err := db.get(keyToken(r.Token))
		switch {
		case err == nil:
			uid, exp := decodeToken(v)
			if (prev.UID == 0 || uid != prev.UID) && exp > r.Now {
				return User{}, ErrTokenTaken
			}
		case !errors.Is(err, ErrNotFound):
			return User{}, err
		}
	}
	if prev.UID != 0 {
		u.UID, u.Created = prev.UID, prev.Created
	} else {
		u.UID, u.Created = db.nextUID.Add(1)-1, r.Now
	}
	u.Updated = r.Now
	if r.Token != "" {
		_ = b.Set(keyToken(r.Token), encodeToken(u.UID, r.TokenExpire), nil)
	}
	if prev.UID == 0 { // first registration: map the id to its new uid
		var uidb [8]byte
		binary.BigEndian.PutUint64(uidb[:], u.UID)
		_ = b.Set(keyUserID(u.ID), uidb[:], nil)
	}
	_ = b.Set(keyUser(u.UID), encodeUser(&u), nil)
	// Sync: the caller hands the token to a client right after we return;
	// a token that vanished in a crash would lock that client out.
	if err := b.Commit(pebble.Sync); err != nil {
		return User{}, fmt.Errorf("storage: register %s: %w", u.ID, err)
	}
	db.users.put(u)
	return u, nil
}

// UserByID returns the user with protocol id id, or ErrNotFound.
func (db *DB) UserByID(id string) (User, error) {
	if uid, ok := db.users.uid(id); ok {
		return db.UserByUID(uid)
	}
	v, err := db.get(keyUserID(id))
	if err != nil {
		return User{}, err
	}
	if len(v) != 8 {
		return User{}, errCorrupt
	}
	uid := binary.BigEndian.Uint64(v)
	db.users.putID(id, uid)
	return db.UserByUID(uid)
}

// UserByUID returns the user with internal id uid, or ErrNotFound.
func (db *DB) UserByUID(uid uint64) (User, error) {
	u, gen, ok := db.users.user(uid)
	if ok {
		return u, nil
	}
	v, err := db.get(keyUser(uid))
	if err != nil {
		return User{}, err
	}
	if u, err = decodeUser(uid, v); err == nil {
		db.users.fill(u, gen)
	}
	return u, err
}

// TokenUser returns the user a token is bound to. A token that expired at
// or before now fails with ErrTokenExpired; an unknown one with ErrNotFound.
func (db *DB) TokenUser(token string, now int64) (User, error) {
	if token == "" {
		return User{}, ErrNotFound
	}
	v, err := db.get(keyToken(token))
	if err != nil {
		return User{}, err
	}
	uid, exp := decodeToken(v)
	if exp <= now {
		return User{}, ErrTokenExpired
	}
	return db.UserByUID(uid)
}

func encodeToken(uid uint64, expire int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uid)
	binary.BigEndian.PutUint64(b[8:], uint64(expire))
	return b
}

func decodeToken(v []byte) (uid uint64, expire int64) {
	if len(v) != 16 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:]))
}
