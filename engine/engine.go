package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/imgate/imgate/router"
)

// Limits and defaults. Each is a named constant with its reason.
const (
	// DefaultIdleTimeout: a connection silent this long is dead (PROTOCOL §2).
	DefaultIdleTimeout = 90 * time.Second
	// DefaultPingInterval: after this much silence the server pings, so a
	// live client answers well before the idle timeout.
	DefaultPingInterval = 30 * time.Second
	// DefaultMaxMessageSize bounds one reassembled message (PROTOCOL §2).
	DefaultMaxMessageSize = 64 << 10
	// DefaultMaxPending caps a connection's unsent output; past it the
	// reader is too slow to keep and is closed with 1008 (PROTOCOL §2).
	DefaultMaxPending = 4 << 20
	// DefaultMaxOutputTotal caps the unsent output of all connections
	// together: without it only connections × MaxPending bounds it.
	DefaultMaxOutputTotal = 1 << 30
	// DefaultMaxConnsPerUser caps one user's live connections (tabs,
	// terminals); the next login gets 10008 and close 1008.
	DefaultMaxConnsPerUser = 64
	// DefaultMaxInflight caps the pushes an acknowledging connection holds
	// unacknowledged (PROTOCOL §7.2); past it the connection is closed as
	// a slow consumer and they are queued.
	DefaultMaxInflight = 1000
	// HandshakeTimeout bounds the upgrade (PROTOCOL §2).
	HandshakeTimeout = 10 * time.Second
	// MaxHeaderBytes bounds the upgrade request's header block (PROTOCOL §2).
	MaxHeaderBytes = 8 << 10
	// closeGrace is how long a closing connection may take to answer our
	// CLOSE before the socket is dropped.
	closeGrace = 2 * time.Second
)

// Options configures an Engine. Zero values mean the documented defaults.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Addr is the listen address, "host:port"; required.
	Addr string
	// Loops is the number of event loops; zero means one per CPU.
	Loops int
	// IdleTimeout closes a connection that sent nothing this long; zero
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// PingInterval is the silence after which the server pings; zero means
	// DefaultPingInterval.
	PingInterval time.Duration
	// MaxMessageSize bounds a message; zero means DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxPending caps unsent output per connection; zero means
	// DefaultMaxPending.
	MaxPending int
	// RateLimit is the messages per second a connection may send; zero
	// means DefaultRateLimit, negative means no limit.
	RateLimit int
	// RateBurst is how many messages may come at once; zero means
	// DefaultRateBurst.
	RateBurst int
	// MaxOutputTotal caps unsent output across connections, in bytes;
	// past it the connections holding the most are closed as slow
	// consumers. Zero means DefaultMaxOutputTotal.
	MaxOutputTotal int64
	// MaxConnsPerUser caps one user's connections; zero means
	// DefaultMaxConnsPerUser, negative no cap.
	MaxConnsPerUser int
	// MaxInflight caps the unacknowledged pushes of an acknowledging
	// connection (PROTOCOL §7.2); zero means DefaultMaxInflight.
	MaxInflight int
	// ReplyLatency, if set, observes in seconds the time from a request's
	// arrival to its reply handed to the socket, for the requests whose
	// replies the router sends with SendReply (chat acks, PROTOCOL §4.1).
	// It runs on the event loop and must not block: a Prometheus
	// histogram fits.
	ReplyLatency interface{ Observe(seconds float64) }
	// PushLatency, if set, observes in seconds the time from a chat
	// message's arrival to its push handed to a receiver's socket, once
	// per connection written (PROTOCOL §4.2). Like ReplyLatency it runs
	// on the event loop and must not block.
	PushLatency interface{ Observe(seconds float64) }
	// Now is the clock of the liveness rules (PROTOCOL §2: ping after
	// PingInterval of silence, close after IdleTimeout); nil means
	// time.Now. Tests inject their own. The handshake timeout, the close
	// grace and the rate limit follow the real clock.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.RateLimit == 0 {
		o.RateLimit = DefaultRateLimit
	}
	if o.RateBurst == 0 {
		o.RateBurst = DefaultRateBurst
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxOutputTotal == 0 {
		o.MaxOutputTotal = DefaultMaxOutputTotal
	}
	if o.MaxConnsPerUser == 0 {
		o.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Addr == "":
		return errors.New("engine: no listen address")
	case o.IdleTimeout < 0 || o.PingInterval < 0:
		return errors.New("engine: negative timeout")
	case o.PingInterval >= o.IdleTimeout:
		return fmt.Errorf("engine: ping interval %v must be shorter than idle timeout %v", o.PingInterval, o.IdleTimeout)
	case o.MaxMessageSize < 128:
		return fmt.Errorf("engine: max message size %d below 128 bytes", o.MaxMessageSize)
	case o.MaxPending < o.MaxMessageSize:
		return errors.New("engine: max pending below max message size")
	case o.RateBurst < 1:
		return errors.New("engine: rate burst below 1")
	case o.MaxInflight < 1:
		return errors.New("engine: max inflight below 1")
	case o.MaxOutputTotal < int64(o.MaxPending):
		return errors.New("engine: max output total below max pending")
	}
	return nil
}

