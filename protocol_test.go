package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const (
	loginFailed = `{"code":10008,"command":6,"msg":"login failed ! 登录失败!"}`
	unknownCmd  = `{"code":10017,"command":0,"msg":"cmd failed! 未知的cmd命令!"}`
)

func heartbeatReply(ts *testServer) string {
	return `{"command":13,"data":{"createTime":` + strconv.FormatInt(ts.clock.Now().UnixMilli(), 10) + `,"hbbyte":-128}}`
}

// PROTOCOL §2: a valid token logs in with exactly 10007 (data holding the
// user object, ext).
func TestSection2_LoginValidToken(t *testing.T) {
	ts := newTestServer(t)
	code, body := ts.post("/im/vanke/initUser", `{"senderId":"visitor_1","type":0,"token":"tok-visitor-1-long","nick":"Ann","avatar":"a.png","terminal":"h5","sign":"hi"}`)
	if code != 200 || body != `{"code":200,"msg":"success","data":null}` {
		t.Fatalf("initUser: %d %s", code, body)
	}
	c := ts.dial("tok-visitor-1-long")
	c.expectLogin(`{"code":10007,"command":6,"data":{"avatar":"a.png","id":"visitor_1","nick":"Ann","sign":"hi","terminal":"h5","type":0},"msg":"ok 登录成功!"}`)
	c.send(`{"cmd":13}`)
	c.expect(heartbeatReply(ts))
}

// PROTOCOL §2: an unknown or expired token gets 10008, then CLOSE 1008,
// then the end of the TCP connection.
func TestSection2_LoginRefused(t *testing.T) {
	ts := newTestServer(t)
	expired := ts.register("agent_7", 1)
	ts.clock.Advance(ts.cfg.TokenTTL + time.Millisecond)
	for name, token := range map[string]string{"unknown": "no-such-token", "empty": "", "expired": expired} {
		t.Run(name+"/raw", func(t *testing.T) {
			rc := ts.rawDial()
			rc.write([]byte(fmt.Sprintf(upgradeRequest, token, ts.ws)))
			if st := rc.readResponse(); !strings.HasPrefix(st, "HTTP/1.1 101") {
				t.Fatalf("upgrade: %s", st)
			}
			if op, p := rc.readFrame(); op != 1 || string(p) != loginFailed {
				t.Fatalf("first frame op %d %s", op, p)
			}
			rc.expectClose(1008)
		})
		t.Run(name+"/gorilla", func(t *testing.T) {
			c := ts.dial(token)
			c.expect(loginFailed)
			c.expectClose(websocket.ClosePolicyViolation)
		})
	}
}

// PROTOCOL §3 cmd 5: a token of the connection's own user confirms the
// login; another user's token is refused and changes nothing.
func TestSection3_LoginCommand(t *testing.T) {
	ts := newTestServer(t)
	a := ts.register("a1", 0)
	b := ts.register("b1", 1)
	c := ts.login(a)
	c.send(`{"cmd":5,"token":"` + b + `"}`)
	c.expect(loginFailed)
	c.send(`{"cmd":"5","token":"nonsense"}`)
	c.expect(loginFailed)
	c.send(`{"cmd":5,"token":"` + a + `"}`)
	c.expectLogin(`{"code":10007,"command":6,"data":{"avatar":"","id":"a1","nick":"","sign":"","terminal":"","type":0},"msg":"ok 登录成功!"}`)
	// Still a1: closing a1's connections by id is allowed, b1's is not.
	c.send(`{"cmd":14,"userid":"b1"}`)
	c.expect(`{"code":10024,"command":14,"msg":"forbidden 无权操作"}`)
	c.send(`{"cmd":3}`)
	c.expect(`{"code":10009,"command":4,"msg":"ok 鉴权成功!"}`)
}

// PROTOCOL §3 cmd 13: both the numeric and the string form get the
// heartbeat reply with server time and hbbyte -128.
func TestSection3_Heartbeat(t *testing.T) {
	ts := newTestServer(t)
	c := ts.login(ts.register("u1", 0))
	for _, req := range []string{`{"cmd":13,"hbbyte":"-127"}`, `{"cmd":"13"}`, `{"cmd":13,"hbbyte":5}`, ` {"cmd":13} `} {
		c.send(req)
		c.expect(heartbeatReply(ts))
		ts.clock.Advance(1500 * time.Millisecond)
	}
}

