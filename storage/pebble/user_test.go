package pebble

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func openTest(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestRegisterAndLookup(t *testing.T) {
	db := openTest(t, t.TempDir())
	u, err := db.Register(Registration{
		User:  User{ID: "visitor_1", Type: UserVisitor, Nick: "Ann", Avatar: "a.png", Terminal: "h5", Sign: "s"},
		Token: "tok1", TokenExpire: 2000, Now: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != 1 || u.Created != 1000 || u.Updated != 1000 {
		t.Fatalf("first user %+v", u)
	}
	for name, get := range map[string]func() (User, error){
		"by id":    func() (User, error) { return db.UserByID("visitor_1") },
		"by uid":   func() (User, error) { return db.UserByUID(u.UID) },
		"by token": func() (User, error) { return db.TokenUser("tok1", 1999) },
	} {
		got, err := get()
		if err != nil || got != u {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, u)
		}
	}
	if _, err := db.TokenUser("tok1", 2000); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("at expiry: %v, want ErrTokenExpired", err)
	}
	for _, tok := range []string{"", "nope"} {
		if _, err := db.TokenUser(tok, 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("token %q: %v, want ErrNotFound", tok, err)
		}
	}
	if _, err := db.UserByID("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}

	// A refresh keeps uid and creation time and updates the profile.
	u2, err := db.Register(Registration{User: User{ID: "visitor_1", Type: UserVisitor, Nick: "Anna"}, Now: 1500})
	if err != nil || u2.UID != u.UID || u2.Created != 1000 || u2.Updated != 1500 || u2.Nick != "Anna" || u2.Avatar != "" {
		t.Fatalf("refresh %+v %v", u2, err)
	}
	// Another user may not take a live token, and changes nothing trying.
	if _, err := db.Register(Registration{User: User{ID: "agent_1", Type: UserAgent}, Token: "tok1", TokenExpire: 9000, Now: 1600}); !errors.Is(err, ErrTokenTaken) {
		t.Fatalf("taken token: %v", err)
	}
	if _, err := db.UserByID("agent_1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused registration stored the user: %v", err)
	}
	// Once expired, it may.
	a, err := db.Register(Registration{User: User{ID: "agent_1", Type: UserAgent}, Token: "tok1", TokenExpire: 9000, Now: 2000})
	if err != nil || a.UID != 2 {
		t.Fatalf("rebind expired token: %+v %v", a, err)
	}
	if got, err := db.TokenUser("tok1", 2001); err != nil || got.ID != "agent_1" {
		t.Fatalf("rebound token → %+v %v", got, err)
	}
}

func TestReopenKeepsUsersAndNextUID(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := db.Register(Registration{User: User{ID: fmt.Sprintf("u%d", i)}, Token: fmt.Sprintf("t%d", i), TokenExpire: 100, Now: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := db.Ping(); !errors.Is(err, ErrClosed) {
		t.Fatalf("ping after close: %v", err)
	}
	db = openTest(t, dir)
	if u, err := db.TokenUser("t3", 50); err != nil || u.ID != "u3" || u.UID != 4 {
		t.Fatalf("after reopen: %+v %v", u, err)
	}
	u, err := db.Register(Registration{User: User{ID: "new"}, Now: 2})
	if err != nil || u.UID != 6 {
		t.Fatalf("next uid after reopen: %+v %v", u, err)
	}
}

// Concurrent registrations of one id get one uid; of one token, one owner.
func TestRegisterConcurrent(t *testing.T) {
	db := openTest(t, t.TempDir())
	var wg sync.WaitGroup
	uids := make(chan uint64, 40)
	wins := make(chan string, 40)
	for i := 0; i < 40; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			u, err := db.Register(Registration{User: User{ID: "same"}, Now: 1})
			if err != nil {
				t.Error(err)
				return
			}
			uids <- u.UID
		}()
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("c%d", i)
			_, err := db.Register(Registration{User: User{ID: id}, Token: "contested", TokenExpire: 100, Now: 1})
			if err == nil {
				wins <- id
			} else if !errors.Is(err, ErrTokenTaken) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(uids)
	close(wins)
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
		t.Fatalf("winners %v", winners)
	}
	if u, err := db.TokenUser("contested", 2); err != nil || u.ID != winners[0] {
		t.Fatalf("token → %+v %v, winner %s", u, err, winners[0])
	}
}

func TestUserRecordRoundTrip(t *testing.T) {
	for _, u := range []User{
		{UID: 7, ID: "a", Type: 2, Nick: "你好", Avatar: "https://x/y.png", Terminal: "pc", Sign: "", Created: 1, Updated: 2},
		{UID: 1 << 40, ID: "x@y:z-1.2_3", Nick: string(make([]byte, 1024))},
	} {
		got, err := decodeUser(u.UID, encodeUser(&u))
		if err != nil || got != u {
			t.Errorf("round trip %+v → %+v %v", u, got, err)
		}
	}
}

func FuzzDecodeUser(f *testing.F) {
	u := User{ID: "visitor_1", Nick: "Ann", Avatar: "a", Terminal: "h5", Sign: "s", Created: 5, Updated: 6}
	f.Add(encodeUser(&u))
	f.Add([]byte{userRecordV1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeUser(1, b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to a record that decodes the same.
		again, err := decodeUser(1, encodeUser(&got))
		if err != nil || again != got {
			t.Fatalf("re-encode of %+v → %+v %v", got, again, err)
		}
	})
}

// PROTOCOL §1.1: a profile update is what every later read sees, even with
// readers filling the user cache from disk while the update commits.
func TestSection1_1_ProfileUpdateVisibleToReaders(t *testing.T) {
	db := openTest(t, t.TempDir())
	reg := func(nick string) User {
		u, err := db.Register(Registration{User: User{ID: "agent-7", Type: UserAgent, Nick: nick}, Now: 1})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	uid := reg("n0").UID
	stop := readUntil(t, 4, func() error {
		if _, err := db.UserByUID(uid); err != nil {
			return err
		}
		_, err := db.UserByID("agent-7")
		return err
	})
	for i := 1; i <= 200; i++ {
		nick := fmt.Sprint("n", i)
		reg(nick)
		if u, err := db.UserByID("agent-7"); err != nil || u.Nick != nick {
			t.Fatalf("after update %d: %+v %v", i, u, err)
		}
	}
	stop()
	if u, _ := db.UserByUID(uid); u.Nick != "n200" {
		t.Fatalf("final read %+v", u)
	}
}

// readUntil runs read in a loop on n goroutines until the returned func is
// called, which waits for them. A read error fails the test.
func readUntil(t *testing.T, n int, read func() error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
	}
	return func() { close(done); wg.Wait() }
}
