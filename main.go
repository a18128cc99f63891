// Command imgate is an instant-messaging gateway that speaks the J-IM
// customer-service protocol: WebSocket clients on one port, a trusted HTTP
// API on another, durable state in an embedded Pebble store or in
// PostgreSQL.
//
//	go run .            # WebSocket :8889, HTTP API 127.0.0.1:8082, data in ./data
//	go run . -store postgres://user@host/db   # the store in PostgreSQL
//	go run . -h         # flags; each has an IMGATE_* environment fallback
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imgate/imgate/cluster"
	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/engine"
	"github.com/imgate/imgate/httpapi"
	"github.com/imgate/imgate/router"
	"github.com/imgate/imgate/storage"
	"github.com/imgate/imgate/storage/pebble"
	"github.com/imgate/imgate/storage/postgres"
)

// config is everything main reads from flags and the environment.
type config struct {
	WSAddr         string
	HTTPAddr       string
	DataDir        string
	Store          string
	NATS           string
	NATSPrefix     string
	APIKey         string
	AllowOrigin    string
	InsecureHTTP   bool
	IdleTimeout    time.Duration
	PingInterval   time.Duration
	MaxMessageSize int
	MaxPending     int
	MaxOutputTotal int64
	MaxConnsUser   int
	MaxInflight    int
	TokenTTL       time.Duration
	PageCap        int
	RateLimit      int
	RateBurst      int
	RecallWindow   time.Duration
	MaxGroup       int
	LogLevel       string
	LogFormat      string
	PprofAddr      string
	Metrics        bool
	Procs          int
	// Now is the clock; nil means time.Now (tests inject one).
	Now func() time.Time
}

// parseFlags reads args, with IMGATE_* environment variables as fallbacks
// for flags not given on the command line.
func parseFlags(args []string, getenv func(string) string) (c config, err error) {
	fs, _ := flagSet(&c, nil)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	defer func() {
		if err == nil && (c.Procs < 0 || c.Procs > maxProcs) {
			err = fmt.Errorf("-procs %d: want 0 (the default) to %d", c.Procs, maxProcs)
		}
	}()
	// The command line wins: the environment sets only the flags it did
	// not, so a bad variable for a flag given on the command line is
	// never read.
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envVar(f.Name)
		if v := getenv(name); v != "" && !given[f.Name] {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w (durations take a unit, e.g. 90s; booleans true or false)", name, v, err)
			}
		}
	})
	return c, envErr
}

