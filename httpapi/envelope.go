package httpapi

import (
	"strconv"

	"github.com/bytedance/sonic"
	"github.com/valyala/fasthttp"
)

// The HTTP API's envelope is {"code","msg","data"}, data always present,
// null allowed (PROTOCOL §1, compat with a Spring server).

const contentTypeJSON = "application/json;charset=UTF-8"

// reply writes HTTP 200 with code 200 and data (raw JSON; nil means null).
func (s *Server) reply(ctx *fasthttp.RequestCtx, data []byte) {
	s.write(ctx, fasthttp.StatusOK, 200, "success", data)
}

// refuse writes a business failure: HTTP 200, code 500, msg (compat).
func (s *Server) refuse(ctx *fasthttp.RequestCtx, msg string) {
	s.write(ctx, fasthttp.StatusOK, 500, msg, nil)
}

// fail writes an HTTP error whose envelope code is the HTTP status.
func (s *Server) fail(ctx *fasthttp.RequestCtx, status int, msg string) {
	s.write(ctx, status, status, msg, nil)
}

func (s *Server) write(ctx *fasthttp.RequestCtx, status, code int, msg string, data []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentTypeJSON)
	b := ctx.Response.BodyWriter()
	buf := make([]byte, 0, 64+len(msg)+len(data))
	buf = append(buf, `{"code":`...)
	buf = strconv.AppendInt(buf, int64(code), 10)
	buf = append(buf, `,"msg":`...)
	buf = appendJSONString(buf, msg)
	buf = append(buf, `,"data":`...)
	if data == nil {
		buf = append(buf, "null"...)
	} else {
		buf = append(buf, data...)
	}
	buf = append(buf, '}')
	_, _ = b.Write(buf)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	b, err := sonic.ConfigStd.Marshal(s)
	if err != nil { // unreachable for a string; keep the envelope valid anyway
		return append(dst, `""`...)
	}
	return append(dst, b...)
}