// PROTOCOL §3 "other / unparsable": the exact 10017 envelope, and the
// connection stays usable.
func TestSection3_UnknownCommand(t *testing.T) {
	ts := newTestServer(t)
	c := ts.login(ts.register("u1", 0))
	for _, req := range []string{
		`{"cmd":99}`, `{"cmd":0}`, `{"cmd":-13}`, `{"cmd":1.5}`, `{"cmd":"abc"}`, `{"cmd":true}`,
		`{"cmd":{}}`, `{"cmd":13,"token":5}`, `{}`, `[1,2]`, `[{"cmd":13}]`, `"cmd"`, `null`, `13`,
		`not json`, `{"cmd":13`, `{"cmd":13} trailing`, ``,
	} {
		c.send(req)
		if got := c.read(); got != unknownCmd {
			t.Fatalf("%q → %s", req, got)
		}
	}
	c.send(`{"cmd":13}`)
	c.expect(heartbeatReply(ts))
}

// PROTOCOL §3 cmd 14: 10021 then CLOSE 1000; with the caller's own userid
// every connection of the caller closes; another user's id is refused and
// their connection is untouched.
func TestSection3_Close(t *testing.T) {
	ts := newTestServer(t)
	tokA, tokB := ts.register("a", 0), ts.register("b", 1)

	t.Run("self", func(t *testing.T) {
		c := ts.login(tokA)
		c.send(`{"cmd":14}`)
		c.expect(`{"code":10021,"command":14,"msg":"close ok! 关闭成功"}`)
		c.expectClose(websocket.CloseNormalClosure)
	})
	t.Run("other user refused", func(t *testing.T) {
		attacker, victim := ts.login(tokA), ts.login(tokB)
		attacker.send(`{"cmd":14,"userid":"b"}`)
		attacker.expect(`{"code":10024,"command":14,"msg":"forbidden 无权操作"}`)
		attacker.send(`{"cmd":14,"userId":"b"}`)
		attacker.expect(`{"code":10024,"command":14,"msg":"forbidden 无权操作"}`)
		victim.send(`{"cmd":13}`)
		victim.expect(heartbeatReply(ts))
		attacker.send(`{"cmd":13}`)
		attacker.expect(heartbeatReply(ts))
		if !ts.online(uidOf(t, ts, "b")) {
			t.Fatal("victim offline")
		}
	})
	t.Run("all of mine", func(t *testing.T) {
		c1, c2 := ts.login(tokA), ts.login(tokA)
		c1.send(`{"cmd":14,"userid":"a"}`)
		c1.expect(`{"code":10021,"command":14,"msg":"close ok! 关闭成功"}`)
		c1.expectClose(websocket.CloseNormalClosure)
		c2.expectClose(websocket.CloseNormalClosure)
	})
}

func uidOf(t testing.TB, ts *testServer, id string) uint64 {
	t.Helper()
	u, err := ts.s.db.UserByID(id)
	if err != nil {
		t.Fatalf("user %s: %v", id, err)
	}
	return u.UID
}

