package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

var crlfcrlf = []byte("\r\n\r\n")

// badRequest answers what is not a WebSocket upgrade at all (PROTOCOL §2).
var badRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 40\r\nConnection: close\r\n\r\nimgate: expected a WebSocket upgrade.\r\n\r\n")

// handshake adapts the upgrade request, already whole in the loop's inbound
// buffer, to the io.ReadWriter that gobwas/ws parses: reads come from req,
// writes (the response) go to resp. Nothing here touches the socket.
type handshake struct {
	req   []byte
	resp  []byte
	token string
	ack   bool // ack=1 in the query (PROTOCOL §7.2)
}

func (h *handshake) Read(p []byte) (int, error) {
	if len(h.req) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.req)
	h.req = h.req[n:]
	return n, nil
}

func (h *handshake) Write(p []byte) (int, error) {
	h.resp = append(h.resp, p...)
	return len(p), nil
}

// parseUpgrade runs gobwas/ws over one complete request head (through the
// blank line) and returns the response to send and the token of the query
// string. A non-nil error means the response rejects the request.
func parseUpgrade(head []byte) (resp []byte, token string, ack bool, err error) {
	h := handshake{req: head}
	u := ws.Upgrader{
		ReadBufferSize: MaxHeaderBytes,
		// The URI is only valid during the callback: copy the token out.
		OnRequest: func(uri []byte) error {
			h.token = tokenFromURI(uri)
			h.ack = ackFromURI(uri)
			return nil
		},
	}
	if _, err = u.Upgrade(&h); err != nil {
		if len(h.resp) == 0 || !bytes.HasPrefix(h.resp, []byte("HTTP/1.1 4")) {
			h.resp = badRequest
		}
		return h.resp, "", false, err
	}
	return h.resp, h.token, h.ack, nil
}

// ackFromURI reports whether the query of a request URI has ack=1.
func ackFromURI(uri []byte) bool {
	v, ok := queryParam(uri, "ack")
	return ok && string(v) == "1"
}

// tokenFromURI returns the token query parameter of a request URI, or "".
func tokenFromURI(uri []byte) string {
	v, _ := queryParam(uri, "token")
	if bytes.IndexByte(v, '%') < 0 && bytes.IndexByte(v, '+') < 0 {
		return string(v)
	}
	s, err := url.QueryUnescape(string(v))
	if err != nil {
		return ""
	}
	return s
}

// queryParam returns the raw (still escaped) value of the first query
// parameter name of a request URI. It allocates nothing.
func queryParam(uri []byte, name string) ([]byte, bool) {
	i := bytes.IndexByte(uri, '?')
	if i < 0 {
		return nil, false
	}
	q := uri[i+1:]
	if j := bytes.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	for len(q) > 0 {
		var kv []byte
		if j := bytes.IndexByte(q, '&'); j >= 0 {
			kv, q = q[:j], q[j+1:]
		} else {
			kv, q = q, nil
		}
		if k, v, _ := bytes.Cut(kv, []byte("=")); string(k) == name {
			return v, true
		}
	}
	return nil, false
}

var errHeaderTooLarge = errors.New("engine: upgrade header block over limit")

// upgrade consumes the HTTP upgrade request once it is whole, answers it
// and hands the token to the router. It resumes where it left off when the
// request arrives in pieces. It runs on the loop.
func (c *conn) upgrade(gc gnet.Conn) gnet.Action {
	buf, _ := gc.Peek(-1)
	from := int(max(c.hsScanned, 0))
	i := bytes.Index(buf[from:], crlfcrlf)
	if i < 0 {
		if len(buf) >= MaxHeaderBytes {
			c.rejectUpgrade(gc, badRequest, errHeaderTooLarge)
			return gnet.Close
		}
		c.hsScanned = int32(max(len(buf)-len(crlfcrlf)+1, 0))
		return gnet.None
	}
	end := from + i + len(crlfcrlf)
	if end > MaxHeaderBytes {
		c.rejectUpgrade(gc, badRequest, errHeaderTooLarge)
		return gnet.Close
	}
	resp, token, ack, err := parseUpgrade(buf[:end])
	if err != nil {
		c.rejectUpgrade(gc, resp, err)
		return gnet.Close
	}
	_, _ = gc.Discard(end)
	// The 101 waits for the login result and goes out with it in one
	// write (activate): one syscall per connection instead of two, and
	// one read on the client's side.
	c.pend = resp
	c.phase.Store(int32(phaseLogin))
	if !c.e.r.Login(token, ack, c.loginDone) {
		c.closeOnLoop(gc, nil, CloseTryAgain, "server busy")
	}
	return gnet.None
}

func (c *conn) rejectUpgrade(gc gnet.Conn, resp []byte, err error) {
	if c.e.log.Enabled(context.Background(), slog.LevelDebug) {
		c.e.log.Debug("upgrade rejected", "conn_id", c.id, "remote", remoteString(gc), "err", err)
	}
	_, _ = gc.Discard(-1)
	_, _ = gc.Write(resp)
}
