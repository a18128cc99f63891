package router

import (
	"bytes"
	"log/slog"
	"sync"

	"github.com/imgate/imgate/codec"
)

// Requests of one connection are served in order and answered in order
// (PROTOCOL §6 10028: replies keep request order). Each request becomes an
// entry of its connection's queue (ConnState) as it arrives, on the loop.
// A worker picked by the user's uid runs the entries one after another;
// replies leave in entry order, whenever each is ready: a chat's ack comes
// from the storage committer after the worker went on to the next chat, so
// chats pipeline, while any other command waits until every earlier reply
// left (it reads what they wrote). A type 0 pull holds the queue until its
// reply was written and the removal committed (§4.4).
//
// Bounds, in bytes: a connection's queued request payloads
// (maxConnQueueBytes) and all connections' together (Options.QueueBytes);
// past either, a request is answered 10028 at once, in its turn.

const (
	// maxConnQueueBytes bounds one connection's request payloads waiting
	// for a worker.
	maxConnQueueBytes = 4 << 20
	// maxConnEntries bounds one connection's requests not yet answered;
	// a client that pipelines more without reading is closed (1008).
	maxConnEntries = 1 << 14
	// DefaultQueueBytes bounds the request payloads waiting for workers
	// across all connections.
	DefaultQueueBytes = 256 << 20
	// maxRunBatch is how many entries a worker runs for one connection
	// before it lets the next connection's turn come.
	maxRunBatch = 64
	// maxLoginQueue bounds logins waiting per worker.
	maxLoginQueue = 4096
	// shiftQueue is the queue length up to which an answered entry is
	// removed by shifting the rest down, so the array is reused.
	shiftQueue = 16
)

// ConnState is the router's state of one connection: its requests not yet
// answered, in arrival order. The zero value is ready; engine keeps one per
// connection (Session.State).
type ConnState struct {
	mu    sync.Mutex
	s     Session
	q     []*entry // not yet answered, oldest first
	proc  int      // q[:proc] have run (or needed no run)
	bytes int      // payload bytes of q[proc:]
	// sched: on a worker's run list or running there.
	sched bool
	// parked counts steps the queue waits for before it runs or answers
	// anything more: a pull's reply being written and its removal
	// committed.
	parked int
	dead   bool // the connection is gone
}

// entry is one request: its payload until it runs, then its reply.
type entry struct {
	cmd      codec.Cmd
	received int64 // Nanotime at arrival, for a chat: its ack's latency
	payload  []byte
	out      []byte   // reply frames
	trk      *Tracker // follows out to the socket, if set
	ready    bool     // out is final: the entry may leave
	parks    bool     // once it left, the queue waits for unpark
	// After out: close the connection (closeCode != 0), or every
	// connection of the user (closeAll).
	closeCode   uint16
	closeReason string
	closeAll    bool
	// count: a request from a worker's queue, counted when it leaves
	// (Options.RequestCounts).
	count bool
}

var entryPool = sync.Pool{New: func() any { return new(entry) }}

func newEntry(cmd codec.Cmd) *entry {
	e := entryPool.Get().(*entry)
	e.cmd = cmd
	return e
}

func (e *entry) recycle() {
	*e = entry{}
	entryPool.Put(e)
}

// idle reports whether no request of the connection awaits its answer
// and nothing holds the queue: a command answered on the loop may then
// write its reply at once.
func (st *ConnState) idle() bool {
	st.mu.Lock()
	idle := len(st.q) == 0 && st.parked == 0
	st.mu.Unlock()
	return idle
}

// worker runs the connections scheduled on it, one at a time, and logins.
type worker struct {
	mu     sync.Mutex
	conns  []*ConnState // to run: conns[head:]
	head   int
	logins []task
	closed bool
	wake   chan struct{}
}

// task is one login.
type task struct {
	login func(LoginResult)
	token string
	ack   bool // the login asked for ack=1
}

