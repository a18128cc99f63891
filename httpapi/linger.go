package httpapi

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// A request refused before its body was read (413: Content-Length over the
// limit) leaves the client writing a body nobody reads. Closing such a
// socket with unread data makes the kernel send a reset, which can reach
// the client before it has read the 413 and destroy it ("broken pipe",
// "connection reset"). The connection therefore closes lingering, as
// net/http's server does: send FIN after the answer, read and discard what
// the client still sends until EOF, lingerMaxBytes or lingerTimeout, and
// only then close.
const (
	// lingerMaxBytes bounds what one refused request may make us read:
	// 1 MiB at loopback or LAN speed takes a few milliseconds.
	lingerMaxBytes = 1 << 20
	// lingerTimeout bounds the wait for a slow client.
	lingerTimeout = time.Second
)

// lingerListener gives fasthttp connections that can close lingering; the
// *fasthttp.RequestCtx of their requests returns them from Conn().
type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c}, nil
}

// lingerConn is a connection whose Close lingers once marked.
type lingerConn struct {
	net.Conn
	linger atomic.Bool
}

// lingerOnClose marks c, if it came from lingerListener, to close
// lingering. It is safe to call from a request handler.
func lingerOnClose(c net.Conn) {
	if lc, ok := c.(*lingerConn); ok {
		lc.linger.Store(true)
	}
}

// Close closes the connection, lingering first if it was marked. It blocks
// for at most lingerTimeout; fasthttp calls it on the connection's own
// worker, after the answer was flushed.
func (c *lingerConn) Close() error {
	if c.linger.CompareAndSwap(true, false) {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		if c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout)) == nil {
			_, _ = io.CopyN(io.Discard, c.Conn, lingerMaxBytes)
		}
	}
	return c.Conn.Close()
}