// flagSet defines the flags into c. Each flag's usage ends naming its
// environment variable (envVar), so -h lists them; a flag whose variable
// getenv (if not nil) returns non-empty is set from it.
func flagSet(c *config, getenv func(string) string) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("imgate", flag.ContinueOnError)
	fs.StringVar(&c.WSAddr, "ws-addr", ":8889", "WebSocket listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:8082", "HTTP API listen address (trusted backends)")
	fs.StringVar(&c.DataDir, "data", "./data", "Pebble data directory (with the default -store)")
	fs.StringVar(&c.Store, "store", "", "the store: empty or 'pebble' for the embedded Pebble store in -data; a postgres:// (or postgresql://) URL for PostgreSQL, e.g. postgres://imgate:PASS@db:5432/imgate?sslmode=require (-data is then ignored; pool_max_conns, default 16, and application_name in the URL are honoured)")
	fs.StringVar(&c.NATS, "nats", "", "cluster mode (PROTOCOL §8): NATS server URLs, comma-separated, e.g. nats://h1:4222,nats://h2:4222, or 'embedded' for an in-process NATS server (a one-node cluster to try it); needs a PostgreSQL -store shared by every node (empty: one node)")
	fs.StringVar(&c.NATSPrefix, "nats-prefix", cluster.DefaultPrefix, "subject prefix of this cluster on NATS; clusters sharing a NATS account need different ones")
	fs.StringVar(&c.APIKey, "api-key", "", "require 'Authorization: Bearer KEY' on the HTTP API (empty: no key)")
	fs.StringVar(&c.AllowOrigin, "allow-origin", httpapi.DefaultAllowOrigin, "CORS Access-Control-Allow-Origin of the HTTP API (empty: no CORS headers)")
	fs.BoolVar(&c.InsecureHTTP, "insecure-http", false, "serve the HTTP API on a non-loopback -http-addr without -api-key (logs a warning)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", engine.DefaultIdleTimeout, "close a WebSocket silent this long")
	fs.DurationVar(&c.PingInterval, "ping-interval", engine.DefaultPingInterval, "ping a WebSocket silent this long")
	fs.IntVar(&c.MaxMessageSize, "max-message-size", engine.DefaultMaxMessageSize, "largest WebSocket message in bytes (close 1009 above)")
	fs.IntVar(&c.MaxPending, "max-pending", engine.DefaultMaxPending, "unsent bytes per connection before it is closed as a slow consumer")
	fs.Int64Var(&c.MaxOutputTotal, "max-output-total", engine.DefaultMaxOutputTotal, "unsent bytes of all connections together; past it the connections holding the most are closed as slow consumers")
	fs.IntVar(&c.MaxConnsUser, "max-conns-per-user", engine.DefaultMaxConnsPerUser, "live connections one user may hold; the next login gets 10008 and close 1008 (negative: no cap)")
	fs.IntVar(&c.MaxInflight, "max-inflight", engine.DefaultMaxInflight, "unacknowledged pushes an ack=1 connection may hold; past it the connection is closed 1008 and they are queued (PROTOCOL §7.2)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", router.DefaultTokenTTL, "lifetime of a token bound by initUser")
	fs.IntVar(&c.PageCap, "page-cap", router.DefaultPageCap, "most messages in one get-messages (cmd 19) page")
	fs.IntVar(&c.RateLimit, "rate-limit", engine.DefaultRateLimit, "messages per second per connection before 10028 (negative: no limit)")
	fs.IntVar(&c.RateBurst, "rate-burst", engine.DefaultRateBurst, "messages a connection may send at once")
	fs.DurationVar(&c.RecallWindow, "recall-window", router.DefaultRecallWindow, "how long after sending a message may be recalled")
	fs.IntVar(&c.MaxGroup, "max-group-members", router.DefaultMaxGroupMembers, "member cap of a group")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text (slog's key=value lines) or json (one JSON object a line)")
	fs.StringVar(&c.PprofAddr, "pprof", "", "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (empty: off)")
	fs.BoolVar(&c.Metrics, "metrics", true, "observe the hot path for /metrics: ack, push and commit latency histograms, requests by command and code (false: /metrics keeps the gauges and counters kept anyway)")
	fs.IntVar(&c.Procs, "procs", 0, "Go processors (GOMAXPROCS) to run on, at most "+strconv.Itoa(maxProcs)+"; 0: the GOMAXPROCS environment variable if set, else Go's default when a container's CPU limit lowers it below the CPUs, else the CPUs plus "+strconv.Itoa(spareProcs)+", so that goroutines running long (compactions, flushes, the committer, the GC) never leave an event loop waiting for a processor")
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envVar(f.Name)
		f.Usage += " (env " + name + ")"
		if getenv == nil {
			return
		}
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	return fs, envErr
}

// envVar is the environment variable of flag name: IMGATE_ and the name
// in upper case with '_' for '-' (-ws-addr: IMGATE_WS_ADDR).
func envVar(name string) string {
	return "IMGATE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// newLogger returns the gateway's logger: lines at level (-log-level) and
// above, written to w in format (-log-format): text, slog's key=value
// lines, or json, one JSON object a line.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// openStore opens the store -store names.
func openStore(cfg config, log *slog.Logger, commits storage.CommitObserver) (storage.Store, error) {
	switch {
	case cfg.Store == "" || cfg.Store == "pebble":
		db, err := pebble.Open(cfg.DataDir, pebble.Options{Logger: log, Commits: commits})
		if err != nil {
			// Not db: a nil *pebble.DB in a Store is a non-nil Store,
			// which start's cleanup would Close.
			return nil, err
		}
		return db, nil
	case hasScheme(cfg.Store, "postgres") || hasScheme(cfg.Store, "postgresql"):
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		db, err := postgres.Open(ctx, cfg.Store, postgres.Options{Logger: log, Commits: commits})
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", redactURL(cfg.Store), err)
		}
		log.Info("store", "kind", "postgres", "url", redactURL(cfg.Store))
		return db, nil
	default:
		return nil, fmt.Errorf("-store %q: want empty, 'pebble' or a postgres:// URL", redactURL(cfg.Store))
	}
}

// hasScheme reports whether s is a URL of scheme (any case, RFC 3986).
func hasScheme(s, scheme string) bool {
	return len(s) > len(scheme)+3 && strings.EqualFold(s[:len(scheme)], scheme) && s[len(scheme):len(scheme)+3] == "://"
}

