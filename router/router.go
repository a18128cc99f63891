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
	// DefaultQueueSize bounds each worker's queue. A full queue means the
	// disk is far behind; we answer 10028 rather than grow without bound.
	DefaultQueueSize = 4096
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
	// QueueSize bounds each worker's queue; zero means DefaultQueueSize.
	QueueSize int
	// PageCap caps the messages of one cmd 19 page; zero means
	// DefaultPageCap.
	PageCap int
	// MaxGroupMembers caps a group; zero means DefaultMaxGroupMembers.
	MaxGroupMembers int
	// RecallWindow is how long after sending a message may be recalled;
	// zero means DefaultRecallWindow.
	RecallWindow time.Duration
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
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
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
	case o.QueueSize < 0:
		return errors.New("router: negative queue size")
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

// entry is one row of the command table.
type entry struct {
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
	_     noCopy
	db    *storage.DB
	opts  Options
	log   *slog.Logger
	hub   Hub
	table [codec.MaxCmd]entry

	workers  []chan task
	wg       sync.WaitGroup
	requeued atomic.Uint64 // pushes no connection wrote, queued offline
	// requeueHook, if set (tests), learns each requeue's outcome.
	requeueHook func(error)

	pres presence
	// assignLocks serialise getReceiver per visitor (striped by uid).
	assignLocks [64]sync.Mutex
	mu          struct {
		sync.RWMutex
		closed bool
	}
}

type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// New returns a Router over db. Call SetHub before the first connection.
func New(db *storage.DB, opts Options) (*Router, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r := &Router{db: db, opts: opts, log: opts.Logger}
	r.pres.agents = make(map[uint64]*agentState)
	r.table[codec.CmdAuth] = entry{handle: (*Router).auth, onLoop: true}
	r.table[codec.CmdLogin] = entry{handle: (*Router).login, fail: codec.CodeLoginFailed, resp: codec.CmdLoginResp}
	r.table[codec.CmdHeartbeat] = entry{handle: (*Router).heartbeat, onLoop: true}
	r.table[codec.CmdClose] = entry{handle: (*Router).close, onLoop: true}
	r.table[codec.CmdChat] = entry{handle: (*Router).chat, fail: codec.CodeBadMessage, resp: codec.CmdChatAck}
	r.table[codec.CmdJoinGroup] = entry{handle: (*Router).join, fail: codec.CodeJoinFailed, resp: codec.CmdJoinResp}
	r.table[codec.CmdExitGroup] = entry{handle: (*Router).exit, fail: codec.CodeJoinFailed, resp: codec.CmdExitResp}
	r.table[codec.CmdRecall] = entry{handle: (*Router).recall, fail: codec.CodeRecallFailed, resp: codec.CmdRecallResp}
	r.table[codec.CmdGetUser] = entry{handle: (*Router).getUser, fail: codec.CodeGetUserFailed, resp: codec.CmdGetUserResp}
	r.table[codec.CmdGetMessage] = entry{handle: (*Router).getMessages, fail: codec.CodeGetMsgFailed, resp: codec.CmdMessageResp}

	r.workers = make([]chan task, opts.Workers)
	for i := range r.workers {
		ch := make(chan task, opts.QueueSize)
		r.workers[i] = ch
		r.wg.Add(1)
		go r.work(ch)
	}
	return r, nil
}

// SetHub wires the connection registry. It must be called once, before
// any connection is served.
func (r *Router) SetHub(h Hub) { r.hub = h }

// Close stops accepting work, lets the workers finish what is queued and
// waits for them or for ctx.
func (r *Router) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.closed = true
	for _, ch := range r.workers {
		close(ch)
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
}

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
// payload is borrowed: Handle does not keep it after it returns. Replies
// made on the loop are appended to out; the extended slice is returned.
// Replies of queued commands reach s later through Send. Handle never
// blocks. It must run on s's event loop.
func (r *Router) Handle(s Session, payload []byte, out []byte) []byte {
	c := contextPool.Get().(*Context)
	defer func() {
		*c = Context{scratch: c.scratch[:0]}
		contextPool.Put(c)
	}()
	if err := c.dec.Decode(payload); err != nil {
		return append(out, unknownFrame...)
	}
	cmd := c.dec.Req.Command()
	e := &r.table[cmd]
	if e.handle == nil {
		return append(out, unknownFrame...)
	}
	c.out = out
	if !e.onLoop {
		if !r.enqueue(s, cmd, payload) {
			c.Reply(codec.CodeTooManyRequests, e.resp, nil)
		}
		return c.out
	}
	c.Session, c.Req = s, &c.dec.Req
	return r.finish(c, e, e.handle(r, c))
}

// Refuse answers a packet the connection's rate limit did not admit: the
// 10028 envelope with the command's reply code, without executing it
// (PROTOCOL §6). Like Handle it borrows payload and appends to out; it
// runs on the loop and allocates nothing.
func (r *Router) Refuse(payload []byte, out []byte) []byte {
	c := contextPool.Get().(*Context)
	defer func() {
		*c = Context{scratch: c.scratch[:0]}
		contextPool.Put(c)
	}()
	resp := codec.CmdUnknown
	if c.dec.Decode(payload) == nil {
		cmd := c.dec.Req.Command()
		resp = respOf(cmd)
	}
	c.out = out
	c.Reply(codec.CodeTooManyRequests, resp, nil)
	return c.out
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
func (r *Router) finish(c *Context, e *entry, err error) []byte {
	if err == nil {
		return c.out
	}
	var re *Error
	var dis *Disconnect
	switch {
	case errors.As(err, &re):
		c.Reply(re.Code, re.Command, nil)
	case errors.As(err, &dis):
		c.Session.Close(dis.Code, dis.Reason)
	default:
		id := c.Session.Identity()
		r.log.Error("command failed", slog.String("uid", id.ID), slog.Int("cmd", int(c.Req.Command())), slog.Any("err", err))
		c.Reply(e.fail, e.resp, nil)
	}
	return c.out
}

// Requeued reports how many pushes were moved to the offline queue because
// no connection of the receiver wrote them.
func (r *Router) Requeued() uint64 { return r.requeued.Load() }
