package router

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// Defaults of Options.
const (
	// DefaultTokenTTL is how long a token bound by initUser stays valid.
	DefaultTokenTTL = 7 * 24 * time.Hour
)

// Options configures a Router.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests inject their own.
	Now func() time.Time
	// TokenTTL is the lifetime of tokens bound by InitUser; zero means
	// DefaultTokenTTL.
	TokenTTL time.Duration
	// Workers is the number of storage workers; zero means 4×GOMAXPROCS.
	Workers int
	// QueueBytes bounds the request payloads waiting for workers, in
	// bytes, across all connections; past it requests are answered 10028.
	// Zero means DefaultQueueBytes.
	QueueBytes int64
	// PageCap caps the messages of one cmd 19 page; zero means
	// DefaultPageCap.
	PageCap int
	// MaxGroupMembers caps a group; zero means DefaultMaxGroupMembers.
	MaxGroupMembers int
	// RecallWindow is how long after sending a message may be recalled;
	// zero means DefaultRecallWindow.
	RecallWindow time.Duration
	// RequestCounts counts every request by command and answer code
	// (Router.RequestCounts): one atomic add per request.
	RequestCounts bool
}

// DefaultRecallWindow is PROTOCOL §4.5's recall window.
const DefaultRecallWindow = 2 * time.Minute

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.Workers == 0 {
		o.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if o.QueueBytes == 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.PageCap == 0 {
		o.PageCap = DefaultPageCap
	}
	if o.MaxGroupMembers == 0 {
		o.MaxGroupMembers = DefaultMaxGroupMembers
	}
	if o.RecallWindow == 0 {
		o.RecallWindow = DefaultRecallWindow
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.TokenTTL < 0:
		return errors.New("router: negative token TTL")
	case o.Workers < 0:
		return errors.New("router: negative worker count")
	case o.QueueBytes < 0:
		return errors.New("router: negative queue bytes")
	case o.PageCap < 0:
		return errors.New("router: negative page cap")
	case o.MaxGroupMembers < 0 || o.RecallWindow < 0:
		return errors.New("router: negative group cap or recall window")
	}
	return nil
}

// handler runs one command. It appends reply frames to c.out and returns
// nil, or returns an *Error (a reply), a *Disconnect, or another error
// (logged; the client gets the entry's failure code).
type handler func(r *Router, c *Context) error

// route is one row of the command table.
type route struct {
	handle handler
	// onLoop: the handler touches no disk and runs inside Handle, on the
	// engine's event loop. Otherwise it runs on a worker.
	onLoop bool
	// fail is the reply to an unexpected error: code and command.
	fail codec.Code
	resp codec.Cmd
}

// Router dispatches client packets to handlers. Create it with New; it is
// safe for concurrent use.
type Router struct {
	_    noCopy
	db   storage.Store
	opts Options
	log  *slog.Logger
	hub  Hub
	// cluster is hub when it spans several nodes (PROTOCOL §8), else nil.
	cluster Cluster
	table   [codec.MaxCmd]route

	workers   []*worker
	wg        sync.WaitGroup
	stopSweep func()         // the token sweep (users.go)
	queued    atomic.Int64   // request payload bytes waiting for workers
	lost      atomic.Uint64  // pushes no connection wrote (left queued)
	limited   atomic.Uint64  // requests the rate limit refused
	counts    *requestCounts // nil unless Options.RequestCounts (metrics.go)

	pres       presence
	logouts    logouts        // orders logins against logouts (logout.go)
	typingSeen typingThrottle // typing.go
	mu         struct {
		sync.RWMutex
		closed bool
	}
}

