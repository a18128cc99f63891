// Package engine owns imgate's sockets: gnet v2 event loops, the HTTP
// upgrade, WebSocket framing, per-connection state, the session registry,
// liveness and output limits. It knows nothing of chat semantics: complete
// text messages go to router.Handle, and router reaches connections back
// through the router.Session and router.Hub interfaces implemented here.
//
// # Ownership
//
// Each connection has one owner, its event loop. Fields of conn are grouped
// by who may touch them: loop-owned fields only inside gnet callbacks
// (OnOpen, OnTraffic, OnClose and async-write callbacks); shared fields are
// atomics or sit under conn.out.mu. Other goroutines (router workers, the
// ticker) reach a connection only through gnet's concurrency-safe calls
// (AsyncWritev, Wake, Close) or its outbox, whose frames one task per loop
// (loopFlusher, run by EventLoop.Execute) writes for all dirty connections
// of that loop.
//
// Bytes from gnet's Peek live until Discard: frames are unmasked in place,
// handed to the router (which copies what it keeps) and discarded whole.
// Frames given to Send belong to the engine until written.
//
// # Locks
//
// A registry shard lock may be held while conn.out.mu is taken (Deliver),
// then, once conn.out.mu is released, the loopFlusher's lock (marking the
// connection dirty), and while router.Presence takes the router's
// presence lock (first and last connection of a user). conn.out.mu and a
// loopFlusher's lock are never held together. No other locks are held
// together, and nothing blocks while holding any of them.
//
// # Liveness
//
// OnTick runs on its own goroutine. It sweeps every connection: a PING after
// PingInterval of silence, a close (1001) after IdleTimeout, a hard close of
// upgrades older than the handshake timeout and of closing connections past
// their grace period.
package engine
