package pebble

// Token lifecycle (PROTOCOL §1.1, §1.5).
//
// A token record t|<token> binds a connection token to a user until it
// expires. Two formats are on disk, told apart by length:
//
//	v1: uid(8B BE) expireAt(8B BE)                                   16 bytes, written before token lists
//	v2: uid(8B BE) expireAt(8B BE) 0x02 issuedAt(8B BE) terminal     25 bytes and more
//
// Each (user, terminal) keeps its MaxTokensPerTerminal newest tokens, listed
// in K|uid|terminal oldest first. Binding one more revokes the oldest: its t|
// record is deleted, so it no longer logs in; connections already open with
// it stay, since a connection is authenticated once, at login. Logout
// (RevokeTokens) deletes the listed tokens of one terminal or of all of them.
//
// v1 tokens carry no terminal and are in no list. Any logout of their user
// revokes them: it writes R|uid, and a v1 token of a user with R|uid is
// refused. A connection that logs in with a v1 token takes the terminal of
// its user's profile.
//
// Expired records of both formats are deleted by SweepTokens, a bounded walk
// over t| that the router repeats in the background. List entries of tokens
// that expired or were revoked are dropped by the next Register of that
// (user, terminal).
//
// Every read-then-write of token records holds the lock stripes of the user
// id and of every token it may delete (stripeSet), taken in ascending order,
// so that a token is never deleted after another user rebound it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Token record formats.
const (
	tokenV1Len    = 16
	tokenRecordV2 = 2
	tokenV2Head   = 25 // uid, expireAt, version, issuedAt
)

// tokenRecord is a decoded t| value.
type tokenRecord struct {
	uid      uint64
	expire   int64
	issued   int64  // 0 for v1
	terminal string // "" for v1
	legacy   bool
}

func encodeToken(uid uint64, expire, issued int64, terminal string) []byte {
	b := make([]byte, 0, tokenV2Head+len(terminal))
	b = binary.BigEndian.AppendUint64(b, uid)
	b = binary.BigEndian.AppendUint64(b, uint64(expire))
	b = append(b, tokenRecordV2)
	b = binary.BigEndian.AppendUint64(b, uint64(issued))
	return append(b, terminal...)
}

func decodeToken(v []byte) (tokenRecord, error) {
	switch {
	case len(v) == tokenV1Len:
		return tokenRecord{
			uid:    binary.BigEndian.Uint64(v),
			expire: int64(binary.BigEndian.Uint64(v[8:])),
			legacy: true,
		}, nil
	case len(v) >= tokenV2Head && v[16] == tokenRecordV2:
		return tokenRecord{
			uid:      binary.BigEndian.Uint64(v),
			expire:   int64(binary.BigEndian.Uint64(v[8:])),
			issued:   int64(binary.BigEndian.Uint64(v[17:])),
			terminal: string(v[tokenV2Head:]),
		}, nil
	}
	return tokenRecord{}, errCorrupt
}

// listedToken is one entry of a K| list.
type listedToken struct {
	issued int64
	token  string
}

// encodeTokenList: per entry, issuedAt(8B BE) then the token as uvarint
// length and bytes; oldest first.
func encodeTokenList(l []listedToken) []byte {
	n := 0
	for _, e := range l {
		n += 8 + binary.MaxVarintLen16 + len(e.token)
	}
	b := make([]byte, 0, n)
	for _, e := range l {
		b = binary.BigEndian.AppendUint64(b, uint64(e.issued))
		b = binary.AppendUvarint(b, uint64(len(e.token)))
		b = append(b, e.token...)
	}
	return b
}

func decodeTokenList(b []byte) ([]listedToken, error) {
	var l []listedToken
	for len(b) > 0 {
		if len(b) < 9 {
			return nil, errCorrupt
		}
		e := listedToken{issued: int64(binary.BigEndian.Uint64(b))}
		b = b[8:]
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, errCorrupt
		}
		e.token = string(b[w : w+int(n)])
		b = b[w+int(n):]
		l = append(l, e)
	}
	return l, nil
}

