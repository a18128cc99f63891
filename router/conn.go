package router

import (
	"errors"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// Handlers of the connection commands: 3 auth, 5 login, 13 heartbeat,
// 14 close (PROTOCOL §3).

// auth answers 10009: every served connection is authenticated (compat).
func (r *Router) auth(c *Context) error {
	c.Reply(codec.CodeAuthOK, codec.CmdAuthResp, nil)
	return nil
}

// heartbeat answers {"command":13,"data":{"createTime":now,"hbbyte":-128}};
// the request body is ignored (compat). It allocates nothing.
func (r *Router) heartbeat(c *Context) error {
	c.scratch = codec.AppendHeartbeat(c.scratch[:0], r.now().UnixMilli())
	c.out = codec.AppendTextFrame(c.out, c.scratch)
	return nil
}

// close answers 10021 and closes with 1000: this connection, or with
// userid equal to the caller every connection of the caller. Another
// user's id is refused with 10024 and nothing closes (fix).
func (r *Router) close(c *Context) error {
	me := c.Session.Identity()
	target := c.Req.User()
	if target != "" && target != me.ID {
		return &Error{Code: codec.CodeForbidden, Command: codec.CmdClose}
	}
	c.Reply(codec.CodeCloseOK, codec.CmdClose, nil)
	// The close comes after the reply (Handle, emit).
	c.closeCode, c.closeReason, c.closeAll = CloseNormal, "close requested", target != ""
	return nil
}

// login re-checks a token on a live connection (cmd 5): same checks as at
// the upgrade; a token of another user fails with 10008 and changes
// nothing, since a connection acts as one user for its whole life.
func (r *Router) login(c *Context) error {
	info, err := r.db.TokenInfo(c.Req.Token, r.now().UnixMilli())
	if err != nil || info.User.UID != c.Session.Identity().UID {
		if err != nil && !loginRefusal(err) {
			return err
		}
		return &Error{Code: codec.CodeLoginFailed, Command: codec.CmdLoginResp}
	}
	ack := c.Session.Acking()
	if n, ok, err := codec.ParseInt(c.Req.Ack); ok && err == nil && n == 1 && !ack {
		c.Session.SetAcking()
		ack = true
	}
	c.scratch = appendLoginData(c.scratch[:0], &info.User, r.db.Epoch(), ack)
	data := append([]byte(nil), c.scratch...)
	c.Reply(codec.CodeLoginOK, codec.CmdLoginResp, data)
	return nil
}

// loginRefusal reports whether err is a token that does not log in
// (unknown, expired, revoked) rather than a failure of the store.
func loginRefusal(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrTokenExpired) || errors.Is(err, storage.ErrTokenRevoked)
}

// loginFailedFrame is the first and last frame of a refused connection.
var loginFailedFrame = codec.AppendTextFrame(nil, codec.AppendEnvelope(nil, codec.CodeLoginFailed, codec.CmdLoginResp, nil))

// authenticate checks the token of a connection that has just upgraded.
// The connection's terminal is the token's (PROTOCOL §1.5).
func (r *Router) authenticate(token string, ack bool) LoginResult {
	checked := r.logouts.now() // before the lookup (Admit)
	info, err := r.db.TokenInfo(token, r.now().UnixMilli())
	if err != nil {
		if !loginRefusal(err) {
			r.log.Error("login lookup failed", "err", err)
		}
		return LoginResult{Frame: loginFailedFrame}
	}
	u := &info.User
	frame := textFrame(func(b []byte) []byte {
		b = codec.AppendEnvelopeStart(b, codec.CodeLoginOK, codec.CmdLoginResp)
		return codec.AppendEnvelopeEnd(appendLoginData(b, u, r.db.Epoch(), ack), codec.CodeLoginOK)
	})
	return LoginResult{OK: true, Ack: ack, Identity: Identity{UID: u.UID, ID: u.ID, Type: u.Type, Terminal: info.Terminal}, Frame: frame, checked: checked}
}

// appendLoginData appends the login reply's data (ext): the user object,
// "ack":1 for an acknowledging connection (PROTOCOL §7.2) and the store's
// epoch (§7.7), keys in alphabetical order.
func appendLoginData(dst []byte, u *storage.User, epoch string, ack bool) []byte {
	o := codec.BeginObject(dst)
	if ack {
		o.Int("ack", 1)
	}
	o.String("avatar", u.Avatar)
	o.String("epoch", epoch)
	o.String("id", u.ID)
	o.String("nick", u.Nick)
	o.String("sign", u.Sign)
	o.String("terminal", u.Terminal)
	o.Int("type", int64(u.Type))
	return o.End()
}
