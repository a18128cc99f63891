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

// PROTOCOL §1.1 (ext): each (user, terminal) keeps its 4 newest tokens;
// binding a fifth revokes the oldest; other terminals are untouched; a
// rebound token counts as new.
func TestSection1_1_FifthTokenRevokesOldest(t *testing.T) {
	db := openTest(t, t.TempDir())
	const ttl = 1_000_000
	now := int64(1000)
	bind(t, db, "agent_1", "app", "app-token-0000000", now, ttl)
	for i := 0; i < 4; i++ {
		now++
		bind(t, db, "agent_1", "pc", tok(i), now, ttl)
	}
	for i := 0; i < 4; i++ {
		expectOwner(t, db, tok(i), "agent_1", now)
	}
	now++
	bind(t, db, "agent_1", "pc", tok(4), now, ttl)
	expectRefused(t, db, tok(0), now, ErrNotFound)
	for i := 1; i <= 4; i++ {
		expectOwner(t, db, tok(i), "agent_1", now)
	}
	expectOwner(t, db, "app-token-0000000", "agent_1", now)

	// Refreshing tok(1), the oldest, makes it the newest: the next binding
	// revokes tok(2) instead.
	now++
	bind(t, db, "agent_1", "pc", tok(1), now, ttl)
	now++
	bind(t, db, "agent_1", "pc", tok(5), now, ttl)
	expectRefused(t, db, tok(2), now, ErrNotFound)
	for _, i := range []int{1, 3, 4, 5} {
		expectOwner(t, db, tok(i), "agent_1", now)
	}

	// Expired tokens leave the list without revoking live ones: after the
	// four expire, four new ones bind and all of them log in.
	now += ttl
	for i := 10; i < 14; i++ {
		now++
		bind(t, db, "agent_1", "pc", tok(i), now, ttl)
	}
	for i := 10; i < 14; i++ {
		expectOwner(t, db, tok(i), "agent_1", now)
	}
	l, err := db.tokenList(keyTokenList(1, "pc"))
	if err != nil || len(l) != 4 || l[0].token != tok(10) || l[3].token != tok(13) {
		t.Fatalf("list %+v %v", l, err)
	}
}

// PROTOCOL §1.1: a token moved to another terminal leaves the old
// terminal's list, so it no longer takes one of its four places.
func TestSection1_1_TokenMovesTerminal(t *testing.T) {
	db := openTest(t, t.TempDir())
	const ttl = 1_000_000
	bind(t, db, "agent_1", "pc", tok(0), 1, ttl)
	bind(t, db, "agent_1", "h5", tok(0), 2, ttl)
	info, err := db.TokenInfo(tok(0), 3)
	if err != nil || info.Terminal != "h5" || info.IssuedAt != 2 || info.Legacy {
		t.Fatalf("moved token %+v %v", info, err)
	}
	if l, _ := db.tokenList(keyTokenList(1, "pc")); len(l) != 0 {
		t.Fatalf("old list still holds %+v", l)
	}
	if _, err := db.get(keyTokenList(1, "pc")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty old list not deleted: %v", err)
	}
	for i := 1; i <= 4; i++ {
		bind(t, db, "agent_1", "pc", tok(i), int64(2+i), ttl)
	}
	// Four more pc tokens fit: tok(0) takes no place in the pc list.
	for i := 1; i <= 4; i++ {
		expectOwner(t, db, tok(i), "agent_1", 10)
	}
	expectOwner(t, db, tok(0), "agent_1", 10)
}

