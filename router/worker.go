package router

import (
	"log/slog"

	"github.com/imgate/imgate/codec"
)

// task is one queued command, or a login when login is set.
type task struct {
	s       Session
	payload []byte // owned by the task
	cmd     codec.Cmd
	login   func(LoginResult)
	token   string
}

// enqueue copies payload and queues the command on the worker of s's user.
// It reports false if that worker's queue is full or the router is closed.
func (r *Router) enqueue(s Session, cmd codec.Cmd, payload []byte) bool {
	t := task{s: s, cmd: cmd, payload: append([]byte(nil), payload...)}
	return r.submit(s.Identity().UID, t)
}

func (r *Router) submit(key uint64, t task) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.mu.closed {
		return false
	}
	// Fibonacci hashing spreads dense uids over the workers.
	i := (key * 0x9E3779B97F4A7C15) >> 32 % uint64(len(r.workers))
	select {
	case r.workers[i] <- t:
		return true
	default:
		return false
	}
}

func (r *Router) work(ch <-chan task) {
	defer r.wg.Done()
	c := new(Context)
	for t := range ch {
		if t.login != nil {
			t.login(r.authenticate(t.token))
			continue
		}
		r.run(c, t)
	}
}

// run executes one queued command on a worker and sends its reply. c is
// the worker's own Context, reused from task to task; the reply frames are
// a fresh slice because Send takes ownership of them.
func (r *Router) run(c *Context, t task) {
	*c = Context{scratch: c.scratch[:0], dec: c.dec}
	if err := c.dec.Decode(t.payload); err != nil {
		// Handle decoded it already; the copy cannot differ.
		r.log.Error("queued packet undecodable", slog.Any("err", err))
		return
	}
	e := &r.table[t.cmd]
	c.Session, c.Req = t.s, &c.dec.Req
	if out := r.finish(c, e, e.handle(r, c)); len(out) > 0 {
		t.s.Send(out)
	}
}

// Login authenticates token for a connection that has just upgraded. It
// queues the lookup and returns at once; done runs on a worker with the
// result. Login reports false if the router is closed or overloaded; the
// caller then closes the connection.
func (r *Router) Login(token string, done func(LoginResult)) bool {
	var key uint64
	for i := 0; i < len(token); i++ {
		key = key*31 + uint64(token[i])
	}
	return r.submit(key, task{login: done, token: token})
}
