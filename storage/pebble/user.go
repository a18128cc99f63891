package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

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
// the user on the profile's terminal. Both happen in one synced batch, or
// neither does. A token bound to another user and not yet expired fails
// with ErrTokenTaken and changes nothing. Binding a token to a (user,
// terminal) that already holds MaxTokensPerTerminal unexpired tokens
// revokes the oldest of them (token.go). It returns the stored user. It is
// safe for concurrent use.
func (db *DB) Register(r Registration) (User, error) {
	var set stripeSet
	set.add(db.stripeOf(r.User.ID))
	if r.Token != "" {
		set.add(db.stripeOf(r.Token))
	}
	for {
		unlock := db.lockStripes(&set)
		u, more, err := db.registerLocked(r, &set)
		unlock()
		if !more {
			return u, err
		}
	}
}

// registerLocked is Register under the stripes of set. If it must revoke a
// token outside set it adds its stripe and reports more, having written
// nothing: the caller locks the larger set and calls again.
func (db *DB) registerLocked(r Registration, set *stripeSet) (_ User, more bool, _ error) {
	u := r.User
	prev, err := db.UserByID(u.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, false, err
	}
	var old tokenRecord // r.Token's record while it is prev's
	if r.Token != "" {
		rec, ok, err := db.tokenRecordOf(r.Token)
		switch {
		case err != nil:
			return User{}, false, err
		case !ok:
		case prev.UID != 0 && rec.uid == prev.UID:
			old = rec
		case rec.expire > r.Now:
			return User{}, false, ErrTokenTaken
		}
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if r.Token != "" && prev.UID != 0 {
		// A new user has no lists; an existing one's are pruned here.
		if more, err := db.listTokenLocked(b, prev.UID, r, old, set); more || err != nil {
			return User{}, more, err
		}
	}
	if prev.UID != 0 {
		u.UID, u.Created = prev.UID, prev.Created
	} else {
		u.UID, u.Created = db.nextUID.Add(1)-1, r.Now
	}
	u.Updated = r.Now
	if r.Token != "" {
		_ = b.Set(keyToken(r.Token), encodeToken(u.UID, r.TokenExpire, r.Now, u.Terminal), nil)
		if prev.UID == 0 {
			_ = b.Set(keyTokenList(u.UID, u.Terminal), encodeTokenList([]listedToken{{issued: r.Now, token: r.Token}}), nil)
		}
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
		return User{}, false, fmt.Errorf("storage: register %s: %w", u.ID, err)
	}
	db.users.put(u)
	return u, false, nil
}

// listTokenLocked adds r.Token as the newest entry of the list of (uid,
// r.User.Terminal) in b: it drops entries that expired, were revoked or
// now point elsewhere, drops r.Token itself (from the list of the terminal
// it was bound on before, old, too), and revokes the oldest entries until
// MaxTokensPerTerminal-1 remain. A token to revoke outside set is added to
// set and reported as more, with nothing written.
func (db *DB) listTokenLocked(b *pebble.Batch, uid uint64, r Registration, old tokenRecord, set *stripeSet) (more bool, _ error) {
	terminal := r.User.Terminal
	if old.uid == uid && !old.legacy && old.terminal != terminal {
		// The token moves to another terminal: drop it from the old list.
		k := keyTokenList(uid, old.terminal)
		l, err := db.tokenList(k)
		if err != nil {
			return false, err
		}
		kept := l[:0]
		for _, e := range l {
			if e.token != r.Token {
				kept = append(kept, e)
			}
		}
		if len(kept) == 0 {
			_ = b.Delete(k, nil)
		} else if len(kept) != len(l) {
			_ = b.Set(k, encodeTokenList(kept), nil)
		}
	}
	k := keyTokenList(uid, terminal)
	l, err := db.tokenList(k)
	if err != nil {
		return false, err
	}
	kept := l[:0]
	for _, e := range l {
		if e.token == r.Token {
			continue // refreshed: appended again as the newest
		}
		rec, ok, err := db.tokenRecordOf(e.token)
		if err != nil {
			return false, err
		}
		if ok && rec.uid == uid && !rec.legacy && rec.terminal == terminal && rec.expire > r.Now {
			kept = append(kept, e)
		}
	}
	revoke := 0
	if len(kept) >= MaxTokensPerTerminal {
		revoke = len(kept) - (MaxTokensPerTerminal - 1)
	}
	for _, e := range kept[:revoke] {
		if set.add(db.stripeOf(e.token)) {
			more = true
		}
	}
	if more {
		return true, nil
	}
	for _, e := range kept[:revoke] {
		_ = b.Delete(keyToken(e.token), nil)
	}
	kept = append(kept[revoke:], listedToken{issued: r.Now, token: r.Token})
	_ = b.Set(k, encodeTokenList(kept), nil)
	return false, nil
}

// UserByID returns the user with protocol id id, or ErrNotFound.
func (db *DB) UserByID(id string) (User, error) {
	if !db.enter() {
		return User{}, ErrClosed
	}
	defer db.leave()
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
	if !db.enter() {
		return User{}, ErrClosed
	}
	defer db.leave()
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