type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// New returns a Router over db. Call SetHub before the first connection.
func New(db storage.Store, opts Options) (*Router, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r := &Router{db: db, opts: opts, log: opts.Logger}
	if opts.RequestCounts {
		r.counts = new(requestCounts)
	}
	r.pres.agents = make(map[uint64]struct{})
	r.table[codec.CmdAuth] = route{handle: (*Router).auth, onLoop: true}
	r.table[codec.CmdLogin] = route{handle: (*Router).login, fail: codec.CodeLoginFailed, resp: codec.CmdLoginResp}
	r.table[codec.CmdHeartbeat] = route{handle: (*Router).heartbeat, onLoop: true}
	r.table[codec.CmdClose] = route{handle: (*Router).close, onLoop: true}
	r.table[codec.CmdChat] = route{handle: (*Router).chat, fail: codec.CodeBadMessage, resp: codec.CmdChatAck}
	r.table[codec.CmdJoinGroup] = route{handle: (*Router).join, fail: codec.CodeJoinFailed, resp: codec.CmdJoinResp}
	r.table[codec.CmdExitGroup] = route{handle: (*Router).exit, fail: codec.CodeJoinFailed, resp: codec.CmdExitResp} // §5: 29, was 21
	r.table[codec.CmdRecall] = route{handle: (*Router).recall, fail: codec.CodeRecallFailed, resp: codec.CmdRecallResp}
	r.table[codec.CmdGetUser] = route{handle: (*Router).getUser, fail: codec.CodeGetUserFailed, resp: codec.CmdGetUserResp}
	r.table[codec.CmdAck] = route{handle: (*Router).ack, fail: codec.CodeBadRequest, resp: codec.CmdAckResp}
	r.table[codec.CmdSync] = route{handle: (*Router).sync, fail: codec.CodeBadRequest, resp: codec.CmdSyncResp}
	r.table[codec.CmdRecent] = route{handle: (*Router).recent, fail: codec.CodeBadRequest, resp: codec.CmdRecentResp}
	r.table[codec.CmdRead] = route{handle: (*Router).read, fail: codec.CodeBadRequest, resp: codec.CmdReadResp}
	r.table[codec.CmdTyping] = route{handle: (*Router).typing, fail: codec.CodeBadRequest, resp: codec.CmdTypingEvent}
	r.table[codec.CmdGetMessage] = route{handle: (*Router).getMessages, fail: codec.CodeGetMsgFailed, resp: codec.CmdMessageResp}

	r.workers = make([]*worker, opts.Workers)
	for i := range r.workers {
		w := &worker{wake: make(chan struct{}, 1)}
		r.workers[i] = w
		r.wg.Add(1)
		go r.work(w)
	}
	r.stopSweep = r.startTokenSweep()
	return r, nil
}

// SetHub wires the connection registry: engine's for one node, a Cluster
// for several. It must be called once, before any connection is served.
func (r *Router) SetHub(h Hub) {
	r.hub = h
	r.cluster, _ = h.(Cluster)
}

// Close stops accepting work, lets the workers finish what is queued and
// waits for them or for ctx.
func (r *Router) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.closed = true
	r.stopSweep() // before the store closes
	for _, w := range r.workers {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Router) now() time.Time { return r.opts.Now() }

// Context is one command in flight: the session, the decoded request and
// the frames of the reply.
type Context struct {
	Session Session
	Req     *codec.Request
	out     []byte
	scratch []byte
	dec     codec.Decoder
	// Set for a command run on a worker: its connection's queue and entry,
	// which a handler answering later (errLater) fills with r.reply.
	st *ConnState
	e  *entry
	// trk follows the reply to the socket (a type 0 pull); parks holds
	// the connection's queue once the reply left, until r.unpark.
	trk   *Tracker
	parks bool
	// After the reply: close this connection, or all of the user's.
	closeCode   uint16
	closeReason string
	closeAll    bool
	// size is the length of the request's payload (on a worker).
	size int
	// cmd 19: the page size and whether the client chose it.
	pageCount int
	pageAsked bool
}

// errLater is returned by a handler whose reply comes from a completion
// (the storage committer) through r.reply.
var errLater = errors.New("router: answered later")

// Reply appends the envelope {code, command, data, msg} as one frame.
func (c *Context) Reply(code codec.Code, cmd codec.Cmd, data []byte) {
	c.scratch = codec.AppendEnvelope(c.scratch[:0], code, cmd, data)
	c.out = codec.AppendTextFrame(c.out, c.scratch)
}

// contextPool holds the Contexts of commands answered on the loop, so that
// Handle allocates nothing for them (BenchmarkHandleHeartbeat).
var contextPool = sync.Pool{New: func() any { return &Context{scratch: make([]byte, 0, 512)} }}

// unknownFrame is the reply to an unknown or unparsable packet.
var unknownFrame = codec.AppendTextFrame(nil, codec.AppendEnvelope(nil, codec.CodeUnknownCmd, codec.CmdUnknown, nil))

// Handle processes one client packet from s, which must be logged in.
// payload is borrowed: Handle does not keep it after it returns. A reply
// made on the loop is appended to out when no earlier request of s awaits
// its answer; the extended slice is returned, and a non-zero code asks the
// engine to close the connection with it after out. Other replies reach s
// through Send, in request order. Handle never blocks. It must run on s's
// event loop.
func (r *Router) Handle(s Session, payload []byte, out []byte) ([]byte, uint16, string) {
	return r.handle(s, payload, out, false)
}

