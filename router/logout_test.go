package router

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgate/imgate/storage/pebble"
)

// logoutHub records the disconnects Logout asks for; the embedded Hub
// (nil) stands for the methods Logout must not call.
type logoutHub struct {
	Hub
	mu    sync.Mutex
	calls []string // "all uid code reason" or "terminal uid term code reason"
}

func (h *logoutHub) Disconnect(uid uint64, code uint16, reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, strings.Join([]string{"all", itoa(uid), itoa(uint64(code)), reason}, " "))
	return 3
}

func (h *logoutHub) DisconnectTerminal(uid uint64, terminal string, code uint16, reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, strings.Join([]string{"terminal", itoa(uid), terminal, itoa(uint64(code)), reason}, " "))
	return 2
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func newLogoutRouter(t *testing.T) (*Router, *pebble.DB, *logoutHub) {
	t.Helper()
	db, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_700_000_000_000)
	r, err := New(db, Options{Now: func() time.Time { return now }, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := &logoutHub{}
	r.SetHub(h)
	t.Cleanup(func() {
		_ = r.Close(context.Background())
		_ = db.Close()
	})
	return r, db, h
}

// PROTOCOL §1.5: logout revokes the tokens of the terminal (or all) and
// closes the connections of the terminal (or all) with 1008.
func TestSection1_5_LogoutRevokesAndCloses(t *testing.T) {
	r, _, h := newLogoutRouter(t)
	bind := func(terminal string) string {
		t.Helper()
		res, err := r.InitUser(InitUserRequest{SenderID: "agent_1", Type: 1, TypeSet: true, Terminal: terminal})
		if err != nil || !res.Generated {
			t.Fatalf("InitUser: %+v %v", res, err)
		}
		return res.Token
	}
	pc, app := bind("pc"), bind("app")
	uid := itoa(r.authenticate(pc, false).Identity.UID)
	if id := r.authenticate(pc, false).Identity; id.Terminal != "pc" || id.ID != "agent_1" {
		t.Fatalf("identity of the pc token: %+v", id)
	}

	n, err := r.Logout("agent_1", "pc")
	if err != nil || n != 2 {
		t.Fatalf("Logout pc = %d, %v", n, err)
	}
	if res := r.authenticate(pc, false); res.OK {
		t.Fatal("the pc token logs in after logout")
	}
	if res := r.authenticate(app, false); !res.OK || res.Identity.Terminal != "app" {
		t.Fatalf("the app token after a pc logout: %+v", res)
	}
	n, err = r.Logout("agent_1", "")
	if err != nil || n != 3 {
		t.Fatalf("Logout all = %d, %v", n, err)
	}
	if res := r.authenticate(app, false); res.OK {
		t.Fatal("the app token logs in after logout")
	}
	want := []string{"terminal " + uid + " pc 1008 logged out", "all " + uid + " 1008 logged out"}
	if strings.Join(h.calls, "|") != strings.Join(want, "|") {
		t.Fatalf("hub calls %q, want %q", h.calls, want)
	}

	if _, err := r.Logout("nobody", ""); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	for _, tc := range []struct{ id, terminal, field string }{
		{"", "", "senderId"},
		{"bad id", "", "senderId"},
		{"agent_1", strings.Repeat("t", 33), "terminal"},
	} {
		var fe *FieldError
		if _, err := r.Logout(tc.id, tc.terminal); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("Logout(%q, %q) = %v, want a FieldError on %s", tc.id, tc.terminal, err, tc.field)
		}
	}
	if len(h.calls) != 2 {
		t.Fatalf("refused logouts closed connections: %q", h.calls)
	}
}

// The background sweep stops when asked, without waiting for its period.
func TestTokenSweepStops(t *testing.T) {
	r, _, _ := newLogoutRouter(t)
	done := make(chan struct{})
	go func() { r.startTokenSweep()(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return")
	}
}

// PROTOCOL §1.5: a login whose token was checked before a logout of its
// user, and whose connection registers after the logout's disconnect, is
// refused (Admit); one checked after, with a new token, is not.
func TestSection1_5_LoginRacingLogoutRefused(t *testing.T) {
	r, _, _ := newLogoutRouter(t)
	res, err := r.InitUser(InitUserRequest{SenderID: "agent_1", Type: 1, TypeSet: true})
	if err != nil {
		t.Fatal(err)
	}
	checked := r.authenticate(res.Token, false)
	if !checked.OK || !r.Admit(checked) {
		t.Fatalf("login before any logout: ok=%v admit=%v", checked.OK, r.Admit(checked))
	}
	if _, err := r.Logout("agent_1", ""); err != nil {
		t.Fatal(err)
	}
	if r.Admit(checked) {
		t.Fatal("a login checked before the logout was admitted after it")
	}
	if again := r.authenticate(res.Token, false); again.OK {
		t.Fatal("the revoked token logged in")
	}
	res2, err := r.InitUser(InitUserRequest{SenderID: "agent_1", Type: 1, TypeSet: true})
	if err != nil {
		t.Fatal(err)
	}
	if fresh := r.authenticate(res2.Token, false); !fresh.OK || !r.Admit(fresh) {
		t.Fatalf("a login after the logout: ok=%v admit=%v", fresh.OK, r.Admit(fresh))
	}
}
