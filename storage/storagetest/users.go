package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/imgate/imgate/storage"
)

// bind registers id on terminal with token at now, valid for ttl.
func (f *fixture) bind(id, terminal, token string, now, ttl int64) storage.User {
	f.t.Helper()
	u, err := f.s.Register(storage.Registration{
		User:  storage.User{ID: id, Type: storage.UserAgent, Terminal: terminal},
		Token: token, TokenExpire: now + ttl, Now: now,
	})
	if err != nil {
		f.t.Fatalf("Register(%s, %s, %s): %v", id, terminal, token, err)
	}
	return u
}

// expectOwner checks that token logs in as id at now.
func (f *fixture) expectOwner(token, id string, now int64) {
	f.t.Helper()
	u, err := f.s.TokenUser(token, now)
	if err != nil || u.ID != id {
		f.t.Fatalf("TokenUser(%s) at %d = %+v, %v; want %s", token, now, u, err, id)
	}
}

// expectRefused checks that token does not log in at now, with want.
func (f *fixture) expectRefused(token string, now int64, want error) {
	f.t.Helper()
	if u, err := f.s.TokenUser(token, now); !errors.Is(err, want) {
		f.t.Fatalf("TokenUser(%s) at %d = %+v, %v; want %v", token, now, u, err, want)
	}
}

// tok is the i-th test token, 16 characters or more like a real one.
func tok(i int) string { return fmt.Sprintf("token-%02d-padded-to-16", i) }

// PROTOCOL §1.1: a registration stores the profile and binds the token;
// lookups by id, uid and token agree; a token logs in until it expires
// (ErrTokenExpired at and after its expiry, ErrNotFound for one never
// bound); a refresh keeps uid and creation time; a token live for another
// user is refused and the refused call changes nothing; an expired one
// may be bound again.
func testRegisterAndLookup(f *fixture) {
	t, s := f.t, f.s
	in := storage.User{ID: "visitor_1", Type: storage.UserVisitor, Nick: "Ann", Avatar: "a.png", Terminal: "h5", Sign: "s"}
	u, err := s.Register(storage.Registration{User: in, Token: tok(1), TokenExpire: 2000, Now: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.UID, want.Created, want.Updated = u.UID, 1000, 1000
	if u.UID == 0 || u != want {
		t.Fatalf("first user %+v, want %+v with a uid", u, want)
	}
	for what, get := range map[string]func() (storage.User, error){
		"by id":    func() (storage.User, error) { return s.UserByID("visitor_1") },
		"by uid":   func() (storage.User, error) { return s.UserByUID(u.UID) },
		"by token": func() (storage.User, error) { return s.TokenUser(tok(1), 1999) },
	} {
		if got, err := get(); err != nil || got != u {
			t.Fatalf("%s: %+v, %v; want %+v", what, got, err, u)
		}
	}
	info, err := s.TokenInfo(tok(1), 1500)
	if err != nil || info.User != u || info.Terminal != "h5" || info.IssuedAt != 1000 || info.ExpireAt != 2000 || info.Legacy {
		t.Fatalf("TokenInfo %+v %v", info, err)
	}
	for _, at := range []int64{2000, 2001, 1 << 50} {
		f.expectRefused(tok(1), at, storage.ErrTokenExpired)
		if _, err := s.TokenInfo(tok(1), at); !errors.Is(err, storage.ErrTokenExpired) {
			t.Fatalf("TokenInfo at %d: %v, want ErrTokenExpired", at, err)
		}
	}
	for _, token := range []string{"", "nope", tok(2)} {
		f.expectRefused(token, 0, storage.ErrNotFound)
	}
	if _, err := s.UserByID("nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := s.UserByUID(u.UID + 1000); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown uid: %v", err)
	}

	// A refresh keeps uid and creation time, replaces the profile, and
	// leaves the tokens alone.
	u2, err := s.Register(storage.Registration{User: storage.User{ID: "visitor_1", Type: storage.UserVisitor, Nick: "Anna"}, Now: 1500})
	if err != nil || u2.UID != u.UID || u2.Created != 1000 || u2.Updated != 1500 || u2.Nick != "Anna" || u2.Avatar != "" || u2.Terminal != "" {
		t.Fatalf("refresh %+v %v", u2, err)
	}
	if got, err := s.UserByUID(u.UID); err != nil || got != u2 {
		t.Fatalf("after the refresh: %+v %v, want %+v", got, err, u2)
	}
	f.expectOwner(tok(1), "visitor_1", 1600)

	// Another user may not take a live token, and changes nothing trying:
	// a new user is not created, an existing one's profile not written.
	if _, err := s.Register(storage.Registration{User: storage.User{ID: "agent_1", Type: storage.UserAgent}, Token: tok(1), TokenExpire: 9000, Now: 1600}); !errors.Is(err, storage.ErrTokenTaken) {
		t.Fatalf("taken token: %v", err)
	}
	if _, err := s.UserByID("agent_1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused registration stored the user: %v", err)
	}
	b, err := s.Register(storage.Registration{User: storage.User{ID: "agent_2", Type: storage.UserAgent, Nick: "B"}, Now: 1600})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(storage.Registration{User: storage.User{ID: "agent_2", Type: storage.UserAgent, Nick: "C"}, Token: tok(1), TokenExpire: 9000, Now: 1700}); !errors.Is(err, storage.ErrTokenTaken) {
		t.Fatalf("taken token, existing user: %v", err)
	}
	if got, err := s.UserByID("agent_2"); err != nil || got != b {
		t.Fatalf("refused registration wrote the profile: %+v %v, want %+v", got, err, b)
	}
	f.expectOwner(tok(1), "visitor_1", 1700)

	// Once expired, it may be bound again.
	a, err := s.Register(storage.Registration{User: storage.User{ID: "agent_1", Type: storage.UserAgent}, Token: tok(1), TokenExpire: 9000, Now: 2000})
	if err != nil || a.UID == 0 || a.UID == u.UID || a.UID == b.UID {
		t.Fatalf("rebind expired token: %+v %v", a, err)
	}
	f.expectOwner(tok(1), "agent_1", 2001)
}

