package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Centrifugo (v6) in the chat mode, with -proto centrifugo: the same
// pairs, pacing, windows and histograms, over Centrifugo's bidirectional
// client protocol, JSON over WebSocket. Each pair has a channel, the
// receiver's user id; the receiver connects with a JWT and subscribes to
// it, the sender connects and publishes into it:
//
//	→ {"id":1,"connect":{"token":"<HS256 JWT, sub = user id>"}}
//	← {"id":1,"connect":{"client":"…","version":"…","ping":25,"pong":true}}
//	→ {"id":2,"subscribe":{"channel":"<channel>"}}                     receiver
//	← {"id":2,"subscribe":{}}                                          receiver logged in
//	→ {"id":N,"publish":{"channel":"<channel>","data":"t<unix ns>"}}   sender, N ≥ 3
//	← {"id":N,"publish":{}}                                            the ack
//	← {"push":{"channel":"<channel>","pub":{"data":"t<unix ns>",…}}}   the delivery
//
// The server may put several replies and pushes in one frame, one JSON
// object a line; its ping is {} and the client answers {}.

const (
	protoImgate     = "imgate"
	protoCentrifugo = "centrifugo"

	// cfPath is Centrifugo's default bidirectional WebSocket endpoint.
	cfPath = "/connection/websocket"
	// cfSecret is the HMAC key bench/centrifugo.sh configures.
	cfSecret = "imgate-bench-centrifugo-hmac-secret"

	// Command ids: connect is 1, subscribe 2, and a sender's n-th publish
	// (from 0) cfFirstPubID+n.
	cfFirstPubID = 3
)

// hs256 returns a compact JWT of claims (a JSON object) signed with
// HMAC-SHA256 under secret (RFC 7519, RFC 7515 §3.1).
func hs256(secret, claims string) string {
	enc := base64.RawURLEncoding
	msg := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(mac.Sum(nil))
}

// cfToken is a Centrifugo connection token for user: only the sub claim,
// so it never expires.
func cfToken(secret, user string) string {
	sub, _ := json.Marshal(user)
	return hs256(secret, `{"sub":`+string(sub)+`}`)
}

// cfKind is what a message from Centrifugo is.
type cfKind uint8

const (
	cfBad       cfKind = iota // not a message of the protocol as bench knows it
	cfPing                    // {}: answered with {}
	cfConnect                 // reply to connect
	cfSubscribe               // reply to subscribe
	cfPublish                 // reply to publish: the ack
	cfError                   // reply with an error
	cfReply                   // any other reply
	cfPub                     // push of a publication that carries a send time
	cfPush                    // any other push
)

// cfMsg is one parsed message: its kind, the id of a reply, the code of an
// error, the send time (unix ns) of a publication.
type cfMsg struct {
	kind cfKind
	id   uint32
	code int
	sent int64
}

// cfParse reads one JSON message of Centrifugo's client protocol as the
// server encodes it (fields in schema order, no spaces). It allocates
// nothing.
func cfParse(m []byte) cfMsg {
	const (
		idKey   = `{"id":`
		pushKey = `{"push":`
		pubKey  = `"pub":{"data":"t`
		errKey  = `,"error":{"code":`
	)
	switch {
	case len(m) == 2 && m[0] == '{' && m[1] == '}':
		return cfMsg{kind: cfPing}
	case bytes.HasPrefix(m, []byte(pushKey)):
		i := bytes.Index(m, []byte(pubKey))
		if i < 0 {
			return cfMsg{kind: cfPush}
		}
		rest := m[i+len(pubKey):]
		t, n := leadingUint(rest)
		if n == 0 || n >= len(rest) || rest[n] != '"' || t > math.MaxInt64 {
			return cfMsg{kind: cfBad}
		}
		return cfMsg{kind: cfPub, sent: int64(t)}
	case bytes.HasPrefix(m, []byte(idKey)):
		rest := m[len(idKey):]
		id, n := leadingUint(rest)
		if n == 0 || id > 1<<32-1 {
			return cfMsg{kind: cfBad}
		}
		rest = rest[n:]
		msg := cfMsg{kind: cfReply, id: uint32(id)}
		switch {
		case bytes.HasPrefix(rest, []byte(`,"publish":`)):
			msg.kind = cfPublish
		case bytes.HasPrefix(rest, []byte(errKey)):
			code, n := leadingUint(rest[len(errKey):])
			if n == 0 {
				return cfMsg{kind: cfBad}
			}
			msg.kind, msg.code = cfError, int(code)
		case bytes.HasPrefix(rest, []byte(`,"connect":`)):
			msg.kind = cfConnect
		case bytes.HasPrefix(rest, []byte(`,"subscribe":`)):
			msg.kind = cfSubscribe
		}
		return msg
	}
	return cfMsg{kind: cfBad}
}