func (w *worker) push(st *ConnState) {
	w.mu.Lock()
	w.conns = append(w.conns, st)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// next waits for a connection or a login; ok is false once the worker is
// closed and drained.
func (w *worker) next() (st *ConnState, t task, ok bool) {
	for {
		w.mu.Lock()
		if len(w.logins) > 0 {
			t = w.logins[0]
			w.logins[0] = task{}
			w.logins = w.logins[1:]
			w.mu.Unlock()
			return nil, t, true
		}
		if w.head < len(w.conns) {
			st = w.conns[w.head]
			w.conns[w.head] = nil
			if w.head++; w.head == len(w.conns) {
				w.conns, w.head = w.conns[:0], 0 // the array is reused
			}
			w.mu.Unlock()
			return st, t, true
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return nil, t, false
		}
		<-w.wake
	}
}

func (r *Router) workerOf(uid uint64) *worker {
	// Fibonacci hashing spreads dense uids over the workers.
	return r.workers[(uid*0x9E3779B97F4A7C15)>>32%uint64(len(r.workers))]
}

func (r *Router) work(w *worker) {
	defer r.wg.Done()
	c := new(Context)
	for {
		st, t, ok := w.next()
		if !ok {
			return
		}
		if st == nil {
			t.login(r.authenticate(t.token, t.ack))
			continue
		}
		r.runConn(c, st)
	}
}

// enqueue adds a request that needs a worker to s's queue. It runs on the
// loop. Over a bound the request is answered 10028 in its turn; with too
// many requests unanswered, it returns a close status for the connection.
func (r *Router) enqueue(s Session, cmd codec.Cmd, payload []byte, req *codec.Request) (uint16, string) {
	st := lockState(s)
	defer st.mu.Unlock()
	if st.dead {
		return 0, ""
	}
	if len(st.q) >= maxConnEntries {
		return ClosePolicy, "too many requests unanswered"
	}
	e := newEntry(cmd)
	e.count = r.counts != nil
	if cmd == codec.CmdChat {
		e.received = Nanotime()
	}
	st.q = append(st.q, e)
	n := int64(len(payload))
	over := st.bytes+len(payload) > maxConnQueueBytes
	if !over && r.queued.Add(n) > r.opts.QueueBytes {
		r.queued.Add(-n)
		over = true
	}
	if over {
		e.out, e.ready = refusal(cmd, req), true
		st.skipReady()
		r.emitLocked(st)
		return 0, ""
	}
	e.payload = append(make([]byte, 0, len(payload)), payload...)
	st.bytes += len(payload)
	r.scheduleLocked(st)
	return 0, ""
}

// lockState returns s's state, locked, knowing s.
func lockState(s Session) *ConnState {
	st := s.State()
	st.mu.Lock()
	if st.s == nil {
		st.s = s
	}
	return st
}

// skipReady counts ready entries at the run position as run: they need
// no worker.
func (st *ConnState) skipReady() {
	for st.proc < len(st.q) && st.q[st.proc].ready {
		st.proc++
	}
}

// addReady appends an entry answered on the loop while earlier ones wait:
// it leaves after them.
func (r *Router) addReady(s Session, e *entry) {
	st := lockState(s)
	defer st.mu.Unlock()
	if st.dead {
		e.recycle()
		return
	}
	e.ready = true
	st.q = append(st.q, e)
	st.skipReady()
	r.emitLocked(st)
}

// refusal is the 10028 reply to a request, with its id for a chat
// (PROTOCOL §6).
func refusal(cmd codec.Cmd, req *codec.Request) []byte {
	resp := respOf(cmd)
	if cmd == codec.CmdChat && req != nil && req.ID != "" && len(req.ID) <= maxIDLen {
		id := req.ID
		return textFrame(func(b []byte) []byte {
			b = codec.AppendEnvelopeStart(b, codec.CodeTooManyRequests, resp)
			o := codec.BeginObject(b)
			o.String("id", id)
			return codec.AppendEnvelopeEnd(o.End(), codec.CodeTooManyRequests)
		})
	}
	return replyFrame(codec.CodeTooManyRequests, resp, nil)
}

// runnable reports whether st's next entry may run now: chats pipeline
// behind running chats; anything else waits for every earlier reply.
func (st *ConnState) runnable() bool {
	if st.dead || st.parked > 0 || st.proc >= len(st.q) {
		return false
	}
	e := st.q[st.proc]
	return e.ready || e.cmd == codec.CmdChat || st.proc == 0
}

// scheduleLocked puts st on its worker if it has an entry to run and is
// not there already.
func (r *Router) scheduleLocked(st *ConnState) {
	if st.sched || !st.runnable() {
		return
	}
	st.sched = true
	r.workerOf(st.s.Identity().UID).push(st)
}

// runConn runs st's runnable entries, at most maxRunBatch, on a worker.
func (r *Router) runConn(c *Context, st *ConnState) {
	for i := 0; ; i++ {
		st.mu.Lock()
		if i == maxRunBatch && st.runnable() {
			// Let the other connections of this worker have a turn.
			r.workerOf(st.s.Identity().UID).push(st)
			st.mu.Unlock()
			return
		}
		if !st.runnable() {
			st.sched = false
			st.mu.Unlock()
			return
		}
		e := st.q[st.proc]
		st.proc++
		if e.ready {
			st.mu.Unlock()
			continue
		}
		payload := e.payload
		e.payload = nil
		st.bytes -= len(payload)
		st.mu.Unlock()
		r.queued.Add(-int64(len(payload)))
		r.run(c, st, e, payload)
	}
}

// run executes one queued request on a worker. c is the worker's own
// Context, reused from request to request; the reply frames are a fresh
// slice because the entry keeps them until its turn.
func (r *Router) run(c *Context, st *ConnState, e *entry, payload []byte) {
	*c = Context{scratch: c.scratch[:0], dec: c.dec, st: st, e: e, size: len(payload)}
	if err := c.dec.Decode(payload); err != nil {
		// Handle decoded it already; the copy cannot differ.
		r.log.Error("queued packet undecodable", slog.Any("err", err))
		c.out = append(c.out, unknownFrame...)
		r.fill(st, e, c)
		return
	}
	ent := &r.table[e.cmd]
	c.Session, c.Req = st.s, &c.dec.Req
	err := ent.handle(r, c)
	if err == errLater {
		return // the handler's completion fills e
	}
	r.finish(c, ent, err)
	r.fill(st, e, c)
}

// fill makes c's reply e's and lets it leave in its turn.
func (r *Router) fill(st *ConnState, e *entry, c *Context) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(c.out) > 0 {
		e.out = c.out
	}
	e.trk, e.parks = c.trk, c.parks
	e.closeCode, e.closeReason, e.closeAll = c.closeCode, c.closeReason, c.closeAll
	e.ready = true
	r.emitLocked(st)
}

