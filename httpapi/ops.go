package httpapi

import (
	"strconv"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

type apiMetrics struct {
	requests atomic.Uint64
}

// healthz: 200 when storage and listeners are up (PROTOCOL §1.4).
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	if err := s.db.Ping(); err != nil {
		s.fail(ctx, fasthttp.StatusServiceUnavailable, "storage unavailable")
		return
	}
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			s.fail(ctx, fasthttp.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	s.reply(ctx, []byte(`"ok"`))
}

// metrics: Prometheus text format (PROTOCOL §1.4).
func (s *Server) metrics(ctx *fasthttp.RequestCtx) {
	b := make([]byte, 0, 1024)
	b = append(b, "# HELP imgate_http_requests_total HTTP API requests served.\n# TYPE imgate_http_requests_total counter\nimgate_http_requests_total "...)
	b = strconv.AppendUint(b, s.m.requests.Load(), 10)
	b = append(b, '\n')
	if s.opts.Metrics != nil {
		b = s.opts.Metrics(b)
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	ctx.SetBody(b)
}