// Concurrent bindings of one (user, terminal) leave at most four tokens
// that log in, and exactly the four newest listed.
func TestSection1_1_ConcurrentBindingsKeepFour(t *testing.T) {
	db := openTest(t, t.TempDir())
	const n = 40
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if _, err := db.Register(Registration{User: User{ID: "agent_1", Terminal: "pc"}, Token: tok(i), TokenExpire: 1000, Now: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	live := 0
	for i := 0; i < n; i++ {
		if _, err := db.TokenUser(tok(i), 2); err == nil {
			live++
		}
	}
	l, err := db.tokenList(keyTokenList(1, "pc"))
	if live != MaxTokensPerTerminal || err != nil || len(l) != MaxTokensPerTerminal {
		t.Fatalf("%d tokens log in, list %+v %v; want %d", live, l, err, MaxTokensPerTerminal)
	}
	for _, e := range l {
		expectOwner(t, db, e.token, "agent_1", 2)
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

// PROTOCOL §1.5: logout of one terminal revokes that terminal's tokens and
// every v1 token of the user; logout without a terminal revokes all.
func TestSection1_5_RevokeTokens(t *testing.T) {
	db := openTest(t, t.TempDir())
	const ttl = 1000
	u := bind(t, db, "agent_1", "pc", tok(0), 1, ttl)
	bind(t, db, "agent_1", "pc", tok(1), 2, ttl)
	bind(t, db, "agent_1", "app", tok(2), 3, ttl)
	bind(t, db, "agent_1", "", tok(3), 4, ttl)
	bind(t, db, "agent_2", "pc", tok(4), 5, ttl)
	putV1Token(t, db, "legacy-agent-1", u.UID, ttl)

	got, n, err := db.RevokeTokens("agent_1", "pc", 10)
	if err != nil || n != 2 || got.UID != u.UID {
		t.Fatalf("RevokeTokens pc = %+v, %d, %v; want 2 revoked", got, n, err)
	}
	expectRefused(t, db, tok(0), 10, ErrNotFound)
	expectRefused(t, db, tok(1), 10, ErrNotFound)
	expectRefused(t, db, "legacy-agent-1", 10, ErrTokenRevoked)
	expectOwner(t, db, tok(2), "agent_1", 10)
	expectOwner(t, db, tok(3), "agent_1", 10)
	expectOwner(t, db, tok(4), "agent_2", 10)

	// A token bound after the logout logs in.
	bind(t, db, "agent_1", "pc", tok(5), 11, ttl)
	expectOwner(t, db, tok(5), "agent_1", 12)

	if _, n, err := db.RevokeTokens("agent_1", "", 13); err != nil || n != 3 {
		t.Fatalf("RevokeTokens all = %d, %v; want 3", n, err)
	}
	for _, i := range []int{2, 3, 5} {
		expectRefused(t, db, tok(i), 13, ErrNotFound)
	}
	expectOwner(t, db, tok(4), "agent_2", 13)
	if _, n, err := db.RevokeTokens("agent_1", "", 14); err != nil || n != 0 {
		t.Fatalf("second logout = %d, %v", n, err)
	}
	if _, _, err := db.RevokeTokens("nobody", "", 14); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

// A token that expired and was rebound by another user is that user's:
// neither the first owner's logout nor its next bindings delete it.
func TestSection1_5_RevokeSparesReboundToken(t *testing.T) {
	db := openTest(t, t.TempDir())
	bind(t, db, "agent_1", "pc", tok(0), 1, 10)
	bind(t, db, "agent_2", "pc", tok(0), 20, 1000)
	if _, n, err := db.RevokeTokens("agent_1", "pc", 30); err != nil || n != 0 {
		t.Fatalf("RevokeTokens = %d, %v; want 0", n, err)
	}
	expectOwner(t, db, tok(0), "agent_2", 30)

	bind(t, db, "agent_3", "pc", tok(10), 1, 10)
	bind(t, db, "agent_2", "app", tok(10), 20, 1000)
	for i := 11; i <= 14; i++ {
		bind(t, db, "agent_3", "pc", tok(i), int64(10+i), 1000)
	}
	expectOwner(t, db, tok(10), "agent_2", 30)
	for i := 11; i <= 14; i++ {
		expectOwner(t, db, tok(i), "agent_3", 30)
	}
}

// PROTOCOL §1.1 (ext): expired token records, v1 and v2, are purged by a
// sweep that reads at most max records per call and wraps around.
func TestSection1_1_SweepPurgesExpiredTokens(t *testing.T) {
	db := openTest(t, t.TempDir())
	u := bind(t, db, "agent_1", "pc", tok(0), 1, 100) // expires at 101
	for i := 1; i < 10; i++ {
		id := fmt.Sprintf("user_%d", i)
		ttl := int64(100)
		if i%2 == 0 {
			ttl = 10_000 // the even ones outlive the sweep
		}
		bind(t, db, id, "pc", tok(i), 1, ttl)
	}
	putV1Token(t, db, "legacy-expired", u.UID, 50)
	putV1Token(t, db, "legacy-live", u.UID, 10_000)
	if err := db.pdb.Set(keyToken("garbage"), []byte{1, 2, 3}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	const total = 13 // records in t|
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
	if n := countTokens(); n != total {
		t.Fatalf("%d token records, want %d", n, total)
	}
	// At 100 only the v1 token that expired at 50 and the unreadable
	// record go.
	if n, err := db.SweepTokens(100, 1000); err != nil || n != 2 {
		t.Fatalf("sweep at 100 = %d, %v; want 2", n, err)
	}
	// At 200, sweeps of at most 4 records cover the 11 left in three calls,
	// deleting tok 0, 1, 3, 5, 7 and 9, and then wrap.
	const dead = 6
	purged := 0
	for i := 0; i < 3; i++ {
		n, err := db.SweepTokens(200, 4)
		if err != nil || n > 4 {
			t.Fatalf("sweep %d = %d, %v", i, n, err)
		}
		purged += n
	}
	if purged != dead {
		t.Fatalf("three sweeps of 4 purged %d, want %d", purged, dead)
	}
	if n := countTokens(); n != total-2-dead {
		t.Fatalf("%d records left, want %d", n, total-2-dead)
	}
	for i := 0; i < 10; i++ {
		if i%2 == 0 && i > 0 {
			expectOwner(t, db, tok(i), fmt.Sprintf("user_%d", i), 200)
		} else {
			expectRefused(t, db, tok(i), 200, ErrNotFound)
		}
	}
	expectOwner(t, db, "legacy-live", "agent_1", 200)
	// The cursor reached the end: the next call starts over and finds
	// nothing more to purge until later.
	if n, err := db.SweepTokens(200, 100); err != nil || n != 0 {
		t.Fatalf("sweep after wrap = %d, %v", n, err)
	}
	if n, err := db.SweepTokens(20_000, 100); err != nil || n != 5 {
		t.Fatalf("final sweep = %d, %v; want 5", n, err)
	}
	if n := countTokens(); n != 0 {
		t.Fatalf("%d records left after all expired", n)
	}
	if n, err := db.SweepTokens(20_000, 0); err != nil || n != 0 {
		t.Fatalf("sweep of 0 = %d, %v", n, err)
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
