package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/imgate/imgate/storage"
)

// bind registers id on terminal with token at now, valid for ttl.
func bind(t testing.TB, db *DB, id, terminal, token string, now, ttl int64) storage.User {
	t.Helper()
	u, err := db.Register(storage.Registration{
		User:  storage.User{ID: id, Type: storage.UserAgent, Terminal: terminal},
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

func tok(i int) string { return fmt.Sprintf("token-%02d-padded-to-16", i) }

// countTokens counts the rows of tokens.
func countTokens(t testing.TB, db *DB) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(context.Background(), `SELECT count(*) FROM tokens`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// PROTOCOL §1.1 (ext): each (user, terminal) keeps the 4 tokens bound
// last, in the order of binding even within one millisecond: binding a
// fifth revokes the first; a rebound token counts as new; expired ones
// take no place.
func TestSection1_1_FifthTokenRevokesOldestWithinAMillisecond(t *testing.T) {
	db, _ := openTest(t, nil)
	const ttl, now = 1_000_000, 1000
	bind(t, db, "agent_1", "app", "app-token-0000000", now, ttl)
	for i := range 4 {
		bind(t, db, "agent_1", "pc", tok(i), now, ttl)
	}
	bind(t, db, "agent_1", "pc", tok(4), now, ttl)
	expectRefused(t, db, tok(0), now, storage.ErrNotFound)
	for i := 1; i <= 4; i++ {
		expectOwner(t, db, tok(i), "agent_1", now)
	}
	expectOwner(t, db, "app-token-0000000", "agent_1", now)

	// Refreshing tok(1), the oldest, makes it the newest: the next binding
	// revokes tok(2) instead.
	bind(t, db, "agent_1", "pc", tok(1), now, ttl)
	bind(t, db, "agent_1", "pc", tok(5), now, ttl)
	expectRefused(t, db, tok(2), now, storage.ErrNotFound)
	for _, i := range []int{1, 3, 4, 5} {
		expectOwner(t, db, tok(i), "agent_1", now)
	}

	// Expired tokens take no place: after the four expire, four new ones
	// bind and all of them log in.
	later := int64(now + ttl + 1)
	for i := 10; i < 14; i++ {
		bind(t, db, "agent_1", "pc", tok(i), later, ttl)
	}
	for i := 10; i < 14; i++ {
		expectOwner(t, db, tok(i), "agent_1", later)
	}
	expectRefused(t, db, tok(5), later, storage.ErrTokenExpired)
}

// PROTOCOL §1.1: a token moved to another terminal leaves the old
// terminal's four places.
func TestSection1_1_TokenMovesTerminal(t *testing.T) {
	db, _ := openTest(t, nil)
	const ttl = 1_000_000
	bind(t, db, "agent_1", "pc", tok(0), 1, ttl)
	bind(t, db, "agent_1", "h5", tok(0), 2, ttl)
	info, err := db.TokenInfo(tok(0), 3)
	if err != nil || info.Terminal != "h5" || info.IssuedAt != 2 || info.ExpireAt != 2+ttl || info.Legacy {
		t.Fatalf("moved token %+v %v", info, err)
	}
	for i := 1; i <= 4; i++ {
		bind(t, db, "agent_1", "pc", tok(i), int64(2+i), ttl)
	}
	for i := 0; i <= 4; i++ {
		expectOwner(t, db, tok(i), "agent_1", 10)
	}
}

// Concurrent bindings of one (user, terminal) on two nodes leave exactly
// four tokens that log in.
func TestSection1_1_ConcurrentBindingsOnTwoNodesKeepFour(t *testing.T) {
	db, url := openTest(t, nil)
	nodes := []*DB{db, openGateway(t, url)}
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := nodes[i%2].Register(storage.Registration{User: storage.User{ID: "agent_1", Terminal: "pc"}, Token: tok(i), TokenExpire: 1000, Now: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	live := 0
	for i := range n {
		if _, err := db.TokenUser(tok(i), 2); err == nil {
			live++
		}
	}
	if live != storage.MaxTokensPerTerminal || countTokens(t, db) != storage.MaxTokensPerTerminal {
		t.Fatalf("%d tokens log in, %d rows; want %d", live, countTokens(t, db), storage.MaxTokensPerTerminal)
	}
}

// PROTOCOL §1.5: logout of one terminal revokes that terminal's tokens;
// logout without a terminal revokes all; only unexpired ones are counted.
func TestSection1_5_RevokeTokens(t *testing.T) {
	db, _ := openTest(t, nil)
	const ttl = 1000
	u := bind(t, db, "agent_1", "pc", tok(0), 1, ttl)
	bind(t, db, "agent_1", "pc", tok(1), 2, ttl)
	bind(t, db, "agent_1", "app", tok(2), 3, ttl)
	bind(t, db, "agent_1", "", tok(3), 4, ttl)
	bind(t, db, "agent_2", "pc", tok(4), 5, ttl)
	bind(t, db, "agent_1", "pc", tok(6), 6, 1) // expired at 7

	got, n, err := db.RevokeTokens("agent_1", "pc", 10)
	if err != nil || n != 2 || got.UID != u.UID || got.ID != "agent_1" {
		t.Fatalf("RevokeTokens pc = %+v, %d, %v; want 2 revoked", got, n, err)
	}
	for _, i := range []int{0, 1, 6} {
		expectRefused(t, db, tok(i), 10, storage.ErrNotFound)
	}
	expectOwner(t, db, tok(2), "agent_1", 10)
	expectOwner(t, db, tok(3), "agent_1", 10)
	expectOwner(t, db, tok(4), "agent_2", 10)

	bind(t, db, "agent_1", "pc", tok(5), 11, ttl)
	expectOwner(t, db, tok(5), "agent_1", 12)

	if _, n, err := db.RevokeTokens("agent_1", "", 13); err != nil || n != 3 {
		t.Fatalf("RevokeTokens all = %d, %v; want 3", n, err)
	}
	for _, i := range []int{2, 3, 5} {
		expectRefused(t, db, tok(i), 13, storage.ErrNotFound)
	}
	expectOwner(t, db, tok(4), "agent_2", 13)
	if _, n, err := db.RevokeTokens("agent_1", "", 14); err != nil || n != 0 {
		t.Fatalf("second logout = %d, %v", n, err)
	}
	if _, _, err := db.RevokeTokens("nobody", "", 14); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

// A token that expired and was rebound by another user is that user's:
// neither the first owner's logout nor its next bindings delete it.
func TestSection1_5_RevokeSparesReboundToken(t *testing.T) {
	db, _ := openTest(t, nil)
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

// PROTOCOL §1.1 (ext): expired tokens are purged at most max per call,
// live ones stay.
func TestSection1_1_SweepPurgesExpiredTokens(t *testing.T) {
	db, _ := openTest(t, nil)
	for i := range 10 {
		ttl := int64(100) // expires at 101
		if i%2 == 0 {
			ttl = 10_000
		}
		bind(t, db, fmt.Sprintf("user_%d", i), "pc", tok(i), 1, ttl)
	}
	if n, err := db.SweepTokens(100, 1000); err != nil || n != 0 {
		t.Fatalf("sweep before expiry = %d, %v", n, err)
	}
	var counts []int
	for range 3 {
		n, err := db.SweepTokens(200, 2)
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, n)
	}
	if fmt.Sprint(counts) != "[2 2 1]" {
		t.Fatalf("three sweeps of 2 purged %v, want [2 2 1]", counts)
	}
	if n := countTokens(t, db); n != 5 {
		t.Fatalf("%d rows left, want 5", n)
	}
	for i := range 10 {
		if i%2 == 0 {
			expectOwner(t, db, tok(i), fmt.Sprintf("user_%d", i), 200)
		} else {
			expectRefused(t, db, tok(i), 200, storage.ErrNotFound)
		}
	}
	if n, err := db.SweepTokens(20_000, 0); err != nil || n != 0 {
		t.Fatalf("sweep of 0 = %d, %v", n, err)
	}
	if n, err := db.SweepTokens(20_000, 100); err != nil || n != 5 || countTokens(t, db) != 0 {
		t.Fatalf("final sweep = %d, %v; %d rows left", n, err, countTokens(t, db))
	}
}

// Two nodes sweeping at once purge each expired token once, and a token
// rebound meanwhile stays.
func TestSection1_1_SweepsOnTwoNodes(t *testing.T) {
	db, url := openTest(t, nil)
	other := openGateway(t, url)
	const n = 300
	if _, err := db.pool.Exec(context.Background(), `INSERT INTO tokens (token, uid, terminal, issued, expire)
		SELECT 'swept-' || i, 1, 'pc', 1, 10 FROM generate_series(1, $1) i`, n); err != nil {
		t.Fatal(err)
	}
	bind(t, db, "agent_1", "pc", "swept-7", 20, 1000) // rebound before the sweep
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for _, node := range []*DB{db, other, db, other} {
		wg.Go(func() {
			for {
				k, err := node.SweepTokens(30, 16)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += k
				mu.Unlock()
				if k == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if total != n-1 || countTokens(t, db) != 1 {
		t.Fatalf("purged %d, %d rows left; want %d and 1", total, countTokens(t, db), n-1)
	}
	expectOwner(t, db, "swept-7", "agent_1", 30)
}
