package router

import (
	"errors"
	"fmt"

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
	if r.hub == nil { // no connections are served (tests of the HTTP API alone)
		return 0, nil
	}
	if terminal == "" {
		return r.hub.Disconnect(u.UID, ClosePolicy, logoutReason), nil
	}
	return r.hub.DisconnectTerminal(u.UID, terminal, ClosePolicy, logoutReason), nil
}
