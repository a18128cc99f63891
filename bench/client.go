package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/imgate/imgate/codec"
)

// role is what a connection does in a run.
type role uint8

const (
	roleIdle     role = iota // logs in and sends heartbeats
	roleSender               // sends chat messages to peer (or to group)
	roleReceiver             // receives pushes
	roleMember               // joins group, then receives pushes
	rolePuller               // pulls its offline queue (cmd 19 type 0) until empty
)

// wsConn is one client connection, owned by its gnet loop.
type wsConn struct {
	id       int
	role     role
	userID   string
	peer     string // who a sender writes to
	group    string // the group a member joins or a sender writes to
	channel  string // centrifugo: the channel a sender publishes to, a receiver subscribes to
	pullSent int64  // unix ns of the pending pull
	token    string
	upgraded bool
	loggedIn bool
	mask     [4]byte
	inflight []int64 // send times (unix ns) of unacked messages, oldest first
	sent     int64   // chat messages sent
	scratch  []byte
	// acking: logged in with ack=1 (PROTOCOL §7.2); acks holds, per
	// conversation, the highest seq received and not yet acknowledged.
	acking bool
	acks   map[string]ackState
}

// ackState is a conversation's highest pushed seq and whether it is a
// group.
type ackState struct {
	seq   int64
	group bool
}

// client runs every connection of one process on gnet's event loops: no
// goroutine per connection, so the load generator stays cheap next to
// the server on the same machine.
type client struct {
	gnet.BuiltinEventEngine
	cli    *gnet.Client
	s      *stats
	window int          // messages in flight per sender (chat)
	paced  bool         // senders send only when the pacer says so
	cf     bool         // the server is Centrifugo (-proto centrifugo), set before the first dial
	stop   atomic.Bool  // no new messages
	limit  atomic.Int64 // messages per sender; 0: unlimited
	mu     sync.Mutex
	conns  []gnet.Conn
}

