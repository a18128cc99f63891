package router

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

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

// Field limits of PROTOCOL §1.1: enough for any real value, small enough
// that a profile stays a few kilobytes.
const (
	maxNickRunes   = 256
	maxAvatarBytes = 4096
	maxSignBytes   = 1024
	// MaxTerminalBytes bounds a terminal name (initUser, logout).
	MaxTerminalBytes = 32
	// A client-chosen token is 16-128 characters of [A-Za-z0-9_.-]: long
	// enough not to be guessed by trying, short enough for a URL.
	minTokenLen = 16
	maxTokenLen = 128
)

// ValidToken reports whether s is an acceptable client-chosen token:
// 16-128 characters of [A-Za-z0-9_.-] (PROTOCOL §1.1).
func ValidToken(s string) bool {
	if len(s) < minTokenLen || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// validateProfile checks the fields of PROTOCOL §1.1 with a limit, before
// anything is written: a refused request changes nothing.
func validateProfile(req *InitUserRequest) error {
	switch {
	case req.Token != "" && !ValidToken(req.Token):
		return &FieldError{Field: "token", Msg: "token must be 16-128 characters of [A-Za-z0-9_.-]"}
	case utf8.RuneCountInString(req.Nick) > maxNickRunes:
		return &FieldError{Field: "nick", Msg: fmt.Sprintf("nick is longer than %d characters", maxNickRunes)}
	case len(req.Avatar) > maxAvatarBytes:
		return &FieldError{Field: "avatar", Msg: fmt.Sprintf("avatar is longer than %d bytes", maxAvatarBytes)}
	case len(req.Sign) > maxSignBytes:
		return &FieldError{Field: "sign", Msg: fmt.Sprintf("sign is longer than %d bytes", maxSignBytes)}
	case len(req.Terminal) > MaxTerminalBytes:
		return &FieldError{Field: "terminal", Msg: fmt.Sprintf("terminal is longer than %d bytes", MaxTerminalBytes)}
	}
	// Profile fields are display text: valid UTF-8 without NUL, which no
	// name needs and SQL text columns refuse.
	for _, f := range [...]struct{ name, v string }{{"nick", req.Nick}, {"avatar", req.Avatar}, {"sign", req.Sign}, {"terminal", req.Terminal}} {
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return &FieldError{Field: f.name, Msg: f.name + " must be UTF-8 text without NUL characters"}
		}
	}
	return nil
}

// InitUser registers or refreshes a user and binds the connection token
// (PROTOCOL §1.1); a registered receiverId becomes a contact of the user
// and the user of it. It returns a *FieldError for malformed input and
// ErrLoginFailed when the token belongs to another user.
//
// Tokens: each (user, terminal) keeps its storage.MaxTokensPerTerminal (4)
// newest tokens; binding a fifth revokes the oldest, which no longer logs
// in (connections already open with it stay). Expired tokens are deleted
// by a bounded background sweep (startTokenSweep). Logout revokes them at
// once (logout.go).
func (r *Router) InitUser(req InitUserRequest) (InitUserResult, error) {
	if err := validateUser(&req); err != nil {
		return InitUserResult{}, err
	}
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
	if err := r.touch(res.User.UID, p.UID, r.now().UnixMilli(), storage.TouchOptions{Visitor: visitor}); err != nil {
		return InitUserResult{}, err
	}
	return res, nil
}

// validateUser checks every field of an initUser or getReceiver body
// (PROTOCOL §1.1) before anything is written.
func validateUser(req *InitUserRequest) error {
	switch {
	case req.SenderID == "":
		return &FieldError{Field: "senderId", Msg: "senderId is required"}
	case !ValidID(req.SenderID):
		return &FieldError{Field: "senderId", Msg: "senderId must be 1-64 characters of [A-Za-z0-9_.@:-]"}
	case !req.TypeSet:
		return &FieldError{Field: "type", Msg: "type is required"}
	case req.Type < storage.UserVisitor || req.Type > storage.UserConsultant:
		return &FieldError{Field: "type", Msg: "type must be 0 (visitor), 1 (agent) or 2 (consultant)"}
	}
	return validateProfile(req)
}

// register is InitUser without the receiver: profile and token. The
// request has passed validateUser.
func (r *Router) register(req InitUserRequest) (InitUserResult, error) {
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

// The token sweep: how often and how many t| records per pass. 1 000
// records every 10 s walks a million tokens in under three hours, at a
// cost of a few milliseconds per pass.
const (
	tokenSweepEvery = 10 * time.Second
	tokenSweepMax   = 1000
)

// startTokenSweep deletes expired tokens in the background: every
// tokenSweepEvery, storage's SweepTokens reads the next tokenSweepMax token
// records and deletes the expired ones, by the router's clock. The returned
// stop ends the sweep and waits for a pass in progress; it must be called
// before the store is closed.
func (r *Router) startTokenSweep() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(tokenSweepEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			n, err := r.db.SweepTokens(r.now().UnixMilli(), tokenSweepMax)
			switch {
			case errors.Is(err, storage.ErrClosed):
				return
			case err != nil:
				r.log.Error("token sweep failed", "err", err)
			case n > 0:
				r.log.Debug("expired tokens purged", "count", n)
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
