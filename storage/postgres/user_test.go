package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/imgate/imgate/storage"
)

// openGateway opens a second store on the database at url, as another gateway
// of the cluster would; it is closed when t ends.
func openGateway(t testing.TB, url string) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestRegisterAndLookup: uids are dense from 1, a refused registration
// writes nothing and draws no uid, a refresh keeps uid and creation time.
func TestRegisterAndLookup(t *testing.T) {
	db, _ := openTest(t, nil)
	u, err := db.Register(storage.Registration{
		User:  storage.User{ID: "visitor_1", Type: storage.UserVisitor, Nick: "Ann", Avatar: "a.png", Terminal: "h5", Sign: "s"},
		Token: "tok1", TokenExpire: 2000, Now: 1000,
	})
	want := storage.User{UID: 1, ID: "visitor_1", Type: storage.UserVisitor, Nick: "Ann", Avatar: "a.png", Terminal: "h5", Sign: "s", Created: 1000, Updated: 1000}
	if err != nil || u != want {
		t.Fatalf("first user %+v %v, want %+v", u, err, want)
	}
	for name, get := range map[string]func() (storage.User, error){
		"by id":    func() (storage.User, error) { return db.UserByID("visitor_1") },
		"by uid":   func() (storage.User, error) { return db.UserByUID(u.UID) },
		"by token": func() (storage.User, error) { return db.TokenUser("tok1", 1999) },
	} {
		if got, err := get(); err != nil || got != u {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, u)
		}
	}
	if _, err := db.TokenUser("tok1", 2000); !errors.Is(err, storage.ErrTokenExpired) {
		t.Errorf("at expiry: %v, want ErrTokenExpired", err)
	}
	for _, tok := range []string{"", "nope"} {
		if _, err := db.TokenUser(tok, 0); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("token %q: %v, want ErrNotFound", tok, err)
		}
	}
	if _, err := db.UserByID("nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := db.UserByUID(99); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown uid: %v", err)
	}

	u2, err := db.Register(storage.Registration{User: storage.User{ID: "visitor_1", Type: storage.UserVisitor, Nick: "Anna"}, Now: 1500})
	if err != nil || u2.UID != u.UID || u2.Created != 1000 || u2.Updated != 1500 || u2.Nick != "Anna" || u2.Avatar != "" {
		t.Fatalf("refresh %+v %v", u2, err)
	}
	if got, err := db.UserByUID(u.UID); err != nil || got != u2 {
		t.Fatalf("after refresh %+v %v, want %+v", got, err, u2)
	}
	if _, err := db.Register(storage.Registration{User: storage.User{ID: "agent_1", Type: storage.UserAgent}, Token: "tok1", TokenExpire: 9000, Now: 1600}); !errors.Is(err, storage.ErrTokenTaken) {
		t.Fatalf("taken token: %v", err)
	}
	if _, err := db.UserByID("agent_1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused registration stored the user: %v", err)
	}
	a, err := db.Register(storage.Registration{User: storage.User{ID: "agent_1", Type: storage.UserAgent}, Token: "tok1", TokenExpire: 9000, Now: 2000})
	if err != nil || a.UID != 2 {
		t.Fatalf("rebind expired token: %+v %v; want uid 2 (the refusal drew none)", a, err)
	}
	if got, err := db.TokenUser("tok1", 2001); err != nil || got.ID != "agent_1" {
		t.Fatalf("rebound token → %+v %v", got, err)
	}
}

// TestRegisterConcurrentNodes: registrations of one id on two nodes at once
// get one uid; of one token, one owner, the others storing nothing.
func TestRegisterConcurrentNodes(t *testing.T) {
	db, url := openTest(t, nil)
	nodes := []*DB{db, openGateway(t, url)}
	const n = 20
	var wg sync.WaitGroup
	uids := make(chan uint64, 2*n)
	wins := make(chan string, 2*n)
	for i := range 2 * n {
		node := nodes[i%2]
		wg.Go(func() {
			u, err := node.Register(storage.Registration{User: storage.User{ID: "same"}, Now: 1})
			if err != nil {
				t.Error(err)
				return
			}
			uids <- u.UID
		})
		wg.Go(func() {
			id := fmt.Sprintf("c%d", i)
			_, err := node.Register(storage.Registration{User: storage.User{ID: id}, Token: "contested", TokenExpire: 100, Now: 1})
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
	// The losers stored nothing.
	for i := range 2 * n {
		if id := fmt.Sprintf("c%d", i); id != winners[0] {
			if _, err := db.UserByID(id); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("loser %s stored: %v", id, err)
			}
		}
	}
}

// TestRegisterRefusesWhatTheServerRefuses: a profile PostgreSQL cannot
// store (a NUL in text) fails with an error and stores nothing.
func TestRegisterRefusesWhatTheServerRefuses(t *testing.T) {
	db, _ := openTest(t, nil)
	_, err := db.Register(storage.Registration{User: storage.User{ID: "v", Nick: "a\x00b"}, Token: "tok-nul-0000000000", TokenExpire: 10, Now: 1})
	if err == nil {
		t.Fatal("a NUL in the nick was accepted")
	}
	if _, err := db.UserByID("v"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("user after a failed registration: %v", err)
	}
	if _, err := db.TokenInfo("tok-nul-0000000000", 2); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("token after a failed registration: %v", err)
	}
}

// TestClosedStore: the synchronous methods of users, tokens and groups
// answer ErrClosed after Close.
func TestClosedStore(t *testing.T) {
	db, _ := openTest(t, nil)
	db.Close()
	for name, call := range map[string]func() error{
		"Register":     func() error { _, err := db.Register(storage.Registration{User: storage.User{ID: "x"}}); return err },
		"UserByID":     func() error { _, err := db.UserByID("x"); return err },
		"UserByUID":    func() error { _, err := db.UserByUID(1); return err },
		"TokenInfo":    func() error { _, err := db.TokenInfo("x", 0); return err },
		"RevokeTokens": func() error { _, _, err := db.RevokeTokens("x", "", 0); return err },
		"SweepTokens":  func() error { _, err := db.SweepTokens(0, 10); return err },
		"GroupByID":    func() error { _, err := db.GroupByID("g"); return err },
		"IsMember":     func() error { _, err := db.IsMember(1, 1); return err },
		"Members":      func() error { _, err := db.Members(1); return err },
		"UserGroups":   func() error { _, err := db.UserGroups(1); return err },
		"Join":         func() error { return db.Join("g", 1, 0, 10, func(uint64, int, error) {}) },
		"Leave":        func() error { return db.Leave(1, 1, func(bool, error) {}) },
	} {
		if err := call(); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
