package router

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/imgate/imgate/storage"
)

// InitUserRequest is the body of POST /im/vanke/initUser (PROTOCOL §1.1),
// already decoded by httpapi. TypeSet tells an absent type from 0.
type InitUserRequest struct {
	SenderID   string
	Token      string
	Type       int
	TypeSet    bool
	Nick       string
	Avatar     string
	Terminal   string
	Sign       string
	ReceiverID string
}

// InitUserResult is what InitUser registered. Token and ExpireAt are set
// only when the server generated the token (ext); a caller-supplied token
// is answered with data null (compat).
type InitUserResult struct {
	User      storage.User
	Generated bool
	Token     string
	ExpireAt  int64
}

// maxIDLen bounds user and group ids (PROTOCOL §0).
const maxIDLen = 64

// ValidID reports whether s is a well-formed user or group id:
// 1-64 bytes of [A-Za-z0-9_.@:-].
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == '@', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// maxProfileField bounds nick, avatar, terminal, sign and token: enough for
// any real value, small enough that a profile stays a few hundred bytes.
const maxProfileField = 1024

// InitUser registers or refreshes a user and binds the connection token
// (PROTOCOL §1.1); a registered receiverId becomes a contact of the user
// and the user of it. It returns a *FieldError for malformed input and
// ErrLoginFailed when the token belongs to another user.
func (r *Router) InitUser(req InitUserRequest) (InitUserResult, error) {
	res, err := r.register(req)
	if err != nil || req.ReceiverID == "" || req.ReceiverID == req.SenderID {
		return res, err
	}
	p, err := r.db.UserByID(req.ReceiverID)
	if errors.Is(err, storage.ErrNotFound) {
		return res, nil // unknown receivers are ignored (compat)
	}
	if err != nil {
		return InitUserResult{}, err
	}
	var visitor uint64
	if res.User.Type == storage.UserVisitor && p.Type != storage.UserVisitor {
		visitor = res.User.UID
	}
	if err := r.touch(res.User.UID, p.UID, r.now().UnixMilli(), visitor); err != nil {
		return InitUserResult{}, err
	}
	return res, nil
}

// register is InitUser without the receiver: validation, profile, token.
func (r *Router) register(req InitUserRequest) (InitUserResult, error) {
	switch {
	case req.SenderID == "":
		return InitUserResult{}, &FieldError{Field: "senderId", Msg: "senderId is required"}
	case !ValidID(req.SenderID):
		return InitUserResult{}, &FieldError{Field: "senderId", Msg: "senderId must be 1-64 characters of [A-Za-z0-9_.@:-]"}
	case !req.TypeSet:
		return InitUserResult{}, &FieldError{Field: "type", Msg: "type is required"}
	case req.Type < storage.UserVisitor || req.Type > storage.UserConsultant:
		return InitUserResult{}, &FieldError{Field: "type", Msg: "type must be 0 (visitor), 1 (agent) or 2 (consultant)"}
	}
	for _, f := range [...]struct{ name, v string }{
		{"token", req.Token}, {"nick", req.Nick}, {"avatar", req.Avatar},
		{"terminal", req.Terminal}, {"sign", req.Sign},
	} {
		if len(f.v) > maxProfileField {
			return InitUserResult{}, &FieldError{Field: f.name, Msg: fmt.Sprintf("%s is longer than %d bytes", f.name, maxProfileField)}
		}
	}

	now := r.now()
	res := InitUserResult{ExpireAt: now.Add(r.opts.TokenTTL).UnixMilli()}
	token := req.Token
	if token == "" {
		token = newToken()
		res.Generated, res.Token = true, token
	}
	u, err := r.db.Register(storage.Registration{
		User: storage.User{
			ID: req.SenderID, Type: req.Type, Nick: req.Nick, Avatar: req.Avatar,
			Terminal: req.Terminal, Sign: req.Sign,
		},
		Token:       token,
		TokenExpire: res.ExpireAt,
		Now:         now.UnixMilli(),
	})
	if errors.Is(err, storage.ErrTokenTaken) {
		return InitUserResult{}, ErrLoginFailed
	}
	if err != nil {
		return InitUserResult{}, err
	}
	res.User = u
	return res, nil
}

// newToken returns 32 lowercase hex characters from the system CSPRNG.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