// PROTOCOL §1.1: concurrent registrations of one id get one uid; of one
// token by different users, one owner.
func testRegisterConcurrent(f *fixture) {
	t, s := f.t, f.s
	const n = 40
	var wg sync.WaitGroup
	uids := make(chan uint64, n)
	wins := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			u, err := s.Register(storage.Registration{User: storage.User{ID: "same"}, Now: 1})
			if err != nil {
				t.Error(err)
				return
			}
			uids <- u.UID
		})
		wg.Go(func() {
			id := fmt.Sprintf("c%d", i)
			_, err := s.Register(storage.Registration{User: storage.User{ID: id}, Token: "contested-token-0001", TokenExpire: 100, Now: 1})
			if err == nil {
				wins <- id
			} else if !errors.Is(err, storage.ErrTokenTaken) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(uids)
	close(wins)
	if t.Failed() {
		t.FailNow()
	}
	first := <-uids
	for uid := range uids {
		if uid != first {
			t.Fatalf("one id got uids %d and %d", first, uid)
		}
	}
	var winners []string
	for w := range wins {
		winners = append(winners, w)
	}
	if len(winners) != 1 {
		t.Fatalf("winners %v, want one", winners)
	}
	f.expectOwner("contested-token-0001", winners[0], 2)
	if u, err := s.UserByID("same"); err != nil || u.UID != first {
		t.Fatalf("same: %+v %v, want uid %d", u, err, first)
	}
}

// PROTOCOL §1.1: a profile update is what every later read sees, while
// readers keep reading the user.
func testProfileUpdateVisibleToReaders(f *fixture) {
	t, s := f.t, f.s
	reg := func(nick string) storage.User {
		t.Helper()
		u, err := s.Register(storage.Registration{User: storage.User{ID: "agent-7", Type: storage.UserAgent, Nick: nick}, Now: 1})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	uid := reg("n0").UID
	stop := readUntil(t, 4, func() error {
		if _, err := s.UserByUID(uid); err != nil {
			return err
		}
		_, err := s.UserByID("agent-7")
		return err
	})
	for i := 1; i <= 100; i++ {
		nick := fmt.Sprint("n", i)
		reg(nick)
		if u, err := s.UserByID("agent-7"); err != nil || u.Nick != nick {
			stop()
			t.Fatalf("after update %d by id: %+v %v", i, u, err)
		}
		if u, err := s.UserByUID(uid); err != nil || u.Nick != nick {
			stop()
			t.Fatalf("after update %d by uid: %+v %v", i, u, err)
		}
	}
	stop()
}

// readUntil runs read in a loop on n goroutines until the returned func is
// called, which waits for them. A read error fails the test.
func readUntil(t testing.TB, n int, read func() error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := read(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// PROTOCOL §1.1: users and their tokens survive a restart, and a user
// registered after it gets a uid of its own.
func testUsersSurviveReopen(f *fixture) {
	t := f.t
	uids := map[uint64]bool{}
	var users []storage.User
	for i := 0; i < 5; i++ {
		u, err := f.s.Register(storage.Registration{
			User:  storage.User{ID: fmt.Sprintf("u%d", i), Type: storage.UserConsultant, Nick: fmt.Sprint("nick ", i), Terminal: "app"},
			Token: tok(i), TokenExpire: 100, Now: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		uids[u.UID] = true
		users = append(users, u)
	}
	if len(uids) != 5 {
		t.Fatalf("five users got uids %v", uids)
	}
	f.reopen()
	for i, u := range users {
		if got, err := f.s.UserByID(u.ID); err != nil || got != u {
			t.Fatalf("after reopen %s: %+v %v, want %+v", u.ID, got, err, u)
		}
		info, err := f.s.TokenInfo(tok(i), 50)
		if err != nil || info.User != u || info.Terminal != "app" || info.IssuedAt != 1 || info.ExpireAt != 100 {
			t.Fatalf("after reopen token %d: %+v %v", i, info, err)
		}
	}
	f.expectRefused(tok(0), 100, storage.ErrTokenExpired)
	u, err := f.s.Register(storage.Registration{User: storage.User{ID: "new"}, Now: 2})
	if err != nil || u.UID == 0 || uids[u.UID] {
		t.Fatalf("new user after reopen: %+v %v; uids taken %v", u, err, uids)
	}
}

// PROTOCOL §1.1 (ext): each (user, terminal) keeps its 4 newest tokens;
// binding a fifth revokes the oldest; other terminals are untouched; a
// rebound token counts as new; expired tokens leave without revoking live
// ones.
func testFifthTokenRevokesOldest(f *fixture) {
	const ttl = 1_000_000
	now := int64(1000)
	f.bind("agent_1", "app", "app-token-0000000", now, ttl)
	for i := 0; i < 4; i++ {
		now++
		f.bind("agent_1", "pc", tok(i), now, ttl)
	}
	for i := 0; i < 4; i++ {
		f.expectOwner(tok(i), "agent_1", now)
	}
	now++
	f.bind("agent_1", "pc", tok(4), now, ttl)
	f.expectRefused(tok(0), now, storage.ErrNotFound)
	for i := 1; i <= 4; i++ {
		f.expectOwner(tok(i), "agent_1", now)
	}
	f.expectOwner("app-token-0000000", "agent_1", now)

	// Refreshing tok(1), the oldest, makes it the newest: the next binding
	// revokes tok(2) instead.
	now++
	f.bind("agent_1", "pc", tok(1), now, ttl)
	now++
	f.bind("agent_1", "pc", tok(5), now, ttl)
	f.expectRefused(tok(2), now, storage.ErrNotFound)
	for _, i := range []int{1, 3, 4, 5} {
		f.expectOwner(tok(i), "agent_1", now)
	}

	// After the four expire, four new ones bind and all of them log in.
	now += ttl
	for i := 10; i < 14; i++ {
		now++
		f.bind("agent_1", "pc", tok(i), now, ttl)
	}
	for i := 10; i < 14; i++ {
		f.expectOwner(tok(i), "agent_1", now)
	}
	// The fifth after them revokes tok(10), the oldest live one.
	now++
	f.bind("agent_1", "pc", tok(14), now, ttl)
	f.expectRefused(tok(10), now, storage.ErrNotFound)
	for i := 11; i < 15; i++ {
		f.expectOwner(tok(i), "agent_1", now)
	}
}

// PROTOCOL §1.1: a token moved to another terminal leaves the old
// terminal's four places: four more tokens fit there, and it still logs in
// on its new terminal.
func testTokenMovesTerminal(f *fixture) {
	const ttl = 1_000_000
	f.bind("agent_1", "pc", tok(0), 1, ttl)
	f.bind("agent_1", "h5", tok(0), 2, ttl)
	info, err := f.s.TokenInfo(tok(0), 3)
	if err != nil || info.Terminal != "h5" || info.IssuedAt != 2 || info.ExpireAt != 2+ttl || info.Legacy {
		f.t.Fatalf("moved token %+v %v", info, err)
	}
	for i := 1; i <= 4; i++ {
		f.bind("agent_1", "pc", tok(i), int64(2+i), ttl)
	}
	for i := 1; i <= 4; i++ {
		f.expectOwner(tok(i), "agent_1", 10)
	}
	f.expectOwner(tok(0), "agent_1", 10)
}

// PROTOCOL §1.1: concurrent bindings of one (user, terminal) leave exactly
// MaxTokensPerTerminal tokens that log in.
func testConcurrentBindingsKeepFour(f *fixture) {
	t, s := f.t, f.s
	const n = 40
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if _, err := s.Register(storage.Registration{User: storage.User{ID: "agent_1", Terminal: "pc"}, Token: tok(i), TokenExpire: 1000, Now: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	live := 0
	for i := 0; i < n; i++ {
		u, err := s.TokenUser(tok(i), 2)
		switch {
		case err == nil && u.ID == "agent_1":
			live++
		case err == nil:
			t.Fatalf("token %d logs in as %+v", i, u)
		case !errors.Is(err, storage.ErrNotFound):
			t.Fatalf("token %d: %v, want ErrNotFound for a revoked one", i, err)
		}
	}
	if live != storage.MaxTokensPerTerminal {
		t.Fatalf("%d tokens log in, want %d", live, storage.MaxTokensPerTerminal)
	}
}

// PROTOCOL §1.1 (ext): expired token records are purged by a sweep that
// reads at most max records per call, goes on where the last stopped and
// so reaches them all; a purged token is unknown (ErrNotFound), a live one
// untouched.
func testSweepPurgesExpiredTokens(f *fixture) {
	t, s := f.t, f.s
	f.bind("agent_1", "pc", tok(0), 1, 100) // expires at 101
	for i := 1; i < 10; i++ {
		ttl := int64(100)
		if i%2 == 0 {
			ttl = 10_000 // the even ones outlive the sweep
		}
		f.bind(fmt.Sprintf("user_%d", i), "pc", tok(i), 1, ttl)
	}
	if n, err := s.SweepTokens(100, 1000); err != nil || n != 0 {
		t.Fatalf("sweep at 100 = %d, %v; want nothing expired", n, err)
	}
	f.expectRefused(tok(1), 200, storage.ErrTokenExpired)
	// At 200, tok 0, 1, 3, 5, 7 and 9 are expired: ten sweeps of at most 4
	// records cover the ten records more than once, and purge each once.
	const dead = 6
	purged := 0
	for i := 0; i < 10; i++ {
		n, err := s.SweepTokens(200, 4)
		if err != nil || n < 0 || n > 4 {
			t.Fatalf("sweep %d of 4 = %d, %v", i, n, err)
		}
		purged += n
	}
	if purged != dead {
		t.Fatalf("sweeps purged %d, want %d", purged, dead)
	}
	for i := 0; i < 10; i++ {
		if i%2 == 0 && i > 0 {
			f.expectOwner(tok(i), fmt.Sprintf("user_%d", i), 200)
		} else {
			f.expectRefused(tok(i), 200, storage.ErrNotFound)
		}
	}
	for i := 0; i < 3; i++ {
		if n, err := s.SweepTokens(200, 100); err != nil || n != 0 {
			t.Fatalf("sweep with nothing expired = %d, %v", n, err)
		}
	}
	purged = 0
	for i := 0; i < 3; i++ {
		n, err := s.SweepTokens(20_000, 100)
		if err != nil {
			t.Fatal(err)
		}
		purged += n
	}
	if purged != 4 {
		t.Fatalf("final sweeps purged %d, want the 4 left", purged)
	}
	for i := 2; i < 10; i += 2 {
		f.expectRefused(tok(i), 20_000, storage.ErrNotFound)
	}
	if n, err := s.SweepTokens(20_000, 0); err != nil || n != 0 {
		t.Fatalf("sweep of 0 = %d, %v", n, err)
	}
	// The users stay: a sweep deletes tokens only.
	if _, err := s.UserByID("user_1"); err != nil {
		t.Fatalf("a sweep took the user: %v", err)
	}
}

// PROTOCOL §1.5: logout of one terminal revokes that terminal's tokens and
// counts the unexpired ones; logout without a terminal revokes all; other
// users are untouched; a token bound after a logout logs in; an unknown
// user fails with ErrNotFound.
func testRevokeTokens(f *fixture) {
	t, s := f.t, f.s
	const ttl = 1000
	u := f.bind("agent_1", "pc", tok(0), 1, ttl)
	f.bind("agent_1", "pc", tok(1), 2, ttl)
	f.bind("agent_1", "pc", tok(6), 3, 5) // expired at 8
	f.bind("agent_1", "app", tok(2), 3, ttl)
	f.bind("agent_1", "", tok(3), 4, ttl)
	f.bind("agent_2", "pc", tok(4), 5, ttl)

	got, n, err := s.RevokeTokens("agent_1", "pc", 10)
	if err != nil || n != 2 || got.UID != u.UID || got.ID != "agent_1" {
		t.Fatalf("RevokeTokens pc = %+v, %d, %v; want agent_1, 2 revoked", got, n, err)
	}
	f.expectRefused(tok(0), 10, storage.ErrNotFound)
	f.expectRefused(tok(1), 10, storage.ErrNotFound)
	f.expectRefused(tok(6), 10, storage.ErrNotFound)
	f.expectOwner(tok(2), "agent_1", 10)
	f.expectOwner(tok(3), "agent_1", 10)
	f.expectOwner(tok(4), "agent_2", 10)
	if _, n, err := s.RevokeTokens("agent_1", "pc", 10); err != nil || n != 0 {
		t.Fatalf("second logout of pc = %d, %v", n, err)
	}

	f.bind("agent_1", "pc", tok(5), 11, ttl)
	f.expectOwner(tok(5), "agent_1", 12)

	if _, n, err := s.RevokeTokens("agent_1", "", 13); err != nil || n != 3 {
		t.Fatalf("RevokeTokens all = %d, %v; want 3", n, err)
	}
	for _, i := range []int{2, 3, 5} {
		f.expectRefused(tok(i), 13, storage.ErrNotFound)
	}
	f.expectOwner(tok(4), "agent_2", 13)
	if _, n, err := s.RevokeTokens("agent_1", "", 14); err != nil || n != 0 {
		t.Fatalf("second logout = %d, %v", n, err)
	}
	if _, _, err := s.RevokeTokens("nobody", "", 14); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if got, err := s.UserByID("agent_1"); err != nil || got.UID != u.UID {
		t.Fatalf("logout took the user: %+v %v", got, err)
	}
}

// PROTOCOL §1.5: a token that expired and was rebound by another user is
// that user's: neither the first owner's logout nor its next bindings
// revoke it.
func testRevokeSparesReboundToken(f *fixture) {
	f.bind("agent_1", "pc", tok(0), 1, 10)
	f.bind("agent_2", "pc", tok(0), 20, 1000)
	if _, n, err := f.s.RevokeTokens("agent_1", "pc", 30); err != nil || n != 0 {
		f.t.Fatalf("RevokeTokens = %d, %v; want 0", n, err)
	}
	f.expectOwner(tok(0), "agent_2", 30)

	f.bind("agent_3", "pc", tok(10), 1, 10)
	f.bind("agent_2", "app", tok(10), 20, 1000)
	for i := 11; i <= 14; i++ {
		f.bind("agent_3", "pc", tok(i), int64(10+i), 1000)
	}
	f.expectOwner(tok(10), "agent_2", 30)
	for i := 11; i <= 14; i++ {
		f.expectOwner(tok(i), "agent_3", 30)
	}
	if _, n, err := f.s.RevokeTokens("agent_3", "", 40); err != nil || n != 4 {
		f.t.Fatalf("RevokeTokens agent_3 = %d, %v; want 4", n, err)
	}
	f.expectOwner(tok(10), "agent_2", 40)
}