// PROTOCOL §2 frames, with raw bytes over TCP.
func TestSection2_FramesRaw(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxMessageSize = 1024 })
	tok := ts.register("u1", 0)
	hb := []byte(heartbeatReply(ts))

	t.Run("ping answered by pong with the same payload", func(t *testing.T) {
		rc := ts.rawLogin(tok)
		rc.write(frame(0x9, true, []byte("are you there?"), false))
		if op, p := rc.readFrame(); op != 0xA || string(p) != "are you there?" {
			t.Fatalf("got op %#x %q", op, p)
		}
	})
	t.Run("three fragments reassembled, ping between them", func(t *testing.T) {
		rc := ts.rawLogin(tok)
		var b []byte
		b = append(b, frame(0x1, false, []byte(`{"cm`), false)...)
		b = append(b, frame(0x0, false, []byte(`d":1`), false)...)
		b = append(b, frame(0x9, true, []byte("p"), false)...)
		b = append(b, frame(0x0, true, []byte(`3}`), false)...)
		rc.write(b)
		if op, p := rc.readFrame(); op != 0xA || string(p) != "p" {
			t.Fatalf("got op %#x %q, want pong", op, p)
		}
		if op, p := rc.readFrame(); op != 1 || !bytes.Equal(p, hb) {
			t.Fatalf("got op %#x %s", op, p)
		}
	})
	t.Run("frames split across writes", func(t *testing.T) {
		rc := ts.rawLogin(tok)
		b := append(text(`{"cmd":13}`), text(`{"cmd":13,"hbbyte":"-127"}`)...)
		for i := range b {
			rc.write(b[i : i+1])
		}
		for range 2 {
			if _, p := rc.readFrame(); !bytes.Equal(p, hb) {
				t.Fatalf("got %s", p)
			}
		}
	})
	for _, tc := range []struct {
		name string
		send []byte
		code uint16
	}{
		{"unmasked", frame(0x1, true, []byte(`{"cmd":13}`), true), 1002},
		{"invalid UTF-8", frame(0x1, true, []byte("{\"cmd\":13,\"x\":\"\xff\xfe\"}"), false), 1007},
		{"invalid UTF-8 across fragments", append(frame(0x1, false, []byte("{\"x\":\"\xe4"), false), frame(0x0, true, []byte("\"}"), false)...), 1007},
		{"oversized", frame(0x1, true, bytes.Repeat([]byte("a"), 2000), false), 1009},
		{"oversized by fragments", append(frame(0x1, false, bytes.Repeat([]byte("a"), 600), false), frame(0x0, true, bytes.Repeat([]byte("a"), 600), false)...), 1009},
		{"reserved bits", append([]byte{0xC1}, frame(0x1, true, []byte("{}"), false)[1:]...), 1002},
		{"reserved opcode", frame(0x3, true, []byte("{}"), false), 1002},
		{"fragmented ping", frame(0x9, false, []byte("x"), false), 1002},
		{"continuation first", frame(0x0, true, []byte("{}"), false), 1002},
		{"binary", frame(0x2, true, []byte(`{"cmd":13}`), false), 1003},
		{"close echoed", frame(0x8, true, append([]byte{0x03, 0xE8}, "bye"...), false), 1000},
		{"close 4000 echoed", frame(0x8, true, []byte{0x0F, 0xA0}, false), 4000},
		{"close without code", frame(0x8, true, nil, false), 1000},
		{"close with bad code", frame(0x8, true, []byte{0x03, 0xED}, false), 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := ts.rawLogin(tok)
			rc.write(tc.send)
			rc.expectClose(tc.code)
		})
	}
}

// PROTOCOL §2 frames, with an independent client library.
func TestSection2_FramesGorilla(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.MaxMessageSize = 1024 })
	tok := ts.register("u1", 0)

	t.Run("ping pong", func(t *testing.T) {
		c := ts.login(tok)
		pong := make(chan string, 1)
		c.c.SetPongHandler(func(s string) error { pong <- s; return nil })
		if err := c.c.WriteControl(websocket.PingMessage, []byte("42"), time.Now().Add(waitBound())); err != nil {
			t.Fatal(err)
		}
		c.send(`{"cmd":13}`)
		c.expect(heartbeatReply(ts)) // the pong came first and went to the handler
		select {
		case got := <-pong:
			if got != "42" {
				t.Fatalf("pong %q", got)
			}
		default:
			t.Fatal("no pong before the heartbeat reply")
		}
	})
	t.Run("close handshake", func(t *testing.T) {
		c := ts.login(tok)
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "tab closed")
		if err := c.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(waitBound())); err != nil {
			t.Fatal(err)
		}
		c.expectClose(websocket.CloseGoingAway)
	})
	t.Run("oversized", func(t *testing.T) {
		c := ts.login(tok)
		c.send(`{"cmd":13,"x":"` + strings.Repeat("y", 2000) + `"}`)
		c.expectClose(websocket.CloseMessageTooBig)
	})
	t.Run("invalid UTF-8", func(t *testing.T) {
		c := ts.login(tok)
		c.send("{\"cmd\":13,\"x\":\"\xc3\x28\"}")
		c.expectClose(websocket.CloseInvalidFramePayloadData)
	})
	t.Run("largest message accepted", func(t *testing.T) {
		c := ts.login(tok)
		pad := 1024 - len(`{"cmd":13,"x":""}`)
		c.send(`{"cmd":13,"x":"` + strings.Repeat("y", pad) + `"}`)
		c.expect(heartbeatReply(ts))
	})
}

