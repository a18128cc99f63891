package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/bytedance/sonic"
	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/router"
)

// lenientString accepts a JSON string or number (ids sent as numbers by
// some backends); null is empty.
type lenientString string

func (s *lenientString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*s = ""
	case b[0] == '"':
		var v string
		if err := sonic.ConfigStd.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = lenientString(v)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		if _, err := strconv.ParseFloat(string(b), 64); err != nil {
			return err
		}
		*s = lenientString(b)
	default:
		return errors.New("want a string")
	}
	return nil
}

// userBody is the decoded JSON body of initUser (PROTOCOL §1.1). Numeric fields
// accept a number or a numeric string (PROTOCOL §0).
type userBody struct {
	SenderID   lenientString `json:"senderId"`
	Token      lenientString `json:"token"`
	Type       json.Number   `json:"type"`
	Nick       lenientString `json:"nick"`
	Avatar     lenientString `json:"avatar"`
	Terminal   lenientString `json:"terminal"`
	Sign       lenientString `json:"sign"`
	ReceiverID lenientString `json:"receiverId"`
}

// decodeUserBody parses the body into a router request, or answers 400
// naming the field at fault. Keys match exactly, else case-insensitively
// (as encoding/json does).
func (s *Server) decodeUserBody(ctx *fasthttp.RequestCtx) (router.InitUserRequest, bool) {
	raw, ok := s.decodeObject(ctx)
	if !ok {
		return router.InitUserRequest{}, false
	}
	var b userBody
	for _, f := range [...]struct {
		name string
		dst  any
	}{
		{"senderId", &b.SenderID}, {"token", &b.Token}, {"type", &b.Type}, {"nick", &b.Nick},
		{"avatar", &b.Avatar}, {"terminal", &b.Terminal}, {"sign", &b.Sign}, {"receiverId", &b.ReceiverID},
	} {
		v, ok := lookup(raw, f.name)
		if !ok {
			continue
		}
		if err := sonic.ConfigStd.Unmarshal(v, f.dst); err != nil {
			s.fail(ctx, fasthttp.StatusBadRequest, f.name+" has the wrong type")
			return router.InitUserRequest{}, false
		}
	}
	req := router.InitUserRequest{
		SenderID: string(b.SenderID), Token: string(b.Token), Nick: string(b.Nick),
		Avatar: string(b.Avatar), Terminal: string(b.Terminal), Sign: string(b.Sign),
		ReceiverID: string(b.ReceiverID),
	}
	if b.Type != "" {
		t, err := strconv.Atoi(string(b.Type))
		if err != nil {
			s.fail(ctx, fasthttp.StatusBadRequest, "type must be an integer")
			return router.InitUserRequest{}, false
		}
		req.Type, req.TypeSet = t, true
	}
	return req, true
}

// decodeObject parses the body as one JSON object, or answers 400.
func (s *Server) decodeObject(ctx *fasthttp.RequestCtx) (map[string]json.RawMessage, bool) {
	body := bytes.TrimSpace(ctx.PostBody())
	var raw map[string]json.RawMessage
	if len(body) == 0 || body[0] != '{' || sonic.ConfigStd.Unmarshal(body, &raw) != nil {
		s.fail(ctx, fasthttp.StatusBadRequest, "body must be a JSON object")
		return nil, false
	}
	return raw, true
}

// lookup finds key in m exactly, else case-insensitively.
func lookup(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// initUser: POST /im/vanke/initUser (PROTOCOL §1.1).
func (s *Server) initUser(ctx *fasthttp.RequestCtx) {
	req, ok := s.decodeUserBody(ctx)
	if !ok {
		return
	}
	res, err := s.r.InitUser(req)
	if !s.answered(ctx, err) {
		return
	}
	if !res.Generated {
		s.reply(ctx, nil)
		return
	}
	data := make([]byte, 0, 80)
	data = append(data, `{"token":"`...)
	data = append(data, res.Token...) // 32 hex: nothing to escape
	data = append(data, `","expireAt":`...)
	data = strconv.AppendInt(data, res.ExpireAt, 10)
	data = append(data, '}')
	s.reply(ctx, data)
}

// logout: POST /im/vanke/logout (PROTOCOL §1.5): revokes the user's tokens
// (of terminal, when given) and closes its connections (of terminal).
func (s *Server) logout(ctx *fasthttp.RequestCtx) {
	raw, ok := s.decodeObject(ctx)
	if !ok {
		return
	}
	var senderID, terminal lenientString
	for _, f := range [...]struct {
		name string
		dst  *lenientString
	}{{"senderId", &senderID}, {"terminal", &terminal}} {
		if v, ok := lookup(raw, f.name); ok {
			if err := sonic.ConfigStd.Unmarshal(v, f.dst); err != nil {
				s.fail(ctx, fasthttp.StatusBadRequest, f.name+" has the wrong type")
				return
			}
		}
	}
	closed, err := s.r.Logout(string(senderID), string(terminal))
	if !s.answered(ctx, err) {
		return
	}
	data := make([]byte, 0, 24)
	data = append(data, `{"closed":`...)
	data = strconv.AppendInt(data, int64(closed), 10)
	s.reply(ctx, append(data, '}'))
}

// answered turns a router error into its response and reports whether the
// handler should go on (err == nil).
func (s *Server) answered(ctx *fasthttp.RequestCtx, err error) bool {
	var fe *router.FieldError
	switch {
	case err == nil:
		return true
	case errors.As(err, &fe):
		s.fail(ctx, fasthttp.StatusBadRequest, fe.Msg)
	case errors.Is(err, router.ErrLoginFailed), errors.Is(err, router.ErrReceiverBusy), errors.Is(err, router.ErrUserNotFound):
		s.refuse(ctx, err.Error())
	default:
		s.log.Error("api request failed", "path", string(ctx.Path()), "err", err)
		s.fail(ctx, fasthttp.StatusInternalServerError, "internal error")
	}
	return false
}