// handle is Handle; refused says the rate limit refused the packet (an
// ack, which it does not count, is served anyway: Refuse).
func (r *Router) handle(s Session, payload []byte, out []byte, refused bool) ([]byte, uint16, string) {
	c := contextPool.Get().(*Context)
	defer func() {
		*c = Context{scratch: c.scratch[:0]}
		contextPool.Put(c)
	}()
	if err := c.dec.Decode(payload); err != nil {
		switch cmd := codec.PeekCmd(payload); cmd {
		case codec.CmdAck, codec.CmdSync, codec.CmdRecent, codec.CmdRead, codec.CmdTyping:
			// A member of the wrong type in a §7 request: its own
			// command's 10029 (PROTOCOL §6), not an unknown command.
			r.countCode(cmd, codec.CodeBadRequest)
			return r.answer(s, out, replyFrame(codec.CodeBadRequest, respOf(cmd), nil)), 0, ""
		}
		r.countCode(codec.CmdUnknown, codec.CodeUnknownCmd)
		return r.answer(s, out, unknownFrame), 0, ""
	}
	cmd := c.dec.Req.Command()
	rt := &r.table[cmd]
	if rt.handle == nil {
		r.countCode(codec.CmdUnknown, codec.CodeUnknownCmd)
		return r.answer(s, out, unknownFrame), 0, ""
	}
	if cmd == codec.CmdAck {
		if !refused {
			s.Exempt() // acks are not counted by the rate limit (§7.2)
		}
		if r.ackOnLoop(s, &c.dec.Req) {
			r.countCode(cmd, 0)
			return out, 0, "" // done, and no reply on success
		}
	}
	if !rt.onLoop {
		code, reason := r.enqueue(s, cmd, payload, &c.dec.Req)
		return out, code, reason
	}
	c.Session, c.Req = s, &c.dec.Req
	idle := s.State().idle()
	if idle {
		c.out = out
	}
	r.finish(c, rt, rt.handle(r, c))
	if idle {
		r.count(cmd, c.out[len(out):])
	} else {
		r.count(cmd, c.out)
	}
	if idle && !c.closeAll {
		return c.out, c.closeCode, c.closeReason
	}
	if idle {
		// Closing every connection of the user queues a CLOSE on this one
		// too: the reply must be queued before it.
		c.out = append([]byte(nil), c.out[len(out):]...)
	}
	// Earlier requests await their answers, or the reply must precede
	// closes queued on this connection: it leaves through the queue.
	e := newEntry(cmd)
	e.out = c.out
	e.closeCode, e.closeReason, e.closeAll = c.closeCode, c.closeReason, c.closeAll
	r.addReady(s, e)
	return out, 0, ""
}

// answer appends frame to out when s has no request awaiting its answer,
// and queues it after them otherwise. It runs on the loop.
func (r *Router) answer(s Session, out, frame []byte) []byte {
	if s.State().idle() {
		return append(out, frame...)
	}
	e := newEntry(codec.CmdUnknown)
	e.out = frame
	r.addReady(s, e)
	return out
}

// Refuse answers a packet the connection's rate limit did not admit: the
// 10028 envelope with the command's reply code, without executing it, and
// with the request's id for a chat (PROTOCOL §6). Like Handle it borrows
// payload, appends to out and keeps request order; it runs on the loop.
func (r *Router) Refuse(s Session, payload []byte, out []byte) []byte {
	c := contextPool.Get().(*Context)
	defer func() {
		*c = Context{scratch: c.scratch[:0]}
		contextPool.Put(c)
	}()
	cmd := codec.CmdUnknown
	var req *codec.Request
	if c.dec.Decode(payload) == nil {
		cmd, req = c.dec.Req.Command(), &c.dec.Req
	}
	if cmd == codec.CmdAck {
		// Not counted by the rate limit (PROTOCOL §7.2). A close asked
		// by an ack's handling is none: acks never close.
		out, _, _ = r.handle(s, payload, out, true)
		return out
	}
	r.limited.Add(1)
	r.countCode(cmd, codec.CodeTooManyRequests)
	if s.State().idle() {
		if cmd == codec.CmdChat && req.ID != "" {
			return append(out, refusal(cmd, req)...)
		}
		c.out = out
		c.Reply(codec.CodeTooManyRequests, respOf(cmd), nil)
		return c.out
	}
	e := newEntry(cmd)
	e.out = refusal(cmd, req)
	r.addReady(s, e)
	return out
}

// respOf is the reply command of a request command (PROTOCOL §3): the next
// code, except heartbeat (13) and close (14), which answer with their own.
func respOf(cmd codec.Cmd) codec.Cmd {
	switch cmd {
	case codec.CmdUnknown:
		return codec.CmdUnknown
	case codec.CmdHeartbeat, codec.CmdClose:
		return cmd
	}
	return cmd + 1
}

// finish turns a handler's error into the reply or close it stands for.
func (r *Router) finish(c *Context, e *route, err error) []byte {
	if err == nil {
		return c.out
	}
	var re *Error
	var dis *Disconnect
	switch {
	case errors.As(err, &re):
		c.Reply(re.Code, re.Command, nil)
	case errors.As(err, &dis):
		c.closeCode, c.closeReason = dis.Code, dis.Reason
	default:
		id := c.Session.Identity()
		r.log.Error("command failed", slog.String("uid", id.ID), slog.Int("cmd", int(c.Req.Command())), slog.Any("err", err))
		c.Reply(e.fail, e.resp, nil)
	}
	return c.out
}

// Undelivered reports how many pushes no connection of their receiver
// wrote: those messages stayed in the offline queue (PROTOCOL §4.3).
func (r *Router) Undelivered() uint64 { return r.lost.Load() }