// PROTOCOL §2 liveness, on the injected liveness clock (the sweep runs on
// a real ticker, every second at these settings, and reads the fake time):
// any frame from the client, a PONG too, is activity; after 30 s of silence
// the server sends a PING, after 90 s it closes with 1001 "idle timeout".
// The upgrade timeout is real time.
func TestSection2_Liveness(t *testing.T) {
	t.Run("answering client stays", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t) // ping 30 s, idle 90 s
		c := ts.login(ts.register("u1", 0))
		pings := make(chan struct{}, 16)
		c.c.SetPingHandler(func(s string) error {
			err := c.c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(waitBound()))
			pings <- struct{}{}
			return err
		})
		readErr := make(chan error, 1)
		_ = c.c.SetReadDeadline(time.Now().Add(6 * waitBound()))
		go func() {
			_, _, err := c.c.ReadMessage() // serves pings until a message or an error
			readErr <- err
		}()
		// Four pings, each after 30 s: at least 120 s with nothing from the
		// client but pongs, longer than the idle timeout. The server reads
		// a pong at the fake time of that moment, which may come after the
		// next Advance (the read is asynchronous); such a pong only makes
		// the connection look more recent, and no ping follows that
		// Advance. So when none comes within two sweeps, the clock moves
		// on another 30 s: were pongs not activity, the third Advance
		// would close the connection.
		for pinged, advances := 0, 0; pinged < 4; {
			if advances++; advances > 12 {
				t.Fatalf("%d pings after %d advances of 30 s", pinged, advances-1)
			}
			ts.clock.Advance(30 * time.Second)
			select {
			case <-pings:
				pinged++
			case err := <-readErr:
				t.Fatalf("connection ended after %d pings: %v", pinged, err)
			case <-time.After(2 * time.Second): // the sweep runs every second
			}
		}
		c.send(`{"cmd":13}`)
		select {
		case err := <-readErr:
			if err != nil {
				t.Fatalf("after the pings: %v", err)
			}
		case <-time.After(waitBound()):
			t.Fatal("no heartbeat reply")
		}
	})
	t.Run("silent client pinged at 30 s, closed at 90 s", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t)
		rc := ts.rawLogin(ts.register("u1", 0))
		expectPing := func(when string) {
			t.Helper()
			if op, p := rc.readFrame(); op != 0x9 {
				t.Fatalf("%s: got op %#x %q, want a PING", when, op, p)
			}
		}
		ts.clock.Advance(30 * time.Second)
		expectPing("30 s of silence")
		// 1 ms short of the timeout: a second ping, and the connection
		// still answers.
		ts.clock.Advance(59*time.Second + 999*time.Millisecond)
		expectPing("89.999 s of silence")
		rc.write(text(`{"cmd":13}`))
		if op, p := rc.readFrame(); op != 1 || string(p) != heartbeatReply(ts) {
			t.Fatalf("at 89.999 s of silence: op %#x %s, want the heartbeat reply", op, p)
		}
		// The heartbeat was activity: 30 s on, a ping; 90 s on, the close.
		ts.clock.Advance(30 * time.Second)
		expectPing("30 s after the heartbeat")
		ts.clock.Advance(60 * time.Second)
		op, p := rc.readFrame()
		if op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1001 || string(p[2:]) != "idle timeout" {
			t.Fatalf("after 90 s of silence: op %#x %q, want CLOSE 1001 \"idle timeout\"", op, p)
		}
		rc.expectEOF()
	})
	t.Run("silent before upgrade closed", func(t *testing.T) {
		t.Parallel()
		// The upgrade timeout is the idle timeout when shorter than 10 s;
		// it runs on real time.
		ts := newTestServer(t, func(c *config) { c.IdleTimeout, c.PingInterval = 2*time.Second, time.Second })
		ts.rawDial().expectEOF()
	})
}