// Engine serves WebSocket connections on gnet event loops. Create it with
// New, start it with Start and stop it with Shutdown.
type Engine struct {
	gnet.BuiltinEventEngine
	_      noCopy
	r      *router.Router
	admit  func(router.LoginResult) bool // r.Admit; a seam for tests
	opts   Options
	log    *slog.Logger
	tick   time.Duration
	hsWait time.Duration

	reg      registry
	conns    connSet
	flushers flushers
	nextID   atomic.Uint64

	slowClosed  atomic.Uint64 // connections closed as slow consumers
	clientAcked atomic.Uint64 // pushes settled by the client's receipt ack
	closes      closeCounts   // ended connections by close status (metrics.go)
	unsent      atomic.Int64  // bytes accepted for clients, not yet written
	shedding    atomic.Bool   // a shed pass runs (shed.go)

	eng      gnet.Engine
	addr     net.Addr
	booted   chan error
	done     chan error
	draining atomic.Bool
	drained  chan struct{}
	drainMu  sync.Mutex
}

var (
	_ gnet.EventHandler = (*Engine)(nil)
	_ router.Hub        = (*Engine)(nil)
)

type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// New returns an Engine that hands packets to r. It does not listen yet.
func New(r *router.Router, opts Options) (*Engine, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		r:      r,
		admit:  r.Admit,
		opts:   opts,
		log:    opts.Logger,
		booted: make(chan error, 1),
		done:   make(chan error, 1),
	}
	e.reg.init()
	e.reg.presence = func(c *conn, conns int) { r.Presence(c.Identity(), conns) }
	// Sweep often enough that a deadline is met within a quarter of the
	// shortest interval, but not more than 20 times a second.
	e.tick = min(opts.PingInterval, opts.IdleTimeout) / 4
	e.tick = max(min(e.tick, time.Second), 50*time.Millisecond)
	e.hsWait = min(HandshakeTimeout, opts.IdleTimeout)
	return e, nil
}

// Start listens and serves in the background. It returns once the listener
// is bound, or with the error that prevented it.
func (e *Engine) Start() error {
	loops := e.opts.Loops
	go func() {
		err := gnet.Run(e, "tcp://"+e.opts.Addr,
			gnet.WithMulticore(loops == 0),
			gnet.WithNumEventLoop(loops),
			gnet.WithTicker(true),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{e.log}),
		)
		select {
		case e.booted <- err: // failed before boot
		default:
		}
		e.done <- err
	}()
	return <-e.booted
}

// Addr returns the bound listen address; valid after Start.
func (e *Engine) Addr() net.Addr { return e.addr }

// OnBoot records the bound address.
func (e *Engine) OnBoot(eng gnet.Engine) gnet.Action {
	e.eng = eng
	addr, err := boundAddr(eng)
	if err != nil {
		e.booted <- err
		return gnet.Shutdown
	}
	e.addr = addr
	e.booted <- nil
	return gnet.None
}

func boundAddr(eng gnet.Engine) (net.Addr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, fmt.Errorf("engine: dup listener: %w", err)
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("engine: getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}, nil
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}, nil
	}
	return nil, errors.New("engine: unexpected listener address")
}

