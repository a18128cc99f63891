package router

import (
	"errors"
	"fmt"
	"sync"

	"github.com/imgate/imgate/storage"
)

// ErrUserNotFound is the business failure of a logout of an unknown user
// (PROTOCOL §1.5: HTTP 200, code 500).
var ErrUserNotFound = errors.New("user not found 用户不存在")

// logoutReason is the close reason of connections ended by Logout.
const logoutReason = "logged out"

// Logout ends a user's sessions (PROTOCOL §1.5): it revokes the user's
// tokens, only those bound on terminal when terminal is not "", then closes
// the user's live connections (those of terminal) with 1008 and reports how
// many it closed. Tokens bound before token lists carry no terminal: any
// logout of their user revokes them (storage.RevokeTokens). The tokens are
// revoked first, so a closed client cannot log in again with them. It
// returns a *FieldError for malformed input and ErrUserNotFound for an
// unknown user. It is safe for concurrent use.
func (r *Router) Logout(senderID, terminal string) (closed int, err error) {
	switch {
	case senderID == "":
		return 0, &FieldError{Field: "senderId", Msg: "senderId is required"}
	case !ValidID(senderID):
		return 0, &FieldError{Field: "senderId", Msg: "senderId must be 1-64 characters of [A-Za-z0-9_.@:-]"}
	case len(terminal) > MaxTerminalBytes:
		return 0, &FieldError{Field: "terminal", Msg: fmt.Sprintf("terminal is longer than %d bytes", MaxTerminalBytes)}
	}
	u, _, err := r.db.RevokeTokens(senderID, terminal, r.now().UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		return 0, ErrUserNotFound
	}
	if err != nil {
		return 0, err
	}
	// A login whose token check came before the revocation may register
	// its connection after the disconnect below: Admit refuses it.
	r.logouts.note(u.UID)
	if r.hub == nil { // no connections are served (tests of the HTTP API alone)
		return 0, nil
	}
	if r.cluster != nil {
		return r.cluster.DisconnectCounted(u.UID, terminal, ClosePolicy, logoutReason), nil
	}
	if terminal == "" {
		return r.hub.Disconnect(u.UID, ClosePolicy, logoutReason), nil
	}
	return r.hub.DisconnectTerminal(u.UID, terminal, ClosePolicy, logoutReason), nil
}

// logouts orders logins against logouts: a login's token check reads the
// sequence (logouts.now) before it looks the token up; a logout bumps it
// for its user after revoking the tokens. A login registered after a
// logout of its user that its check came before is refused (Admit).
type logouts struct {
	mu    sync.Mutex
	seq   uint64
	floor uint64            // checks before it are refused (the map was cleared)
	at    map[uint64]uint64 // uid → seq of its last logout
}

// maxLogoutsKept bounds the map; past it, it starts afresh.
const maxLogoutsKept = 1 << 16

func (l *logouts) now() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

func (l *logouts) note(uid uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	if l.at == nil || len(l.at) >= maxLogoutsKept {
		l.at, l.floor = make(map[uint64]uint64), l.seq
	}
	l.at[uid] = l.seq
}

// Admit reports whether a connection that logged in with res may stay:
// false when its user logged out after its token was checked. engine calls
// it once the connection is registered, before the login reply goes out.
func (r *Router) Admit(res LoginResult) bool {
	l := &r.logouts
	l.mu.Lock()
	defer l.mu.Unlock()
	return res.checked >= l.floor && l.at[res.Identity.UID] <= res.checked
}