// PROTOCOL §2 upgrade edge cases.
func TestSection2_Upgrade(t *testing.T) {
	ts := newTestServer(t)
	tok := ts.register("u1", 0)

	t.Run("plain GET gets 400", func(t *testing.T) {
		rc := ts.rawDial()
		rc.write([]byte("GET / HTTP/1.1\r\nHost: " + ts.ws + "\r\n\r\n"))
		if st := rc.readResponse(); !strings.HasPrefix(st, "HTTP/1.1 400") {
			t.Fatalf("status %q", st)
		}
		rc.expectEOFAfterBody()
	})
	t.Run("garbage gets 400", func(t *testing.T) {
		rc := ts.rawDial()
		rc.write([]byte("\x16\x03\x01 hello\r\n\r\n"))
		if st := rc.readResponse(); !strings.HasPrefix(st, "HTTP/1.1 400") {
			t.Fatalf("status %q", st)
		}
	})
	t.Run("byte by byte", func(t *testing.T) {
		rc := ts.rawDial()
		req := []byte(fmt.Sprintf(upgradeRequest, tok, ts.ws))
		for i := range req {
			rc.write(req[i : i+1])
		}
		if st := rc.readResponse(); !strings.HasPrefix(st, "HTTP/1.1 101") {
			t.Fatalf("status %q", st)
		}
		if _, p := rc.readFrame(); !bytes.HasPrefix(p, []byte(`{"code":10007`)) {
			t.Fatalf("login frame %s", p)
		}
	})
	t.Run("frames pipelined behind the upgrade wait for the login", func(t *testing.T) {
		rc := ts.rawDial()
		req := append([]byte(fmt.Sprintf(upgradeRequest, tok, ts.ws)), text(`{"cmd":13}`)...)
		rc.write(req)
		if st := rc.readResponse(); !strings.HasPrefix(st, "HTTP/1.1 101") {
			t.Fatalf("status %q", st)
		}
		if _, p := rc.readFrame(); !bytes.HasPrefix(p, []byte(`{"code":10007`)) {
			t.Fatalf("first frame %s, want login", p)
		}
		if _, p := rc.readFrame(); string(p) != heartbeatReply(ts) {
			t.Fatalf("second frame %s", p)
		}
	})
	for name, req := range map[string]string{
		"header block over 8 KiB, unterminated": "GET /?token=x HTTP/1.1\r\nHost: h\r\nX-Pad: " + strings.Repeat("p", 9000),
		"header block over 8 KiB":               fmt.Sprintf(upgradeRequest, tok, "h"+strings.Repeat("h", 9000)),
	} {
		t.Run(name, func(t *testing.T) {
			rc := ts.rawDial()
			rc.write([]byte(req))
			if st := rc.readResponse(); !strings.HasPrefix(st, "HTTP/1.1 400") {
				t.Fatalf("status %q", st)
			}
			rc.expectEOFAfterBody()
		})
	}
	t.Run("1000 connections at once", func(t *testing.T) {
		const n = 1000
		// Spread over users: one user holds at most -max-conns-per-user (64).
		toks := make([]string, 20)
		for i := range toks {
			toks[i] = ts.register(fmt.Sprintf("many_%d", i), 0)
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		conns := make(chan *websocket.Conn, n)
		d := websocket.Dialer{HandshakeTimeout: waitBound()}
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, resp, err := d.Dial("ws://"+ts.ws+"/?token="+toks[i%len(toks)], nil)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				conns <- c
				_ = c.SetReadDeadline(time.Now().Add(2 * waitBound()))
				_, b, err := c.ReadMessage()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.HasPrefix(b, []byte(`{"code":10007,"command":6,`)) {
					errs <- fmt.Errorf("login frame %s", b)
				}
			}()
		}
		wg.Wait()
		close(errs)
		close(conns)
		for c := range conns {
			t.Cleanup(func() { c.Close() })
		}
		for err := range errs {
			t.Fatal(err)
		}
		if got := ts.stats(); got.Users < len(toks) || got.Conns < n {
			t.Fatalf("stats %+v, want %d users and %d connections at least", got, len(toks), n)
		}
	})
}