// tokenList reads K|uid|terminal; a missing list is empty, a corrupt one
// is dropped (its tokens stay valid until they expire, unlisted).
func (db *DB) tokenList(key []byte) ([]listedToken, error) {
	v, err := db.get(key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l, err := decodeTokenList(v)
	if err != nil {
		db.log.Error("dropping corrupt token list", "key", fmt.Sprintf("%q", key))
		return nil, nil
	}
	return l, nil
}

// tokenRecordOf reads t|token; ok is false when it is missing or corrupt.
func (db *DB) tokenRecordOf(token string) (rec tokenRecord, ok bool, err error) {
	v, err := db.get(keyToken(token))
	if errors.Is(err, ErrNotFound) {
		return tokenRecord{}, false, nil
	}
	if err != nil {
		return tokenRecord{}, false, err
	}
	rec, err = decodeToken(v)
	return rec, err == nil, nil
}

// TokenInfo returns what token is bound to. A token that expired at or
// before now fails with ErrTokenExpired, a v1 token of a user who logged
// out with ErrTokenRevoked, an unknown or revoked v2 one with ErrNotFound.
// It is safe for concurrent use.
func (db *DB) TokenInfo(token string, now int64) (TokenInfo, error) {
	if !db.enter() {
		return TokenInfo{}, ErrClosed
	}
	defer db.leave()
	if token == "" {
		return TokenInfo{}, ErrNotFound
	}
	v, err := db.get(keyToken(token))
	if err != nil {
		return TokenInfo{}, err
	}
	rec, err := decodeToken(v)
	if err != nil {
		return TokenInfo{}, fmt.Errorf("storage: token record: %w", err)
	}
	if rec.expire <= now {
		return TokenInfo{}, ErrTokenExpired
	}
	u, err := db.UserByUID(rec.uid)
	if err != nil {
		return TokenInfo{}, err
	}
	info := TokenInfo{User: u, Terminal: rec.terminal, IssuedAt: rec.issued, ExpireAt: rec.expire, Legacy: rec.legacy}
	if rec.legacy {
		switch _, err := db.get(keyRevoked(rec.uid)); {
		case err == nil:
			return TokenInfo{}, ErrTokenRevoked
		case !errors.Is(err, ErrNotFound):
			return TokenInfo{}, err
		}
		info.Terminal = u.Terminal
	}
	return info, nil
}

// TokenUser returns the user a token is bound to; see TokenInfo.
func (db *DB) TokenUser(token string, now int64) (User, error) {
	if !db.enter() {
		return User{}, ErrClosed
	}
	defer db.leave()
	info, err := db.TokenInfo(token, now)
	return info.User, err
}

// RevokeTokens logs user id out (PROTOCOL §1.5): it deletes the listed
// tokens of terminal, or of every terminal when terminal is "", and marks
// the user so that its v1 tokens, which carry no terminal, no longer log
// in. It returns the user and how many unexpired tokens it revoked. An
// unknown user fails with ErrNotFound. It is safe for concurrent use.
func (db *DB) RevokeTokens(id, terminal string, now int64) (User, int, error) {
	var set stripeSet
	set.add(db.stripeOf(id))
	for {
		unlock := db.lockStripes(&set)
		u, n, more, err := db.revokeLocked(id, terminal, now, &set)
		unlock()
		if !more {
			return u, n, err
		}
	}
}

// revokeLocked is RevokeTokens under the stripes of set. If a listed token
// is outside set it adds its stripe and reports more: the caller locks the
// larger set and calls again.
func (db *DB) revokeLocked(id, terminal string, now int64, set *stripeSet) (u User, n int, more bool, err error) {
	u, err = db.UserByID(id)
	if err != nil {
		return User{}, 0, false, err
	}
	var keys [][]byte
	var tokens []string
	if terminal != "" {
		k := keyTokenList(u.UID, terminal)
		l, err := db.tokenList(k)
		if err != nil {
			return User{}, 0, false, err
		}
		keys = append(keys, k)
		for _, e := range l {
			tokens = append(tokens, e.token)
		}
	} else if keys, tokens, err = db.allTokenLists(u.UID); err != nil {
		return User{}, 0, false, err
	}
	for _, tok := range tokens {
		if set.add(db.stripeOf(tok)) {
			more = true
		}
	}
	if more {
		return User{}, 0, true, nil
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	for _, k := range keys {
		_ = b.Delete(k, nil)
	}
	for _, tok := range tokens {
		rec, ok, err := db.tokenRecordOf(tok)
		if err != nil {
			return User{}, 0, false, err
		}
		if !ok || rec.uid != u.UID {
			continue // gone, or rebound to another user after it expired
		}
		_ = b.Delete(keyToken(tok), nil)
		if rec.expire > now {
			n++
		}
	}
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(now))
	_ = b.Set(keyRevoked(u.UID), ms[:], nil)
	// Sync: the backend is told the user is logged out; a token back from
	// a crash would let someone who left the company in again.
	if err := b.Commit(pebble.Sync); err != nil {
		return User{}, 0, false, fmt.Errorf("storage: revoke tokens of %s: %w", id, err)
	}
	return u, n, false, nil
}

// allTokenLists returns the keys of uid's K| lists and the tokens they
// hold. The range is one user's: one list per terminal it registered with.
func (db *DB) allTokenLists(uid uint64) (keys [][]byte, tokens []string, err error) {
	if db.closed.Load() {
		return nil, nil, ErrClosed
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: keyTokenList(uid, ""),
		UpperBound: keyTokenList(uid+1, ""),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("storage: token lists of %d: %w", uid, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()...))
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, nil, err
		}
		l, err := decodeTokenList(v)
		if err != nil {
			continue // a corrupt list is deleted; its tokens expire unlisted
		}
		for _, e := range l {
			tokens = append(tokens, e.token)
		}
	}
	return keys, tokens, it.Error()
}