func newClient(s *stats, window int, paced bool) (*client, error) {
	c := &client{s: s, window: window, paced: paced}
	cli, err := gnet.NewClient(c, gnet.WithMulticore(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(quietLogger{}))
	if err != nil {
		return nil, err
	}
	c.cli = cli
	return c, cli.Start()
}

// dial opens one connection from source address src to gateway addr
// (host:port) and starts its upgrade.
func (c *client) dial(src net.IP, addr string, w *wsConn) error {
	// No keep-alive: the socket lives on as gnet's duplicate, which does
	// not use it, and its setsockopt calls cost the connect mode's dialers
	// four syscalls a connection. IP_BIND_ADDRESS_NO_PORT lets the kernel
	// pick the source port at connect, not in a bind-time search over
	// every port in use.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second, KeepAlive: -1, Control: bindNoPort}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close() // gnet keeps its own duplicate of the socket
	path, query := "/?token=", w.token
	if w.acking {
		query += "&ack=1"
	}
	if c.cf {
		path, query = cfPath, "" // the token goes in the connect command
	}
	req := fmt.Sprintf("GET %s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path, query, addr)
	if _, err := nc.Write([]byte(req)); err != nil {
		return err
	}
	w.mask = [4]byte{byte(w.id), 0x5a, byte(w.id >> 8), 0xa5}
	gc, err := c.cli.EnrollContext(nc, w)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.conns = append(c.conns, gc)
	c.mu.Unlock()
	c.s.dialed.Add(1)
	return nil
}

func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func (c *client) close() {
	_ = c.cli.Stop()
}

// appendClientFrame appends a masked TEXT frame (RFC 6455 §5.3).
func appendClientFrame(dst []byte, mask [4]byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n <= 125:
		dst = append(dst, 0x81, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x81, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[start+i] ^= mask[i&3]
	}
	return dst
}

// appendChat appends one chat frame whose content carries the send time.
func (w *wsConn) appendChat(dst []byte, now int64) []byte {
	p := w.scratch[:0]
	if w.group != "" {
		p = append(p, `{"cmd":11,"chatType":1,"msgType":0,"groupId":"`...)
		p = append(p, w.group...)
	} else {
		p = append(p, `{"cmd":11,"chatType":2,"msgType":0,"to":"`...)
		p = append(p, w.peer...)
	}
	p = append(p, `","content":"t`...)
	p = strconv.AppendInt(p, now, 10)
	p = append(p, `"}`...)
	w.scratch = p
	w.inflight = append(w.inflight, now)
	w.sent++
	return appendClientFrame(dst, w.mask, p)
}

// more reports whether sender w may send another message.
func (c *client) more(w *wsConn) bool {
	if c.stop.Load() || w.role != roleSender || c.paced {
		return false
	}
	lim := c.limit.Load()
	return lim == 0 || w.sent < lim
}

// startSender turns gc into a sender and fills its window, on its loop.
func (c *client) startSender(gc gnet.Conn) {
	_ = gc.AsyncWritev(nil, func(gc gnet.Conn, err error) error {
		if err != nil {
			return nil
		}
		w := gc.Context().(*wsConn)
		w.role = roleSender
		var out []byte
		for i := 0; i < c.window && c.more(w); i++ {
			out = w.appendChat(out, time.Now().UnixNano())
		}
		_, _ = gc.Write(out)
		return nil
	})
}

func (c *client) OnTraffic(gc gnet.Conn) gnet.Action {
	w := gc.Context().(*wsConn)
	buf, _ := gc.Peek(-1)
	off := 0
	var out []byte
	if !w.upgraded {
		i := bytes.Index(buf, []byte("\r\n\r\n"))
		if i < 0 {
			return gnet.None
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
			c.s.errorf("upgrade: %q", firstLine(buf))
			return gnet.Close
		}
		w.upgraded = true
		off = i + 4
		if c.cf {
			out = w.appendConnect(out)
		}
	}
	now := time.Now().UnixNano()
	for {
		b := buf[off:]
		if len(b) < 2 {
			break
		}
		op, n, hl := b[0]&0x0f, int(b[1]&0x7f), 2
		switch n {
		case 126:
			if len(b) < 4 {
				n = -1
				break
			}
			n, hl = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				n = -1
				break
			}
			n, hl = int(binary.BigEndian.Uint64(b[2:])), 10
		}
		if n < 0 || len(b) < hl+n {
			break
		}
		p := b[hl : hl+n]
		off += hl + n
		switch op {
		case 0x1:
			if c.cf {
				out = c.cfFrame(w, b[0]&0x80 != 0, p, now, out)
				break
			}
			out = c.packet(w, p, now, out)
		case 0x8:
			code := 1005
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			c.s.closeCode(code)
		case 0x9:
			out = append(out, 0x8a, 0x80|byte(len(p)))
			out = append(out, w.mask[:]...)
			start := len(out)
			out = append(out, p...)
			for i := range p {
				out[start+i] ^= w.mask[i&3]
			}
		}
	}
	if off > 0 {
		_, _ = gc.Discard(off) // gnet reads Discard(0) as "everything"
	}
	// One cumulative ack per conversation for all the pushes this read
	// brought (they arrive in seq order on a connection).
	for conv, a := range w.acks {
		key := "peer"
		if a.group {
			key = "groupId"
		}
		w.scratch = fmt.Appendf(w.scratch[:0], `{"cmd":21,%q:%q,"seq":%d}`, key, conv, a.seq)
		out = appendClientFrame(out, w.mask, w.scratch)
		delete(w.acks, conv)
	}
	if len(out) > 0 {
		_, _ = gc.Write(out)
	}
	return gnet.None
}

// packet handles one server packet and appends what to send back.
func (c *client) packet(w *wsConn, p []byte, now int64, out []byte) []byte {
	switch {
	case bytes.HasPrefix(p, []byte(`{"command":11,`)):
		if w.acking {
			w.noteAck(p)
		}
		if i := bytes.Index(p, []byte(`"content":"t`)); i >= 0 {
			rest := p[i+len(`"content":"t`):]
			if j := bytes.IndexByte(rest, '"'); j > 0 {
				if t, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
					c.s.delivered(time.Duration(now - t))
				}
			}
		}
		return out
	case bytes.HasPrefix(p, []byte(`{"command":13,`)):
		c.s.heartbeats.Add(1)
		return out
	}
	code := packetCode(p)
	switch code {
	case 0:
		// Notices without a code (9/10 joins and exits, 16 recalls).
	case codec.CodeLoginOK:
		if !w.loggedIn {
			w.loggedIn = true
			c.s.loggedIn()
			switch {
			case w.role == roleSender:
				for i := 0; i < c.window && c.more(w); i++ {
					out = w.appendChat(out, now)
				}
			case w.role == roleMember:
				out = appendClientFrame(out, w.mask, []byte(`{"cmd":7,"groupId":"`+w.group+`"}`))
			case w.role == rolePuller:
				out = w.appendPull(out, now)
			}
		}
	case codec.CodeJoinOK:
		c.s.joined.Add(1)
	case codec.CodeOfflineMsgOK:
		n := bytes.Count(p, []byte(`"cmd":11`))
		c.s.pulled(time.Duration(now-w.pullSent), n)
		if n > 0 {
			out = w.appendPull(out, now)
		} else {
			c.s.drained.Add(1)
		}
	case codec.CodeSent, codec.CodeOffline:
		if len(w.inflight) > 0 {
			c.s.acked(time.Duration(now-w.inflight[0]), code)
			w.inflight = w.inflight[1:]
		}
		if c.more(w) {
			out = w.appendChat(out, now)
		}
	default:
		c.s.replyCode(int(code))
		if code == codec.CodeTooManyRequests && len(w.inflight) > 0 {
			// Refused, not lost: counted as an error, and the window slot
			// is used again so the run goes on.
			w.inflight = w.inflight[1:]
			if c.more(w) {
				out = w.appendChat(out, now)
			}
		}
	}
	return out
}

