package pebble

import (
	"fmt"
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

// doc.go: a uid is a dense number, the largest u| key giving the next one
// at Open, so no counter is written. (That users survive a restart is in
// the storagetest suite.)
func TestReopenKeepsNextUIDDense(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		u, err := db.Register(Registration{User: User{ID: fmt.Sprintf("u%d", i)}, Token: fmt.Sprintf("t%d-padded-to-16", i), TokenExpire: 100, Now: 1})
		if err != nil || u.UID != uint64(i+1) {
			t.Fatalf("user %d: %+v %v", i, u, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	u, err := db.Register(Registration{User: User{ID: "new"}, Now: 2})
	if err != nil || u.UID != 6 {
		t.Fatalf("next uid after reopen: %+v %v", u, err)
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
