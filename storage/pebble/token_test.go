package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// bind registers id on terminal with token at now, valid for ttl.
func bind(t testing.TB, db *DB, id, terminal, token string, now, ttl int64) User {
	t.Helper()
	u, err := db.Register(Registration{
		User:  User{ID: id, Type: UserAgent, Terminal: terminal},
		Token: token, TokenExpire: now + ttl, Now: now,
	})
	if err != nil {
		t.Fatalf("Register(%s, %s, %s): %v", id, terminal, token, err)
	}
	return u
}

// expectOwner checks that token logs in as id at now.
func expectOwner(t testing.TB, db *DB, token, id string, now int64) {
	t.Helper()
	u, err := db.TokenUser(token, now)
	if err != nil || u.ID != id {
		t.Fatalf("TokenUser(%s) at %d = %+v, %v; want %s", token, now, u, err, id)
	}
}

// expectRefused checks that token does not log in at now, with want.
func expectRefused(t testing.TB, db *DB, token string, now int64, want error) {
	t.Helper()
	if u, err := db.TokenUser(token, now); !errors.Is(err, want) {
		t.Fatalf("TokenUser(%s) at %d = %+v, %v; want %v", token, now, u, err, want)
	}
}

// putV1Token writes a token record as the release before token lists did.
func putV1Token(t testing.TB, db *DB, token string, uid uint64, expire int64) {
	t.Helper()
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uid)
	binary.BigEndian.PutUint64(v[8:], uint64(expire))
	if err := db.pdb.Set(keyToken(token), v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func tok(i int) string { return fmt.Sprintf("token-%02d-padded-to-16", i) }

// token.go, K| lists: each (user, terminal) lists its newest tokens,
// oldest first; a fifth binding drops the oldest, expired entries leave
// the list, a token moved to another terminal leaves its old list (deleted
// once empty), and concurrent bindings leave exactly four listed, each of
// which logs in. (Which tokens log in is in the storagetest suite.)
func TestTokenListsKeepTheNewest(t *testing.T) {
	db := openTest(t, t.TempDir())
	const ttl = 1_000_000
	list := func(uid uint64, terminal string) []string {
		t.Helper()
		l, err := db.tokenList(keyTokenList(uid, terminal))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range l {
			out = append(out, e.token)
		}
		return out
	}
	want := func(uid uint64, terminal string, toks ...int) {
		t.Helper()
		var w []string
		for _, i := range toks {
			w = append(w, tok(i))
		}
		if got := list(uid, terminal); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("list of %d %q: %v, want %v", uid, terminal, got, w)
		}
	}
	u := bind(t, db, "agent_1", "pc", tok(0), 1, ttl)
	for i := 1; i < 5; i++ {
		bind(t, db, "agent_1", "pc", tok(i), int64(1+i), ttl)
	}
	want(u.UID, "pc", 1, 2, 3, 4)
	bind(t, db, "agent_1", "pc", tok(1), 6, ttl) // refreshed: the newest
	want(u.UID, "pc", 2, 3, 4, 1)
	now := int64(6) + ttl
	for i := 10; i < 14; i++ {
		now++
		bind(t, db, "agent_1", "pc", tok(i), now, ttl)
	}
	want(u.UID, "pc", 10, 11, 12, 13)
	bind(t, db, "agent_1", "h5", tok(13), now+1, ttl)
	want(u.UID, "pc", 10, 11, 12)
	want(u.UID, "h5", 13)
	bind(t, db, "agent_1", "pc", tok(13), now+2, ttl)
	want(u.UID, "pc", 10, 11, 12, 13)
	if _, err := db.get(keyTokenList(u.UID, "h5")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty list not deleted: %v", err)
	}

	const n = 40
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if _, err := db.Register(Registration{User: User{ID: "agent_2", Terminal: "pc"}, Token: tok(100 + i), TokenExpire: 1000, Now: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	u2, err := db.UserByID("agent_2")
	if err != nil {
		t.Fatal(err)
	}
	l := list(u2.UID, "pc")
	if len(l) != MaxTokensPerTerminal {
		t.Fatalf("list after concurrent bindings %v, want %d", l, MaxTokensPerTerminal)
	}
	for _, token := range l {
		expectOwner(t, db, token, "agent_2", 2)
	}
}

// Data directories of the previous release: a v1 token record logs in until
// it expires, with the profile's terminal; it is in no list, so it does not
// count against the four.
func TestSection1_1_LegacyTokenStillLogsIn(t *testing.T) {
	db := openTest(t, t.TempDir())
	u := bind(t, db, "visitor_1", "h5", tok(0), 1, 1000)
	putV1Token(t, db, "legacy", u.UID, 500)
	info, err := db.TokenInfo("legacy", 2)
	if err != nil || info.User.ID != "visitor_1" || info.Terminal != "h5" || !info.Legacy || info.ExpireAt != 500 {
		t.Fatalf("v1 token %+v %v", info, err)
	}
	for i := 1; i <= 4; i++ {
		bind(t, db, "visitor_1", "h5", tok(i), int64(2+i), 1000)
	}
	expectOwner(t, db, "legacy", "visitor_1", 10)
	expectRefused(t, db, "legacy", 500, ErrTokenExpired)
	// Rebinding it through Register makes it a v2 token of the list.
	bind(t, db, "visitor_1", "h5", "legacy", 20, 1000)
	if info, err := db.TokenInfo("legacy", 21); err != nil || info.Legacy || info.Terminal != "h5" {
		t.Fatalf("rebound v1 token %+v %v", info, err)
	}
}

// PROTOCOL §1.5 with v1 tokens (token.go): any logout of a user, of one
// terminal or of all, revokes its v1 tokens, which carry no terminal
// (ErrTokenRevoked); the user's other terminals and other users' v1 tokens
// stay. (Logout of v2 tokens is in the storagetest suite.)
func TestSection1_5_RevokeTokensRevokesLegacy(t *testing.T) {
	db := openTest(t, t.TempDir())
	u := bind(t, db, "agent_1", "pc", tok(0), 1, 1000)
	u2 := bind(t, db, "agent_2", "pc", tok(1), 1, 1000)
	putV1Token(t, db, "legacy-agent-1", u.UID, 1000)
	putV1Token(t, db, "legacy-agent-2", u2.UID, 1000)
	expectOwner(t, db, "legacy-agent-1", "agent_1", 10)
	if _, n, err := db.RevokeTokens("agent_1", "app", 10); err != nil || n != 0 {
		t.Fatalf("RevokeTokens app = %d, %v; want 0 revoked", n, err)
	}
	expectRefused(t, db, "legacy-agent-1", 10, ErrTokenRevoked)
	expectOwner(t, db, tok(0), "agent_1", 10)
	expectOwner(t, db, "legacy-agent-2", "agent_2", 10)
	if _, n, err := db.RevokeTokens("agent_2", "", 11); err != nil || n != 1 {
		t.Fatalf("RevokeTokens agent_2 = %d, %v; want 1 revoked", n, err)
	}
	expectRefused(t, db, "legacy-agent-2", 11, ErrTokenRevoked)
}

// PROTOCOL §1.1 with v1 and unreadable token records (token.go): a sweep
// deletes expired v1 records and unreadable ones and keeps live v1 ones;
// once all expired, no t| record is left. (The sweep of v2 tokens is in
// the storagetest suite.)
func TestSection1_1_SweepPurgesLegacyTokens(t *testing.T) {
	db := openTest(t, t.TempDir())
	u := bind(t, db, "agent_1", "pc", tok(0), 1, 100) // expires at 101
	putV1Token(t, db, "legacy-expired", u.UID, 50)
	putV1Token(t, db, "legacy-live", u.UID, 10_000)
	if err := db.pdb.Set(keyToken("garbage"), []byte{1, 2, 3}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	countTokens := func() int {
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixToken), UpperBound: []byte(prefixTokenEnd)})
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		return n
	}
	if n := countTokens(); n != 4 {
		t.Fatalf("%d token records, want 4", n)
	}
	if n, err := db.SweepTokens(100, 1000); err != nil || n != 2 {
		t.Fatalf("sweep at 100 = %d, %v; want the expired v1 and the unreadable record", n, err)
	}
	if n := countTokens(); n != 2 {
		t.Fatalf("%d records left, want 2", n)
	}
	expectOwner(t, db, "legacy-live", "agent_1", 200)
	expectRefused(t, db, "legacy-expired", 200, ErrNotFound)
	if n, err := db.SweepTokens(20_000, 1000); err != nil || n != 2 {
		t.Fatalf("final sweep = %d, %v; want 2", n, err)
	}
	if n := countTokens(); n != 0 {
		t.Fatalf("%d records left after all expired", n)
	}
}

