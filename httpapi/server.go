package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/router"
	"github.com/imgate/imgate/storage"
)

// Defaults and limits.
const (
	// DefaultMaxBodySize bounds a request body: a registration is well
	// under 1 KiB; 64 KiB leaves room for long avatars and signatures.
	DefaultMaxBodySize = 64 << 10
	// DefaultAllowOrigin is the CORS origin when none is configured: none,
	// so no CORS headers are sent and browsers keep other sites' pages
	// from calling the API (it used to be "*", which let any web page bind
	// tokens through a visitor's browser).
	DefaultAllowOrigin = ""
	// readTimeout and writeTimeout bound one request; backends are on a
	// trusted network and answer fast.
	readTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	idleTimeout  = 90 * time.Second
	// maxConns bounds concurrent HTTP connections.
	maxConns = 10000
)

// Options configures a Server. Zero values mean the documented defaults.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// APIKey, when set, is required as "Authorization: Bearer <key>" on
	// every endpoint but /healthz, /metrics and CORS preflights.
	APIKey string
	// AllowOrigin is the Access-Control-Allow-Origin value; "" means no
	// CORS headers at all (PROTOCOL §1).
	AllowOrigin string
	// MaxBodySize bounds request bodies; zero means DefaultMaxBodySize.
	MaxBodySize int
	// Ready reports whether the gateway's listeners are up, for /healthz;
	// nil means always.
	Ready func() error
	// Metrics appends Prometheus text-format lines for /metrics; nil
	// means none beyond the API's own counters.
	Metrics func(dst []byte) []byte
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodySize == 0 {
		o.MaxBodySize = DefaultMaxBodySize
	}
	return o
}

// Server is the HTTP API. Create it with New and run it with Serve.
type Server struct {
	r    *router.Router
	db   storage.Store
	opts Options
	log  *slog.Logger
	srv  *fasthttp.Server
	key  []byte
	m    apiMetrics
}

// New returns a Server over r and db.
func New(r *router.Router, db storage.Store, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if opts.MaxBodySize < 0 {
		return nil, errors.New("httpapi: negative max body size")
	}
	s := &Server{r: r, db: db, opts: opts, log: opts.Logger, key: []byte(opts.APIKey)}
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.handleError,
		Name:                  "imgate",
		MaxRequestBodySize:    opts.MaxBodySize,
		ReadTimeout:           readTimeout,
		WriteTimeout:          writeTimeout,
		IdleTimeout:           idleTimeout,
		Concurrency:           maxConns,
		NoDefaultContentType:  true,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		// Bodies are JSON only (415 otherwise): never parse a multipart
		// form, which would answer 400 before the content type is checked.
		DisablePreParseMultipartForm: true,
		Logger:                       fasthttpLogger{opts.Logger},
	}
	return s, nil
}

// Serve serves HTTP on ln until Shutdown. A connection refused with 413
// closes lingering (linger.go), so that the client reads the answer.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(lingerListener{ln}) }

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.ShutdownWithContext(ctx) }

// Handler returns the request handler, for in-memory tests.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// authorized checks the bearer key in constant time.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	if len(s.key) == 0 {
		return true
	}
	const prefix = "Bearer "
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if len(h) < len(prefix) || string(h[:len(prefix)]) != prefix {
		return false
	}
	return subtle.ConstantTimeCompare(h[len(prefix):], s.key) == 1
}

// cors sets the CORS origin header when one is configured (PROTOCOL §1).
func (s *Server) cors(ctx *fasthttp.RequestCtx) {
	if s.opts.AllowOrigin != "" {
		ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowOrigin, s.opts.AllowOrigin)
	}
}

// jsonBody reports whether the request's Content-Type is application/json,
// with or without parameters such as charset.
func jsonBody(ctx *fasthttp.RequestCtx) bool {
	ct := ctx.Request.Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return bytes.EqualFold(bytes.TrimSpace(ct), []byte("application/json"))
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	s.cors(ctx)
	path := string(ctx.Path())
	rt, known := routes[path]
	if ctx.IsOptions() {
		if !known {
			s.fail(ctx, fasthttp.StatusNotFound, "not found")
			return
		}
		if s.opts.AllowOrigin != "" {
			h.Set(fasthttp.HeaderAccessControlAllowMethods, rt.method+", OPTIONS")
			h.Set(fasthttp.HeaderAccessControlAllowHeaders, "Content-Type, Authorization")
			h.Set(fasthttp.HeaderAccessControlMaxAge, "86400")
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !known {
		s.fail(ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	if string(ctx.Method()) != rt.method {
		h.Set(fasthttp.HeaderAllow, rt.method+", OPTIONS")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed: use "+rt.method)
		return
	}
	if rt.auth && !s.authorized(ctx) {
		h.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="imgate"`)
		s.fail(ctx, fasthttp.StatusUnauthorized, "unauthorized")
		return
	}
	// Only JSON: a page of another site can POST text/plain without a
	// preflight, but not application/json (PROTOCOL §1).
	if rt.method == fasthttp.MethodPost && !jsonBody(ctx) {
		s.fail(ctx, fasthttp.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	s.m.requests.Add(1)
	rt.handle(s, ctx)
}

// handleError answers what fasthttp refused before our handler ran. Its
// answers close the connection.
func (s *Server) handleError(ctx *fasthttp.RequestCtx, err error) {
	s.cors(ctx)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		// The client may still be sending the body: close lingering, or
		// the unread bytes turn the close into a reset that destroys the
		// 413 before the client reads it.
		lingerOnClose(ctx.Conn())
		s.fail(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		s.fail(ctx, fasthttp.StatusRequestTimeout, "request timeout")
		return
	}
	s.fail(ctx, fasthttp.StatusBadRequest, "malformed request")
}

type route struct {
	method string
	auth   bool
	handle func(*Server, *fasthttp.RequestCtx)
}

var routes = map[string]route{
	"/im/vanke/initUser":    {method: fasthttp.MethodPost, auth: true, handle: (*Server).initUser},
	"/im/vanke/getReceiver": {method: fasthttp.MethodPost, auth: true, handle: (*Server).getReceiver},
	"/im/vanke/chatInfo":    {method: fasthttp.MethodPost, auth: true, handle: (*Server).chatInfo},
	"/im/vanke/logout":      {method: fasthttp.MethodPost, auth: true, handle: (*Server).logout},
	"/healthz":              {method: fasthttp.MethodGet, handle: (*Server).healthz},
	"/metrics":              {method: fasthttp.MethodGet, handle: (*Server).metrics},
}

// fasthttpLogger sends fasthttp's own reports (connection-level errors that
// it also answers) to slog at debug level: they are per-request noise.
// fasthttp's text is the line's message and library=fasthttp names its
// source (not component: main's logger already carries component=httpapi),
// so a JSON line has one "msg".
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...), "library", "fasthttp")
	}
}