// expectEOFAfterBody skips an HTTP error body and expects the close.
func (rc *rawConn) expectEOFAfterBody() {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(waitBound()))
	for {
		if _, err := rc.br.ReadByte(); err != nil {
			return
		}
	}
}

// PROTOCOL §2 slow consumers, §4.3: a connection that stops reading has its
// unsent output capped. User B's raw connection (a small receive buffer)
// stops reading while user A, under no rate limit, sends B messages of
// 60 000 bytes: A is never refused nor closed; B's connection is closed as
// a slow consumer, and when B reads what its socket still holds it ends
// with CLOSE 1008; every message acked to A is in what B read or in B's
// offline queue. Then, with a second connection of B that reads, a new
// slow connection of B is closed the same way and the reading one gets
// every message and keeps working.
func TestSection2_SlowConsumerClosed(t *testing.T) {
	const size = 60000
	ts := newTestServer(t, func(c *config) { c.MaxPending, c.RateLimit = 256<<10, -1 })
	tokA, tokB := ts.register("visitor_a", 0), ts.register("agent_b", 1)
	a := newSlowSender(t, ts.login(tokA))

	// Phase 1: B's only connection stops reading.
	slow, err := dialReceiver(ts.ws, tokB, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.nc.Close()
	before := slowConsumers(t, ts)
	a.start("agent_b", size, 8, nil)
	waitSlowConsumers(t, ts, before+1, a)
	read, code, err := readToClose(slow)
	acked := a.stop()
	if err != nil {
		t.Errorf("B's slow connection, read to its end: %v", err)
	} else if code != 1008 {
		t.Errorf("B's slow connection ended with CLOSE %d, want 1008", code)
	}
	b := ts.login(tokB)
	pulled := pullOffline(t, b, `"fromUserId":"visitor_a"`)
	codes := map[string]int{}
	for _, ack := range acked {
		codes[ack.code]++
	}
	t.Logf("phase 1: %d acked (%v), %d read by the slow connection, %d pulled", len(acked), codes, len(read), len(pulled))
	got := map[string]bool{}
	for _, m := range append(read, pulled...) {
		if !strings.HasPrefix(m.Content, "m") || len(m.Content) != size {
			t.Errorf("B got message %s from %s with content %.20q… (%d bytes)", m.ID, m.From, m.Content, len(m.Content))
		}
		got[m.ID] = true
	}
	var lost []string
	for i, ack := range acked {
		if !got[ack.id] {
			lost = append(lost, fmt.Sprintf("#%d %s (%s)", i, ack.id, ack.code))
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d messages acked to A neither read by B's slow connection nor in B's offline queue: %s",
			len(lost), len(acked), strings.Join(lost, ", "))
	}

	// Phase 2: b reads; another connection of B stops reading.
	slow2, err := dialReceiver(ts.ws, tokB, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer slow2.nc.Close()
	br := newPushReader(b)
	a.start("agent_b", size, 4, br.count)
	waitSlowConsumers(t, ts, before+2, a)
	if _, code, err := readToClose(slow2); err != nil || code != 1008 {
		t.Errorf("B's second slow connection: CLOSE %d, %v; want 1008", code, err)
	}
	acked = a.stop()
	ids := make([]string, len(acked))
	for i, ack := range acked {
		if ack.code != "10000" {
			t.Errorf("phase 2 message #%d acked %s with B's reading connection online", i, ack.code)
		}
		ids[i] = ack.id
	}
	br.waitFor(t, ids)
	b.send(`{"cmd":13}`)
	br.waitHeartbeat(t)
	a.stillOpen()
}

// slowSender is user A of TestSection2_SlowConsumerClosed: one goroutine
// reads its connection, another sends chat messages while started.
type slowSender struct {
	t     *testing.T
	c     *wsClient
	mu    sync.Mutex
	acks  []slowAck
	fail  string
	ackc  chan struct{} // signalled at each ack
	hb    chan struct{} // a heartbeat reply
	stopc chan struct{}
	sent  chan int // what the writer sent, when it stops
	base  int      // acks before the current run
}

type slowAck struct{ code, id string }

func newSlowSender(t *testing.T, c *wsClient) *slowSender {
	s := &slowSender{t: t, c: c, ackc: make(chan struct{}, 1), hb: make(chan struct{}, 1)}
	_ = c.c.SetReadDeadline(time.Time{})
	go func() {
		for {
			_, b, err := c.c.ReadMessage()
			s.mu.Lock()
			switch {
			case err != nil:
				if s.fail == "" {
					s.fail = fmt.Sprintf("A's connection ended: %v", err)
				}
			case strings.HasPrefix(string(b), `{"command":13,`):
				select {
				case s.hb <- struct{}{}:
				default:
				}
			default:
				if m := ackRE.FindStringSubmatch(string(b)); m != nil {
					s.acks = append(s.acks, slowAck{m[1], m[3]})
				} else if s.fail == "" {
					s.fail = fmt.Sprintf("A got %.300s", b) // a refusal (10028) or anything else
				}
			}
			s.mu.Unlock()
			if err != nil {
				close(s.ackc)
				return
			}
			select {
			case s.ackc <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

// start sends messages of size bytes to peer, at most window unacked, and
// when gate is set at most window beyond gate().
func (s *slowSender) start(peer string, size, window int, gate func() int) {
	s.mu.Lock()
	base := len(s.acks)
	s.base = base
	s.mu.Unlock()
	s.stopc, s.sent = make(chan struct{}), make(chan int, 1)
	go func() {
		n := 0
		defer func() { s.sent <- n }()
		for ; n < 5000; n++ {
			for {
				s.mu.Lock()
				acked, failed := len(s.acks)-base, s.fail != ""
				s.mu.Unlock()
				if failed {
					return
				}
				if n-acked < window && (gate == nil || n-gate() < window) {
					break
				}
				select {
				case <-s.stopc:
					return
				case <-s.ackc:
				case <-time.After(10 * time.Millisecond): // the gate moves without an ack
				}
			}
			select {
			case <-s.stopc:
				return
			default:
			}
			content := fmt.Sprintf("m%05d-", n)
			content += strings.Repeat("x", size-len(content))
			if s.c.c.WriteMessage(websocket.TextMessage, []byte(`{"cmd":11,"to":"`+peer+`","chatType":2,"content":"`+content+`"}`)) != nil {
				return
			}
		}
	}()
}

// stop ends the sending, waits for every ack and returns this run's acks
// in order; it fails the test if A was refused or closed.
func (s *slowSender) stop() []slowAck {
	s.t.Helper()
	close(s.stopc)
	n := <-s.sent
	deadline := time.After(waitBound())
	for {
		s.mu.Lock()
		fail, acks := s.fail, s.acks
		s.mu.Unlock()
		if fail != "" {
			s.t.Fatal(fail)
		}
		if len(acks) >= s.base+n {
			return append([]slowAck(nil), acks[s.base:s.base+n]...)
		}
		select {
		case <-s.ackc:
		case <-deadline:
			s.t.Fatalf("%d of %d acks after %v", len(acks)-s.base, n, waitBound())
		}
	}
}

// stillOpen checks A's connection answers a heartbeat.
func (s *slowSender) stillOpen() {
	s.t.Helper()
	s.c.send(`{"cmd":13}`)
	select {
	case <-s.hb:
	case <-time.After(waitBound()):
		s.mu.Lock()
		defer s.mu.Unlock()
		s.t.Fatalf("A: no heartbeat reply (%s)", s.fail)
	}
}

// waitSlowConsumers waits until the engine counts n slow consumers closed
// while a sends.
func waitSlowConsumers(t *testing.T, ts *testServer, n uint64, a *slowSender) {
	t.Helper()
	deadline := time.Now().Add(4 * waitBound())
	for slowConsumers(t, ts) < n {
		a.mu.Lock()
		fail, acked := a.fail, len(a.acks)-a.base
		a.mu.Unlock()
		if fail != "" {
			t.Fatal(fail)
		}
		select {
		case sent := <-a.sent:
			t.Fatalf("A sent all %d messages (%d acked) and no connection was closed as a slow consumer", sent, acked)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slow consumer closed after %v (%d acked)", 4*waitBound(), acked)
		}
		time.Sleep(time.Millisecond)
	}
}

// slowConsumers reads the engine's count of slow consumers closed, within
// a bound: a deadlock in the engine fails the test instead of hanging it.
func slowConsumers(t *testing.T, ts *testServer) uint64 {
	t.Helper()
	ch := make(chan uint64, 1)
	go func() { ch <- ts.stats().SlowConsumers }()
	select {
	case n := <-ch:
		return n
	case <-time.After(waitBound()):
		// Said at once too: stopping a deadlocked server may hang the
		// cleanup, and the failure would print only at the test timeout.
		fmt.Fprintf(os.Stderr, "%s: engine.Stats blocked for %v: the engine is deadlocked\n", t.Name(), waitBound())
		t.Fatalf("engine.Stats blocked for %v: the engine is deadlocked", waitBound())
		return 0
	}
}

// readToClose reads r until the server's CLOSE, which must be followed by
// the end of the connection; it returns the pushes read and the code.
func readToClose(r *rawReceiver) (msgs []pushMsg, code int, err error) {
	for {
		op, p, err := r.next(time.Now().Add(waitBound()))
		if err != nil {
			return msgs, 0, fmt.Errorf("before any CLOSE: %w", err)
		}
		switch op {
		case 0x9: // a ping
		case 0x1:
			m, ok, err := parsePush(p)
			if err != nil {
				return msgs, 0, err
			}
			if !ok {
				return msgs, 0, fmt.Errorf("unexpected frame %.200s", p)
			}
			msgs = append(msgs, m)
		case 0x8:
			if len(p) < 2 || len(p) > 125 {
				return msgs, 0, fmt.Errorf("after %d pushes, a frame with the CLOSE opcode and a %d-byte payload %.80q (a CLOSE carries a code and at most 125 bytes)", len(msgs), len(p), p)
			}
			code = int(binary.BigEndian.Uint16(p))
			if op, p, err := r.next(time.Now().Add(waitBound())); err != io.EOF {
				return msgs, code, fmt.Errorf("after the CLOSE %d: op %#x %.80q, %v; want EOF", code, op, p, err)
			}
			return msgs, code, nil
		default:
			return msgs, 0, fmt.Errorf("unexpected op %#x", op)
		}
	}
}

// pushReader reads a gorilla connection in a goroutine: pushes and
// heartbeat replies.
type pushReader struct {
	mu   sync.Mutex
	ids  map[string]bool
	n    int
	fail string
	hb   chan struct{}
}

func newPushReader(c *wsClient) *pushReader {
	r := &pushReader{ids: map[string]bool{}, hb: make(chan struct{}, 1)}
	_ = c.c.SetReadDeadline(time.Time{})
	go func() {
		for {
			_, b, err := c.c.ReadMessage()
			r.mu.Lock()
			if err != nil {
				r.fail = fmt.Sprintf("B's reading connection ended: %v", err)
				r.mu.Unlock()
				return
			}
			if m, ok, err := parsePush(b); ok {
				r.ids[m.ID] = true
				r.n++
			} else if strings.HasPrefix(string(b), `{"command":13,`) {
				r.hb <- struct{}{}
			} else if r.fail == "" {
				r.fail = fmt.Sprintf("B's reading connection got %.300s (%v)", b, err)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *pushReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// waitFor waits until every one of ids was pushed.
func (r *pushReader) waitFor(t *testing.T, ids []string) {
	t.Helper()
	deadline := time.Now().Add(waitBound())
	for {
		r.mu.Lock()
		var missing []string
		for _, id := range ids {
			if !r.ids[id] {
				missing = append(missing, id)
			}
		}
		fail := r.fail
		r.mu.Unlock()
		if fail != "" {
			t.Fatal(fail)
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's reading connection lacks %d of %d acked messages: %v", len(missing), len(ids), missing)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *pushReader) waitHeartbeat(t *testing.T) {
	t.Helper()
	select {
	case <-r.hb:
	case <-time.After(waitBound()):
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Fatalf("B's reading connection: no heartbeat reply (%s)", r.fail)
	}
}