// redactURL hides the password of a store URL in logs and errors: the
// user:password@ part, a password= query parameter or key=value pair.
func redactURL(s string) string {
	s = userinfoPassword.ReplaceAllString(s, "${1}xxxxx@")
	return passwordParam.ReplaceAllString(s, "${1}xxxxx")
}

var (
	userinfoPassword = regexp.MustCompile(`(://[^:/@?#]*:)[^@/?#]*@`)
	passwordParam    = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|[^&\s]*)`)
)

// server is one running gateway: store, router, WebSocket engine, HTTP API.
type server struct {
	log    *slog.Logger
	nats   *embeddedNATS // -nats embedded
	node   *cluster.Node // cluster mode
	db     storage.Store
	router *router.Router
	engine *engine.Engine
	api    *httpapi.Server
	httpLn net.Listener
	apiErr chan error
	// pprofLn serves profiles when -pprof is set.
	pprofLn net.Listener
	inst    *instruments
}

// start opens the store and starts both listeners.
func start(cfg config, log *slog.Logger) (_ *server, err error) {
	if err := checkHTTPExposure(cfg, log); err != nil {
		return nil, err
	}
	if err := codec.Pretouch(); err != nil {
		return nil, fmt.Errorf("pretouch codec: %w", err)
	}
	s := &server{log: log, apiErr: make(chan error, 1), inst: newInstruments(cfg.Metrics)}
	defer func() {
		if err != nil {
			s.stop(context.Background())
		}
	}()
	if cfg.NATS != "" && (cfg.Store == "" || strings.EqualFold(cfg.Store, "pebble")) {
		return nil, errors.New("-nats needs a shared store: a Pebble directory is one node's disk; set -store to a postgres:// URL that every node uses")
	}
	if s.db, err = openStore(cfg, log.With("component", "storage"), s.inst.commitObserver()); err != nil {
		return nil, err
	}
	s.router, err = router.New(s.db, router.Options{
		Logger:   log.With("component", "router"),
		Now:      cfg.Now,
		TokenTTL: cfg.TokenTTL,
		PageCap:  cfg.PageCap,
		// The recall window and group cap follow the flags.
		RecallWindow:    cfg.RecallWindow,
		MaxGroupMembers: cfg.MaxGroup,
		RequestCounts:   cfg.Metrics,
	})
	if err != nil {
		return nil, err
	}
	s.engine, err = engine.New(s.router, engine.Options{
		Logger:          log.With("component", "engine"),
		Addr:            cfg.WSAddr,
		IdleTimeout:     cfg.IdleTimeout,
		PingInterval:    cfg.PingInterval,
		MaxMessageSize:  cfg.MaxMessageSize,
		MaxPending:      cfg.MaxPending,
		RateLimit:       cfg.RateLimit,
		RateBurst:       cfg.RateBurst,
		Now:             cfg.Now,
		MaxOutputTotal:  cfg.MaxOutputTotal,
		MaxConnsPerUser: cfg.MaxConnsUser,
		MaxInflight:     cfg.MaxInflight,
		ReplyLatency:    observer(s.inst.ackLatency),
		PushLatency:     observer(s.inst.pushLatency),
	})
	if err != nil {
		return nil, err
	}
	if cfg.NATS == "" {
		s.router.SetHub(s.engine)
	} else if err = s.joinCluster(cfg, log); err != nil {
		return nil, err
	}
	s.api, err = httpapi.New(s.router, s.db, httpapi.Options{
		Logger:      log.With("component", "httpapi"),
		APIKey:      cfg.APIKey,
		AllowOrigin: cfg.AllowOrigin,
		Metrics:     s.inst.appendText,
	})
	if err != nil {
		return nil, err
	}
	s.inst.reg.MustRegister(gatewayCollector{s})
	if err = s.engine.Start(); err != nil {
		s.engine = nil
		return nil, fmt.Errorf("websocket listener %s: %w", cfg.WSAddr, err)
	}
	log.Info("listening", "proto", "websocket", "addr", s.engine.Addr().String())
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	log.Info("listening", "proto", "http", "addr", s.httpLn.Addr().String())
	go func() { s.apiErr <- s.api.Serve(s.httpLn) }()
	if cfg.PprofAddr != "" {
		if s.pprofLn, err = net.Listen("tcp", cfg.PprofAddr); err != nil {
			return nil, fmt.Errorf("pprof listener: %w", err)
		}
		log.Info("listening", "proto", "pprof", "addr", s.pprofLn.Addr().String())
		go func() { _ = http.Serve(s.pprofLn, pprofMux()) }()
	}
	return s, nil
}

// checkHTTPExposure refuses to serve the HTTP API beyond this host without
// a key (PROTOCOL §1): it binds tokens to users, so a non-loopback
// -http-addr needs -api-key, unless -insecure-http says it is open on
// purpose, which is logged as a warning.
func checkHTTPExposure(cfg config, log *slog.Logger) error {
	if cfg.APIKey != "" || loopbackAddr(cfg.HTTPAddr) {
		return nil
	}
	if !cfg.InsecureHTTP {
		return fmt.Errorf("-http-addr %q is not a loopback address and -api-key is empty: set -api-key, or -insecure-http to serve the API without a key on purpose", cfg.HTTPAddr)
	}
	log.Warn("http api serves without a key on a non-loopback address", "addr", cfg.HTTPAddr)
	return nil
}

// loopbackAddr reports whether the listen address host:port is reachable
// from this host only: 127.0.0.0/8, ::1 or localhost. An empty host (":8082")
// or 0.0.0.0 listens on every interface; another name may resolve to any.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// pprofMux serves the runtime profiles: CPU, heap, allocations, goroutines.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// stop closes the listeners, sends CLOSE 1001 to every client, drains the
// workers and flushes and closes the store. It is safe on a partly
// started server.
func (s *server) stop(ctx context.Context) error {
	var errs []error
	if s.pprofLn != nil {
		_ = s.pprofLn.Close()
	}
	if s.httpLn != nil {
		if err := s.api.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	if s.engine != nil {
		if err := s.engine.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("websocket: %w", err))
		}
	}
	if s.node != nil {
		s.node.Close() // after the engine: its users' last presence goes first
	}
	if s.router != nil {
		if err := s.router.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("router: %w", err))
		}
	}
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: %w", err))
		}
	}
	if s.nats != nil {
		s.nats.stop()
	}
	return errors.Join(errs...)
}

// shutdownTimeout bounds a graceful stop: clients get their CLOSE and the
// store is flushed well within what process supervisors wait.
const shutdownTimeout = 10 * time.Second

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imgate:", err)
		os.Exit(2)
	}
	log, err := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imgate:", err)
		os.Exit(2)
	}
	goDefault := runtime.GOMAXPROCS(0)
	if n := procs(cfg.Procs, os.Getenv, goDefault, runtime.NumCPU()); cfg.Procs > 0 || n != goDefault {
		// This also ends the runtime's own updates of GOMAXPROCS when the
		// CPUs or the CPU limit change: -procs is then what runs.
		runtime.GOMAXPROCS(n)
	}
	log.Info("processors", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU(), "go_default", goDefault)
	s, err := start(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case got := <-sig:
		log.Info("shutting down", "signal", got.String())
	case err := <-s.apiErr:
		log.Error("http api stopped", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.stop(ctx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
}

// spareProcs is how many Go processors the gateway keeps beyond the CPUs
// (-procs 0). Go hands a processor to a runnable goroutine only when one
// is free, and takes it from a goroutine that runs on only after a 10 ms
// slice. With as many processors as CPUs, the goroutines that run long
// (each Pebble store's compaction and flush, the committer, the GC's
// workers) can hold them all, and an event loop woken by its socket waits
// for the slice to end: that was the tail of the ack latency at a steady
// rate. With spare processors it runs at once and the kernel, which
// preempts in far less than 10 ms, shares the CPUs. The process still
// runs on no more CPUs than before: spare processors add threads, not
// CPU time. BENCHMARKS.md ("Processors") has the figures behind six,
// measured on 2 CPUs.
const spareProcs = 6

// maxProcs is the largest -procs taken.
const maxProcs = 1024

// procs is the GOMAXPROCS the gateway runs with, given Go's default
// (current) and the CPUs the process may run on (cpus, its affinity mask):
//   - flag, if positive (-procs);
//   - current, if the GOMAXPROCS environment variable set it (Go's own
//     convention wins; like the runtime, only a number above 0 counts);
//   - current, if it is below cpus: a container's CPU limit set it, and
//     spare processors would run past that limit and be throttled for the
//     rest of each period. A limit Go rounds up to the CPUs (1.5 of 2; Go
//     counts none below 2) leaves current at cpus: the process could use
//     every CPU with Go's default already, and spare processors do not
//     make it use more;
//   - else current plus spareProcs.
func procs(flag int, getenv func(string) string, current, cpus int) int {
	if flag > 0 {
		return flag
	}
	if n, err := strconv.Atoi(getenv("GOMAXPROCS")); err == nil && n > 0 {
		return current
	}
	if current < cpus {
		return current
	}
	return current + spareProcs
}
