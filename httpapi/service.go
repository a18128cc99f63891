package httpapi

import (
	"encoding/json"
	"strconv"

	"github.com/bytedance/sonic"
	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/router"
)

// getReceiver: POST /im/vanke/getReceiver (PROTOCOL §1.2).
func (s *Server) getReceiver(ctx *fasthttp.RequestCtx) {
	req, ok := s.decodeUserBody(ctx)
	if !ok {
		return
	}
	p, err := s.r.GetReceiver(req)
	if !s.answered(ctx, err) {
		return
	}
	status := "offline"
	if p.Online {
		status = "online"
	}
	// Key order as the Spring server sent it.
	b := make([]byte, 0, 256)
	b = append(b, `{"id":`...)
	b = appendJSONString(b, p.User.ID)
	b = append(b, `,"type":`...)
	b = strconv.AppendInt(b, int64(p.User.Type), 10)
	for _, f := range [...]struct{ k, v string }{
		{"nick", p.User.Nick}, {"avatar", p.User.Avatar}, {"status", status},
		{"sign", p.User.Sign}, {"terminal", p.User.Terminal},
	} {
		b = append(b, `,"`...)
		b = append(b, f.k...)
		b = append(b, `":`...)
		b = appendJSONString(b, f.v)
	}
	b = append(b, `,"friends":null,"groups":null,"extras":null}`...)
	s.reply(ctx, b)
}

// chatInfoBody is the JSON body of chatInfo; numbers may be strings.
type chatInfoBody struct {
	From         lenientString `json:"from"`
	To           lenientString `json:"to"`
	Op           json.Number   `json:"op"`
	IsNewMember  json.Number   `json:"isNewMember"`
	IsConcurrent json.Number   `json:"isConcurrent"`
}

// chatInfo: POST /im/vanke/chatInfo (PROTOCOL §1.3).
func (s *Server) chatInfo(ctx *fasthttp.RequestCtx) {
	raw, ok := s.decodeObject(ctx)
	if !ok {
		return
	}
	var b chatInfoBody
	for _, f := range [...]struct {
		name string
		dst  any
	}{
		{"from", &b.From}, {"to", &b.To}, {"op", &b.Op},
		{"isNewMember", &b.IsNewMember}, {"isConcurrent", &b.IsConcurrent},
	} {
		if v, ok := lookup(raw, f.name); ok {
			if err := sonic.ConfigStd.Unmarshal(v, f.dst); err != nil {
				s.fail(ctx, fasthttp.StatusBadRequest, f.name+" has the wrong type")
				return
			}
		}
	}
	req := router.ChatInfoRequest{From: string(b.From), To: string(b.To)}
	for _, f := range [...]struct {
		name string
		v    json.Number
		dst  *int
	}{{"op", b.Op, &req.Op}, {"isNewMember", b.IsNewMember, &req.IsNewMember}, {"isConcurrent", b.IsConcurrent, &req.IsConcurrent}} {
		if f.v == "" {
			continue
		}
		n, err := strconv.Atoi(string(f.v))
		if err != nil {
			s.fail(ctx, fasthttp.StatusBadRequest, f.name+" must be an integer")
			return
		}
		*f.dst = n
	}
	info, err := s.r.ChatInfo(req)
	if !s.answered(ctx, err) {
		return
	}
	d := make([]byte, 0, 160)
	d = append(d, `{"to":`...)
	d = appendJSONString(d, info.To)
	d = append(d, `,"from":`...)
	d = appendJSONString(d, info.From)
	d = append(d, `,"pendingReplyNum":`...)
	d = strconv.AppendUint(d, info.PendingReply, 10)
	d = append(d, `,"lastedContactsNum":`...)
	d = strconv.AppendInt(d, int64(info.LastedContacts), 10)
	d = append(d, `,"allContactsNum":`...)
	d = strconv.AppendUint(d, info.AllContacts, 10)
	d = append(d, `,"unReadNum":`...)
	d = strconv.AppendUint(d, info.Unread, 10)
	s.reply(ctx, append(d, '}'))
}