// sweepCursor is where the next SweepTokens of a DB starts.
type sweepCursor struct {
	mu   sync.Mutex // one sweep at a time
	next []byte     // nil: the start of t|
}

func (db *DB) sweepCursor() *sweepCursor { return &db.sweep }

// SweepTokens deletes expired token records (v1 and v2) and unreadable
// ones. Each call reads at most max records of t|, from where the previous
// call stopped; after the last record the next call starts again at the
// first. It returns how many it deleted. Calls are serialised; it is safe
// for concurrent use with everything but Close.
func (db *DB) SweepTokens(now int64, max int) (purged int, err error) {
	if max <= 0 {
		return 0, nil
	}
	if db.closed.Load() {
		return 0, ErrClosed
	}
	c := db.sweepCursor()
	c.mu.Lock()
	defer c.mu.Unlock()
	lower := c.next
	if lower == nil {
		lower = []byte(prefixToken)
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte(prefixTokenEnd)})
	if err != nil {
		return 0, fmt.Errorf("storage: sweep tokens: %w", err)
	}
	var dead []string
	var last []byte
	seen := 0
	for ok := it.First(); ok && seen < max; ok = it.Next() {
		seen++
		last = append(last[:0], it.Key()...) // it.Key is valid until Next
		v, err := it.ValueAndErr()
		if err != nil {
			break
		}
		if rec, err := decodeToken(v); err != nil || rec.expire <= now {
			dead = append(dead, string(last[len(prefixToken):]))
		}
	}
	if seen < max {
		c.next = nil // reached the end: wrap
	} else {
		c.next = append(last, 0) // the first key after last
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		c.next = nil
		return 0, fmt.Errorf("storage: sweep tokens: %w", err)
	}
	if len(dead) == 0 {
		return 0, nil
	}
	return db.purgeTokens(dead, now)
}

// purgeTokens deletes the records of tokens that are still expired (or
// unreadable) under their stripes: one rebound since the scan stays.
func (db *DB) purgeTokens(tokens []string, now int64) (int, error) {
	var set stripeSet
	for _, tok := range tokens {
		set.add(db.stripeOf(tok))
	}
	unlock := db.lockStripes(&set)
	defer unlock()
	b := db.pdb.NewBatch()
	defer b.Close()
	n := 0
	for _, tok := range tokens {
		v, err := db.get(keyToken(tok))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if rec, err := decodeToken(v); err == nil && rec.expire > now {
			continue
		}
		_ = b.Delete(keyToken(tok), nil)
		n++
	}
	if n == 0 {
		return 0, nil
	}
	// NoSync: a purge lost in a crash is done again by a later sweep, and
	// the records it deletes are expired, refused at login either way.
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("storage: purge tokens: %w", err)
	}
	return n, nil
}

// stripeSet is a set of the DB's lock stripes. lockStripes takes them in
// ascending order, as db.lock does, so lockers never deadlock.
type stripeSet [lockStripes / 64]uint64

func (db *DB) stripeOf(key string) int {
	return int(maphash.String(db.seed, key) & (lockStripes - 1))
}

// add adds stripe i and reports whether it was new.
func (s *stripeSet) add(i int) bool {
	w, bit := i/64, uint64(1)<<(i%64)
	if s[w]&bit != 0 {
		return false
	}
	s[w] |= bit
	return true
}

func (s *stripeSet) has(i int) bool { return s[i/64]&(uint64(1)<<(i%64)) != 0 }

// lockStripes locks every stripe of s and returns the function that
// unlocks them; s may grow in between, the function unlocks what it locked.
func (db *DB) lockStripes(s *stripeSet) (unlock func()) {
	locked := *s
	for i := range lockStripes {
		if locked.has(i) {
			db.stripes[i].Lock()
		}
	}
	return func() {
		for i := lockStripes - 1; i >= 0; i-- {
			if locked.has(i) {
				db.stripes[i].Unlock()
			}
		}
	}
}