// A token rebound between a sweep's scan and its purge stays bound.
func TestSection1_1_SweepSparesRebound(t *testing.T) {
	db := openTest(t, t.TempDir())
	bind(t, db, "agent_1", "pc", tok(0), 1, 10)
	bind(t, db, "agent_2", "pc", tok(0), 20, 1000)
	if n, err := db.purgeTokens([]string{tok(0)}, 20); err != nil || n != 0 {
		t.Fatalf("purge of a rebound token = %d, %v", n, err)
	}
	expectOwner(t, db, tok(0), "agent_2", 21)
}

func TestTokenRecordRoundTrip(t *testing.T) {
	for _, r := range []tokenRecord{
		{uid: 1, expire: 2, issued: 3, terminal: "pc"},
		{uid: 1 << 60, expire: 1 << 50, issued: 7},
		{uid: 9, expire: 10, issued: 11, terminal: "0123456789abcdef0123456789abcdef"},
	} {
		got, err := decodeToken(encodeToken(r.uid, r.expire, r.issued, r.terminal))
		if err != nil || got != r {
			t.Errorf("round trip %+v → %+v %v", r, got, err)
		}
	}
	v1 := make([]byte, 16)
	v1[7], v1[15] = 5, 6
	if got, err := decodeToken(v1); err != nil || got != (tokenRecord{uid: 5, expire: 6, legacy: true}) {
		t.Errorf("v1 → %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, make([]byte, 15), make([]byte, 17), make([]byte, 24), append(make([]byte, 16), 3, 0, 0, 0, 0, 0, 0, 0, 0)} {
		if _, err := decodeToken(bad); err == nil {
			t.Errorf("decodeToken(%x) accepted", bad)
		}
	}
	l := []listedToken{{1, "a"}, {2, string(make([]byte, 300))}, {3, ""}}
	got, err := decodeTokenList(encodeTokenList(l))
	if err != nil || len(got) != len(l) {
		t.Fatalf("list round trip %v", err)
	}
	for i := range l {
		if got[i] != l[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], l[i])
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	f.Add(encodeToken(1, 2, 3, "pc"))
	f.Add(make([]byte, 16))
	f.Add(encodeTokenList([]listedToken{{1, "abc"}, {2, "de"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeToken(b); err == nil && !r.legacy {
			again, err := decodeToken(encodeToken(r.uid, r.expire, r.issued, r.terminal))
			if err != nil || again != r {
				t.Fatalf("re-encode of %+v → %+v %v", r, again, err)
			}
		}
		if l, err := decodeTokenList(b); err == nil {
			again, err := decodeTokenList(encodeTokenList(l))
			if err != nil || len(again) != len(l) {
				t.Fatalf("re-encode of list %+v → %+v %v", l, again, err)
			}
		}
	})
}