// Shutdown stops accepting connections and requests, lets the router
// answer every request it already queued (up to drainTimeout or ctx),
// then sends every client a CLOSE 1001 after its replies, waits until they
// are gone (or ctx ends, or the close grace passes) and stops the event
// loops. No reply is dropped that the router made before the CLOSE.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.drainMu.Lock()
	if e.drained == nil {
		e.drained = make(chan struct{})
		e.draining.Store(true) // new connections and frames are refused
		if e.conns.len() == 0 {
			close(e.drained)
		}
	}
	e.drainMu.Unlock()
	e.waitIdle(ctx)
	e.conns.each(func(c *conn) { c.Close(router.CloseGoingAway, "server shutting down") })
	select {
	case <-e.drained:
	case <-ctx.Done():
		e.log.Warn("shutdown: connections still open when the stop's time ran out", "connections", e.conns.len())
	}
	err := e.eng.Stop(ctx)
	if err != nil && !strings.Contains(err.Error(), "shutdown") {
		return fmt.Errorf("engine: stop: %w", err)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// drainTimeout bounds how long Shutdown waits for queued requests.
const drainTimeout = 5 * time.Second

// waitIdle waits until no connection has a request awaiting its answer.
// Giving up (drainTimeout, or ctx) is logged with the connections still
// waiting: the replies they will not get.
func (e *Engine) waitIdle(ctx context.Context) {
	start := time.Now()
	deadline := start.Add(drainTimeout)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		busy := 0
		e.conns.each(func(c *conn) {
			if c.ident.Load() != nil && e.r.Busy(c) {
				busy++
			}
		})
		if busy == 0 {
			return
		}
		if !time.Now().Before(deadline) {
			e.log.Warn("shutdown: requests still unanswered after the drain timeout", "connections", busy, "waited", time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			e.log.Warn("shutdown: requests still unanswered when the stop's time ran out", "connections", busy, "waited", time.Since(start).Round(time.Millisecond))
			return
		}
	}
}

// clock reads the liveness clock in unix nanoseconds.
func (e *Engine) clock() int64 { return e.opts.Now().UnixNano() }

// connGone is called by OnClose after a connection left the set.
func (e *Engine) connGone() {
	if !e.draining.Load() {
		return
	}
	e.drainMu.Lock()
	defer e.drainMu.Unlock()
	if e.conns.len() == 0 {
		select {
		case <-e.drained:
		default:
			close(e.drained)
		}
	}
}

// Deliver implements router.Hub.
func (e *Engine) Deliver(uid uint64, frame []byte, skip router.Session, t *router.Tracker) int {
	return e.reg.deliver(uid, frame, skip, t)
}

// Disconnect implements router.Hub.
func (e *Engine) Disconnect(uid uint64, code uint16, reason string) int {
	return e.reg.disconnect(uid, code, reason)
}

// DisconnectTerminal implements router.Hub.
func (e *Engine) DisconnectTerminal(uid uint64, terminal string, code uint16, reason string) int {
	return e.reg.disconnectIf(uid, func(c *conn) bool { return c.Identity().Terminal == terminal }, code, reason)
}

// Online implements router.Hub.
func (e *Engine) Online(uid uint64) bool { return e.reg.online(uid) }

// Ack implements router.Hub: every connection of uid but skip applies
// the ack on its loop (PROTOCOL §7.2).
func (e *Engine) Ack(uid uint64, conv string, group bool, seq uint64, skip router.Session) {
	sh := e.reg.shard(uid)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for _, c := range sh.m[uid] {
		if router.Session(c) != skip {
			c.Ack(conv, group, seq)
		}
	}
}

// Stats is a snapshot of the engine's gauges and counters.
type Stats struct {
	Conns int // open sockets, upgraded or not
	Users int // users with at least one logged-in connection
	// SlowConsumers counts connections closed because their unsent
	// output passed the per-connection cap or the process-wide budget.
	SlowConsumers uint64
	// Unsent is the output accepted for clients and not yet written to
	// their sockets, in bytes, across all connections.
	Unsent int64
	// ClientAcked counts the pushes that acknowledging connections'
	// receipt acks (cmd 21, PROTOCOL §7.2) settled.
	ClientAcked uint64
}

// Stats returns the current gauges. Safe for concurrent use.
func (e *Engine) Stats() Stats {
	return Stats{Conns: e.conns.len(), Users: e.reg.users(), SlowConsumers: e.slowClosed.Load(), Unsent: e.unsent.Load(), ClientAcked: e.clientAcked.Load()}
}

// gnetLogger sends gnet's own logs to slog. gnet's text is the line's
// message and library=gnet names its source (not component: main's logger
// already carries component=engine), so a JSON line has one "msg".
type gnetLogger struct{ log *slog.Logger }

func (l gnetLogger) Debugf(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...), "library", "gnet") }
func (l gnetLogger) Infof(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...), "library", "gnet") }
func (l gnetLogger) Warnf(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...), "library", "gnet") }
func (l gnetLogger) Errorf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...), "library", "gnet") }
func (l gnetLogger) Fatalf(f string, a ...any) {
	l.log.Error(fmt.Sprintf(f, a...), "library", "gnet", "fatal", true)
}