// leadingUint parses the decimal digits that start b: their value and
// count (0: none, or more than 19, which might not fit).
func leadingUint(b []byte) (uint64, int) {
	var v uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if i == 19 {
			return 0, 0
		}
		v = v*10 + uint64(b[i]-'0')
	}
	return v, i
}

var cfPong = []byte(`{}`)

// appendConnect appends w's connect command.
func (w *wsConn) appendConnect(dst []byte) []byte {
	p := append(w.scratch[:0], `{"id":1,"connect":{"token":"`...)
	p = append(p, w.token...)
	p = append(p, `"}}`...)
	w.scratch = p
	return appendClientFrame(dst, w.mask, p)
}

// appendSubscribe appends receiver w's subscribe command.
func (w *wsConn) appendSubscribe(dst []byte) []byte {
	p := append(w.scratch[:0], `{"id":2,"subscribe":{"channel":"`...)
	p = append(p, w.channel...)
	p = append(p, `"}}`...)
	w.scratch = p
	return appendClientFrame(dst, w.mask, p)
}

// appendPublish appends one publish whose data carries the send time, the
// counterpart of appendChat.
func (w *wsConn) appendPublish(dst []byte, now int64) []byte {
	p := append(w.scratch[:0], `{"id":`...)
	p = strconv.AppendInt(p, cfFirstPubID+w.sent, 10)
	p = append(p, `,"publish":{"channel":"`...)
	p = append(p, w.channel...)
	p = append(p, `","data":"t`...)
	p = strconv.AppendInt(p, now, 10)
	p = append(p, `"}}`...)
	w.scratch = p
	w.inflight = append(w.inflight, now)
	w.sent++
	return appendClientFrame(dst, w.mask, p)
}

// cfFrame handles one TEXT frame from Centrifugo, one message a line, and
// appends what to send back. fin is the frame's FIN bit: Centrifugo
// writes a message in one frame, and a fragmented one is reported, not
// reassembled.
func (c *client) cfFrame(w *wsConn, fin bool, p []byte, now int64, out []byte) []byte {
	if !fin {
		c.s.errorf("centrifugo: fragmented frame (%d bytes in the first)", len(p))
		return out
	}
	for len(p) > 0 {
		m := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			m, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(m) > 0 {
			out = c.cfMessage(w, m, now, out)
		}
	}
	return out
}

// cfMessage handles one message from Centrifugo.
func (c *client) cfMessage(w *wsConn, m []byte, now int64, out []byte) []byte {
	msg := cfParse(m)
	switch msg.kind {
	case cfPub:
		c.s.delivered(time.Duration(now - msg.sent))
	case cfPublish:
		if len(w.inflight) == 0 {
			c.s.errorf("centrifugo: publish reply %d with none in flight", msg.id)
			return out
		}
		if want := cfFirstPubID + w.sent - int64(len(w.inflight)); int64(msg.id) != want {
			c.s.errorf("centrifugo: publish reply %d where %d was next", msg.id, want)
		}
		c.s.acked(time.Duration(now-w.inflight[0]), 0)
		w.inflight = w.inflight[1:]
		if c.more(w) {
			out = w.appendPublish(out, now)
		}
	case cfPing:
		c.s.heartbeats.Add(1)
		out = appendClientFrame(out, w.mask, cfPong)
	case cfConnect:
		switch w.role {
		case roleReceiver:
			out = w.appendSubscribe(out)
		case roleSender:
			if !w.loggedIn {
				w.loggedIn = true
				c.s.loggedIn()
				for i := 0; i < c.window && c.more(w); i++ {
					out = w.appendPublish(out, now)
				}
			}
		}
	case cfSubscribe:
		if !w.loggedIn {
			w.loggedIn = true
			c.s.loggedIn()
		}
	case cfError:
		c.s.replyCode(msg.code)
		c.s.errorf("centrifugo: %s", m)
		if msg.id >= cfFirstPubID && len(w.inflight) > 0 {
			// Refused, not lost: counted as an error, and the window slot
			// is used again so the run goes on.
			w.inflight = w.inflight[1:]
			if c.more(w) {
				out = w.appendPublish(out, now)
			}
		}
	case cfReply, cfPush:
		// Not part of a chat run (join, leave, …): ignored.
	default:
		c.s.errorf("centrifugo: unexpected message %.200q", m)
	}
	return out
}
