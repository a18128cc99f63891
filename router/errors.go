package router

import (
	"errors"
	"fmt"

	"github.com/imgate/imgate/codec"
)

// Close status codes the router asks for (RFC 6455 §7.4.1).
const (
	CloseNormal    uint16 = 1000
	CloseGoingAway uint16 = 1001
	ClosePolicy    uint16 = 1008
)

// Error is a reply: the client gets the envelope {code, command, msg} and
// the connection stays open.
type Error struct {
	Code    codec.Code
	Command codec.Cmd
}

func (e *Error) Error() string {
	return fmt.Sprintf("router: reply %d to command %d", e.Code, e.Command)
}

// Disconnect ends the connection with a CLOSE frame. Reason must fit in 123
// bytes.
type Disconnect struct {
	Code   uint16
	Reason string
}

func (d *Disconnect) Error() string {
	return fmt.Sprintf("router: disconnect %d %s", d.Code, d.Reason)
}

// FieldError is a malformed HTTP API input; httpapi answers 400 with Msg.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "router: " + e.Msg }

// Business failures of the HTTP API (HTTP 200, code 500, compat messages).
var (
	ErrLoginFailed  = errors.New("登录IM系统失败!")
	ErrReceiverBusy = errors.New("当前客服繁忙，建议您电话咨询!")
)