// appendPull appends a take-all offline pull (cmd 19 type 0).
func (w *wsConn) appendPull(dst []byte, now int64) []byte {
	w.pullSent = now
	return appendClientFrame(dst, w.mask, []byte(`{"cmd":19,"type":0}`))
}

// pace sends one message on every paced sender that has room in its
// window; it runs on the connection's loop through AsyncWritev.
func (c *client) pace(gc gnet.Conn) {
	_ = gc.AsyncWritev(nil, func(gc gnet.Conn, err error) error {
		if err != nil || c.stop.Load() {
			return nil
		}
		w := gc.Context().(*wsConn)
		if !w.loggedIn || w.role != roleSender || len(w.inflight) >= c.window {
			return nil
		}
		if c.cf {
			_, _ = gc.Write(w.appendPublish(nil, time.Now().UnixNano()))
			return nil
		}
		_, _ = gc.Write(w.appendChat(nil, time.Now().UnixNano()))
		return nil
	})
}

// heartbeat sends a heartbeat on gc from any goroutine.
func heartbeat(gc gnet.Conn, mask [4]byte) {
	_ = gc.AsyncWrite(appendClientFrame(nil, mask, []byte(`{"cmd":13}`)), nil)
}

func (c *client) OnClose(gc gnet.Conn, err error) gnet.Action {
	c.s.closed.Add(1)
	return gnet.None
}

// packetCode reads the code of {"code":N,…}, or 0.
func packetCode(p []byte) codec.Code {
	const prefix = `{"code":`
	if !bytes.HasPrefix(p, []byte(prefix)) {
		return 0
	}
	n := 0
	for _, ch := range p[len(prefix):] {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return codec.Code(n)
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		return b[:i]
	}
	return b
}

// quietLogger drops gnet's own lines: the tool's output is its report.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}

// noteAck records the seq of push p for the next cumulative ack.
func (w *wsConn) noteAck(p []byte) {
	seq := jsonInt(p, `"seq":`)
	if seq <= 0 {
		return
	}
	conv, group := jsonString(p, `"groupId":"`), true
	if conv == "" {
		conv, group = jsonString(p, `"from":"`), false
	}
	if conv == "" {
		return
	}
	if w.acks == nil {
		w.acks = make(map[string]ackState)
	}
	if a := w.acks[conv]; seq > a.seq {
		w.acks[conv] = ackState{seq, group}
	}
}

// jsonInt returns the integer after key in p, or -1.
func jsonInt(p []byte, key string) int64 {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return -1
	}
	rest := p[i+len(key):]
	n, j := int64(0), 0
	for ; j < len(rest) && rest[j] >= '0' && rest[j] <= '9'; j++ {
		n = n*10 + int64(rest[j]-'0')
	}
	if j == 0 {
		return -1
	}
	return n
}

// jsonString returns the string after key (which ends with the opening
// quote) in p, or "" (ids have no escapes).
func jsonString(p []byte, key string) string {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return ""
	}
	rest := p[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