// reply fills a pending entry from a completion (the storage committer):
// out becomes its reply.
func (r *Router) reply(st *ConnState, e *entry, out []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	e.out, e.ready = out, true
	r.emitLocked(st)
}

// replySent is reply for an out that is valid only during the call (a
// borrowed frame): sent now if e's turn has come (Send copies it), copied
// to wait for its turn otherwise.
func (r *Router) replySent(st *ConnState, e *entry, out []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.dead && (st.q[0] != e || st.parked > 0) {
		out = bytes.Clone(out)
	}
	e.out, e.ready = out, true
	r.emitLocked(st)
}

// emitLocked sends the ready replies at the head of st's queue, in order,
// until one that holds the queue (a pull), then schedules the next
// runnable entry. Send and Close never block; a Tracker released here
// must not take st's lock on this goroutine (pullReply unparks on its own).
func (r *Router) emitLocked(st *ConnState) {
	for len(st.q) > 0 && st.q[0].ready && st.parked == 0 {
		e := st.q[0]
		if n := len(st.q); n <= shiftQueue {
			// Short queues (the usual pipeline) keep their array.
			copy(st.q, st.q[1:])
			st.q[n-1] = nil
			st.q = st.q[:n-1]
		} else {
			st.q[0] = nil
			st.q = st.q[1:]
		}
		if st.proc > 0 {
			st.proc--
		}
		if e.parks {
			st.parked++ // before the reply can be followed
		}
		if !st.dead {
			r.emit(st.s, e)
		} else if e.trk != nil {
			e.trk.Release()
		}
		e.recycle()
	}
	if len(st.q) == 0 {
		if cap(st.q) > shiftQueue {
			st.q = nil // a long burst's array is not kept
		}
		st.proc = 0
	}
	r.scheduleLocked(st)
}

func (r *Router) emit(s Session, e *entry) {
	if e.count {
		r.count(e.cmd, e.out)
	}
	if len(e.out) > 0 {
		if e.trk != nil {
			s.SendTracked(e.out, e.trk)
			e.trk.Release()
		} else if e.received != 0 {
			s.SendReply(e.out, e.received)
		} else {
			s.Send(e.out)
		}
	} else if e.trk != nil {
		e.trk.Release()
	}
	switch {
	case e.closeAll:
		r.hub.Disconnect(s.Identity().UID, e.closeCode, e.closeReason)
	case e.closeCode != 0:
		s.Close(e.closeCode, e.closeReason)
	}
}

// unpark ends a hold of st's queue (entry.parks) and answers and runs
// what waited. It takes st's lock: never call it where that is held.
func (r *Router) unpark(st *ConnState) {
	st.mu.Lock()
	st.parked--
	r.emitLocked(st)
	st.mu.Unlock()
}

// Gone tells the router that s's connection ended: what it queued and has
// not run is dropped. engine calls it once, when the connection closes.
func (r *Router) Gone(s Session) {
	st := s.State()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.dead = true
	var freed int64
	for _, e := range st.q[st.proc:] {
		freed += int64(len(e.payload))
		e.payload = nil
		e.ready = true
	}
	st.proc = len(st.q)
	st.bytes = 0
	r.queued.Add(-freed)
	r.emitLocked(st)
}

// Busy reports whether s has requests not yet answered (engine drains
// them before a shutdown closes the connection). A pull waiting for its
// client to read the reply is not: that wait is the client's.
func (r *Router) Busy(s Session) bool {
	st := s.State()
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.q) > 0
}

// Login authenticates token for a connection that has just upgraded, with
// ack set when it asked to acknowledge pushes (PROTOCOL §7.2). It
// queues the lookup and returns at once; done runs on a worker with the
// result. Login reports false if the router is closed or overloaded; the
// caller then closes the connection.
func (r *Router) Login(token string, ack bool, done func(LoginResult)) bool {
	var key uint64
	for i := 0; i < len(token); i++ {
		key = key*31 + uint64(token[i])
	}
	w := r.workerOf(key)
	w.mu.Lock()
	if w.closed || len(w.logins) >= maxLoginQueue {
		w.mu.Unlock()
		return false
	}
	w.logins = append(w.logins, task{login: done, token: token, ack: ack})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}
